//! Bounded fuzz smoke of the dataset parsers (every `Format`, and format detection): the harness
//! body of the libFuzzer target `fuzz/fuzz_targets/dataset.rs` under a seeded mutation loop
//! (`fuzz/harness/smoke.rs`). `scripts/fuzz_smoke.sh` runs it for a time budget.

#[path = "../../../fuzz/harness/dataset.rs"]
mod dataset_body;
#[path = "../../../fuzz/harness/smoke.rs"]
mod smoke;

use std::path::Path;

use crosslore_data::formats::detect;

const DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\n",
    b"null",
    b"-1",
    b"1e400",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\"question\":",
    b"\"answer\":\"#### 7\"",
    b"\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"a\"}]",
    b"\"options\":[\"1\",\"2\"]",
    b"\"references\":[]",
    b"\"lSolutions\":[]",
    b"\"lEquations\":[\"X=(1+2)\"]",
    b"\"role\":\"system\"",
    b"mr,ref\n",
    b"\"a\"\"b\"",
];

#[test]
fn fuzz_smoke_dataset() {
    smoke::run("dataset", 1500, DICT, dataset_body::run);
}

/// Every dataset seed parses in the format it was written for (via detection).
#[test]
fn fuzz_seeds_are_valid_inputs() {
    for (path, bytes) in smoke::corpus("dataset") {
        let ext = ["jsonl", "json", "csv"][usize::from(bytes[0]) % 3];
        let p = Path::new("seed").with_extension(ext);
        let text = std::str::from_utf8(&bytes[1..]).unwrap();
        let format = detect::detect(&p, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        format
            .parse(&p, text)
            .unwrap_or_else(|e| panic!("{} as {format}: {e}", path.display()));
    }
}
