//! crosslore-train (see Cargo.toml description).
