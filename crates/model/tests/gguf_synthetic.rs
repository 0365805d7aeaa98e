//! GGUF reader and dequantizer on a tiny file written by the python `gguf` writer
//! (scripts/fixtures/gguf_reference.py), plus corrupt variants made here.

mod gguf_common;

use std::path::{Path, PathBuf};

use crosslore_model::gguf::{GgmlDType, GgufError, GgufFile, MetadataValue, TensorType};
use gguf_common::{f64s, fixture, json, usizes};
use serde_json::Value;

fn json_matches(v: &MetadataValue, expected: &Value) -> bool {
    match (v, expected) {
        (MetadataValue::U64(x), Value::String(s)) => s.parse::<u64>().ok() == Some(*x),
        (MetadataValue::I64(x), Value::String(s)) => s.parse::<i64>().ok() == Some(*x),
        (MetadataValue::F32(x), e) => e.as_f64() == Some(*x as f64),
        (MetadataValue::F64(x), e) => e.as_f64() == Some(*x),
        (MetadataValue::Bool(x), e) => e.as_bool() == Some(*x),
        (MetadataValue::String(x), e) => e.as_str() == Some(x.as_str()),
        (MetadataValue::Array(items), Value::Array(es)) => {
            items.len() == es.len() && items.iter().zip(es).all(|(i, e)| json_matches(i, e))
        }
        (v, e) => v.as_i64().is_some() && v.as_i64() == e.as_i64(),
    }
}

#[test]
fn synthetic_metadata_reference() {
    let exp = json("synthetic.json");
    let f = GgufFile::open(fixture("synthetic.gguf")).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), exp["alignment"].as_u64().unwrap());
    assert_eq!(f.data_offset(), exp["data_offset"].as_u64().unwrap());
    assert_eq!(f.file_len(), exp["file_len"].as_u64().unwrap());
    assert_eq!(f.architecture().unwrap(), "synthetic");
    let meta = exp["metadata"].as_object().unwrap();
    for (key, e) in meta {
        let v = f.get(key).unwrap_or_else(|| panic!("missing {key}"));
        assert_eq!(v.type_name(), e["type"].as_str().unwrap(), "{key}");
        assert!(
            json_matches(v, &e["value"]),
            "{key}: {v:?} vs {}",
            e["value"]
        );
        if let Some(sub) = e["sub_type"].as_str() {
            let arr = v.as_array().unwrap();
            assert!(arr.iter().all(|x| x.type_name() == sub), "{key} elements");
        }
    }
    // typed accessors, incl. type errors naming the key
    assert_eq!(f.get_u64("test.u32").unwrap(), Some(4_000_000_000));
    let msg = f.get_u64("test.i32").unwrap_err().to_string();
    assert!(
        msg.contains("test.i32") && msg.contains("non-negative integer"),
        "{msg}"
    );
    assert_eq!(f.get_f64("test.f32").unwrap(), Some(0.15625));
    assert_eq!(f.get_str_array("test.arr_str").unwrap().unwrap()[2], "ünï");
    assert_eq!(
        f.get_i64_array("test.arr_i32").unwrap().unwrap(),
        vec![1, -2, 3, 2147483647]
    );
    let e = f.get_str("test.u8").unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::WrongKeyType {
                expected: "STRING",
                found: "UINT8",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(f.get_u64("no.such.key").unwrap(), None);
}

/// Dequantized values must be bit-equal to `gguf.quants.dequantize` (same f32 operations in the
/// same order; see dequant.rs), so the tolerance is zero.
#[test]
fn synthetic_dequant_reference() {
    let exp = json("synthetic.json");
    let f = GgufFile::open(fixture("synthetic.gguf")).unwrap();
    let tensors = exp["tensors"].as_object().unwrap();
    assert_eq!(f.tensors().len(), tensors.len());
    let mut seen = std::collections::HashSet::new();
    for (name, e) in tensors {
        let info = f.tensor_info(name).unwrap();
        let TensorType::Supported(dt) = info.ttype else {
            panic!("{name} unsupported")
        };
        seen.insert(dt);
        assert_eq!(dt.name(), e["type"].as_str().unwrap(), "{name}");
        // python reports the absolute file offset; ours is relative to the data section
        assert_eq!(
            f.data_offset() + info.offset,
            e["offset"].as_u64().unwrap(),
            "{name}"
        );
        let dims: Vec<u64> = usizes(&e["gguf_dims"])
            .into_iter()
            .map(|d| d as u64)
            .collect();
        assert_eq!(info.dims, dims, "{name}");
        let (shape, data) = f.tensor_f32(name).unwrap();
        assert_eq!(shape, usizes(&e["hf_shape"]), "{name}");
        let want = f64s(&e["values"]);
        assert_eq!(data.len(), want.len());
        for (i, (a, b)) in data.iter().zip(&want).enumerate() {
            // values are f32; serde_json's f64 parsing may be 1 ulp (f64) off, so compare as f32
            assert_eq!(*a, *b as f32, "{name}[{i}]");
        }
    }
    for dt in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::BF16,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        assert!(seen.contains(&dt), "fixture lacks {dt}");
    }
}

