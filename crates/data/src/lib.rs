//! crosslore-data (see Cargo.toml description).
