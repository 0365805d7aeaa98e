//! crosslore-eval (see Cargo.toml description).
