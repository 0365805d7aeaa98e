//! Fuzz body for the dataset parsers (`Format::parse` for every format, and format detection).
//! The first input byte picks the file extension (`.jsonl`, `.json`, `.csv`); the rest is the
//! file's bytes (UTF-8 decoding goes through `source::decode_utf8`, as `Format::load` does).
//! Shared by `fuzz_targets/dataset.rs` and `crates/data/tests/bad_input_fuzz_smoke.rs`.
//!
//! Oracle: no panic, and every error names the file.

use std::path::Path;

use crosslore_data::formats::{detect, Format};
use crosslore_data::source;

pub fn run(data: &[u8]) {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let ext = ["jsonl", "json", "csv"][usize::from(sel) % 3];
    let name = format!("fuzz/data.{ext}");
    let path = Path::new(&name);
    let check = |e: &dyn std::fmt::Display| {
        let msg = e.to_string();
        assert!(
            msg.contains(&name),
            "dataset error does not name the file: {msg}"
        );
    };
    let text = match source::decode_utf8(path, bytes.to_vec()) {
        Ok(t) => t,
        Err(e) => return check(&e),
    };
    for format in Format::ALL {
        if let Err(e) = format.parse(path, &text) {
            check(&e);
        }
    }
    if let Err(e) = detect::detect(path, &text) {
        check(&e);
    }
}
