//! crosslore-optim (see Cargo.toml description).