// ---------------------------------------------------------------- corrupt variants

struct Corrupt {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn write_variant(name: &str, bytes: &[u8]) -> Corrupt {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    Corrupt { _dir: dir, path }
}

fn original() -> Vec<u8> {
    std::fs::read(fixture("synthetic.gguf")).unwrap()
}

/// Byte position just after the (length-prefixed) name of tensor `name` in the tensor infos.
fn after_tensor_name(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor name in header");
    at + needle.len()
}

fn open_err(path: &Path) -> String {
    let e = GgufFile::open(path).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error must name the file: {msg}"
    );
    msg
}

#[test]
fn corrupt_bad_magic() {
    let mut b = original();
    b[..4].copy_from_slice(b"GGML");
    let c = write_variant("magic.gguf", &b);
    let msg = open_err(&c.path);
    assert!(
        msg.contains("bad magic") && msg.contains("expected the bytes \"GGUF\""),
        "{msg}"
    );
}

#[test]
fn corrupt_unsupported_versions() {
    for (v, hint) in [
        (1u32, "v1"),
        (3u32.swap_bytes(), "big-endian"),
        (7, "expected 2 or 3"),
    ] {
        let mut b = original();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let c = write_variant("version.gguf", &b);
        let msg = open_err(&c.path);
        assert!(
            msg.contains("unsupported version") && msg.contains(hint),
            "{msg}"
        );
    }
    // v2 has the same layout as v3 for little-endian files
    let mut b = original();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let c = write_variant("v2.gguf", &b);
    assert_eq!(GgufFile::open(&c.path).unwrap().version(), 2);
}

#[test]
fn corrupt_truncated_header_and_data() {
    let b = original();
    let exp = json("synthetic.json");
    let data_offset = exp["data_offset"].as_u64().unwrap() as usize;
    for cut in [0usize, 3, 10, 100, data_offset / 2] {
        let c = write_variant("trunc.gguf", &b[..cut]);
        let msg = open_err(&c.path);
        assert!(
            msg.contains("truncated file") && msg.contains(&format!("file has {cut} bytes")),
            "{cut}: {msg}"
        );
    }
    // cut inside the tensor data: the last tensor's bytes lie past the end
    let cut = exp["tensors"]["t_3d_f32"]["offset"].as_u64().unwrap() as usize + 10;
    let c = write_variant("trunc_data.gguf", &b[..cut]);
    let msg = open_err(&c.path);
    assert!(
        msg.contains("lie past the end of the file") && msg.contains(&format!("({cut} bytes)")),
        "{msg}"
    );
}

#[test]
fn corrupt_offset_past_end() {
    let mut b = original();
    let name = "t_q4_1";
    let n_dims_at = after_tensor_name(&b, name);
    let n_dims = u32::from_le_bytes(b[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    let offset_at = n_dims_at + 4 + 8 * n_dims + 4;
    b[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let c = write_variant("offset.gguf", &b);
    let msg = open_err(&c.path);
    assert!(
        msg.contains(&format!("tensor '{name}'")) && msg.contains("past the end"),
        "{msg}"
    );

    // misaligned offset
    b[offset_at..offset_at + 8].copy_from_slice(&3u64.to_le_bytes());
    let c = write_variant("misaligned.gguf", &b);
    let msg = open_err(&c.path);
    assert!(msg.contains("not a multiple of the alignment 64"), "{msg}");
}

#[test]
fn corrupt_unsupported_dtype() {
    let mut b = original();
    let name = "t_q8_0";
    let n_dims_at = after_tensor_name(&b, name);
    let n_dims = u32::from_le_bytes(b[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    let type_at = n_dims_at + 4 + 8 * n_dims;
    b[type_at..type_at + 4].copy_from_slice(&10u32.to_le_bytes()); // Q2_K
    let c = write_variant("dtype.gguf", &b);
    // the header is still readable; dequantizing that tensor is the error
    let f = GgufFile::open(&c.path).unwrap();
    assert!(f.tensor_f32("t_q4_0").is_ok());
    let msg = f.tensor_f32(name).unwrap_err().to_string();
    assert!(msg.contains(&c.path.display().to_string()), "{msg}");
    assert!(
        msg.contains("'t_q8_0' has type Q2_K") && msg.contains("supported: F32, F16"),
        "{msg}"
    );
}

#[test]
fn corrupt_huge_counts_do_not_allocate() {
    // kv_count = u64::MAX: must fail as truncated, not abort on allocation
    let mut b = original();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let c = write_variant("kv.gguf", &b);
    let msg = open_err(&c.path);
    assert!(
        msg.contains("truncated") || msg.contains("malformed"),
        "{msg}"
    );
}

#[test]
fn missing_file_names_it() {
    let e = GgufFile::open("/nonexistent/dir/model.gguf").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/dir/model.gguf"), "{e}");
}
