//! crosslore-model (see Cargo.toml description).
