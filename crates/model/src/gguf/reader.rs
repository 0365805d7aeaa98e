//! Memory-mapped GGUF (v2/v3, little-endian) reader with strict validation.
//!
//! Layout (ggml `docs/gguf.md`): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
//! kv_count x (string key, u32 value type, value), tensor_count x (string name, u32 n_dims,
//! n_dims x u64 dims (fastest axis first), u32 ggml type, u64 offset), padding to
//! `general.alignment` (default 32), tensor data. Strings are u64 length + UTF-8 bytes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant;
use super::dtype::{GgmlDType, SUPPORTED};
use super::error::{GgufError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (guards the recursion).
const MAX_ARRAY_DEPTH: usize = 8;

/// A metadata value (GGUF value types 0..=12).
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
}

impl MetadataValue {
    /// GGUF's name of the value type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "UINT8",
            Self::I8(_) => "INT8",
            Self::U16(_) => "UINT16",
            Self::I16(_) => "INT16",
            Self::U32(_) => "UINT32",
            Self::I32(_) => "INT32",
            Self::U64(_) => "UINT64",
            Self::I64(_) => "INT64",
            Self::F32(_) => "FLOAT32",
            Self::F64(_) => "FLOAT64",
            Self::Bool(_) => "BOOL",
            Self::String(_) => "STRING",
            Self::Array(_) => "ARRAY",
        }
    }

    /// Any integer type holding a value representable as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type holding a value representable as i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v as i64),
            Self::I16(v) => Some(v as i64),
            Self::I32(v) => Some(v as i64),
            Self::I64(v) => Some(v),
            Self::U8(v) => Some(v as i64),
            Self::U16(v) => Some(v as i64),
            Self::U32(v) => Some(v as i64),
            Self::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// FLOAT32 or FLOAT64 as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A tensor's type: one this crate dequantizes, or another ggml type (readable header only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    Supported(GgmlDType),
    Unsupported { id: u32, name: &'static str },
}

/// One tensor-info record.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml dimensions, fastest-varying first (`ne[0]` = row length).
    pub dims: Vec<u64>,
    pub ttype: TensorType,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    pub n_elements: usize,
    /// Byte size of the data (0 for unsupported types, whose block size is not known here).
    pub n_bytes: usize,
}

impl TensorInfo {
    /// The row-major (PyTorch/Hugging Face) shape: the ggml dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An opened, validated, memory-mapped GGUF file.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetadataValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufFile {
    /// Open and validate `path`: header, all metadata, all tensor infos, alignment, and that every
    /// tensor of a supported type lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 4 {
            return Err(GgufError::Truncated {
                path,
                what: "magic".into(),
                start: 0,
                end: 4,
                file_len: len,
            });
        }
        // SAFETY: the map is read-only; as with every mmap-based model loader, the file must not
        // be truncated by another process while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, mmap)
    }

    fn parse(path: PathBuf, mmap: Mmap) -> Result<Self> {
        let file_len = mmap.len() as u64;
        let mut c = Cursor {
            buf: &mmap,
            pos: 0,
            path: &path,
        };
        let magic = c.take(4, &|| "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                path: path.clone(),
                found: magic.to_vec(),
            });
        }
        let version = c.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                "; this looks like a big-endian GGUF, which is not supported"
            } else if version == 1 {
                "; GGUF v1 (32-bit counts) is obsolete, re-convert the model"
            } else {
                ""
            };
            return Err(GgufError::UnsupportedVersion {
                path: path.clone(),
                version,
                hint,
            });
        }
        let tensor_count = c.u64(&|| "tensor count".into())?;
        let kv_count = c.u64(&|| "metadata count".into())?;

        // metadata
        let mut metadata = Vec::with_capacity(c.cap(kv_count, 13));
        let mut meta_index = HashMap::new();
        for i in 0..kv_count {
            let key = c.string(&|| format!("key of metadata entry #{i}"))?;
            let vtype = c.u32(&|| format!("value type of metadata '{key}'"))?;
            let value = c.value(vtype, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(c.malformed(format!("metadata '{key}'"), "duplicate key".into()));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata_get(&metadata, &meta_index, "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(c.malformed(
                        "metadata 'general.alignment'".into(),
                        format!("{v:?}: expected a power of two > 0"),
                    ))
                }
            },
        };

        // tensor infos
        let mut tensors = Vec::with_capacity(c.cap(tensor_count, 24));
        let mut tensor_index = HashMap::new();
        for i in 0..tensor_count {
            let name = c.string(&|| format!("name of tensor info #{i}"))?;
            let what = |field: &str| format!("{field} of tensor '{name}'");
            let n_dims = c.u32(&|| what("n_dims"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(
                    c.malformed(what("n_dims"), format!("{n_dims}: expected 1..={MAX_DIMS}"))
                );
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&|| what("dims"))?);
            }
            let type_id = c.u32(&|| what("type"))?;
            let offset = c.u64(&|| what("offset"))?;
            let n_elements = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
                .ok_or_else(|| {
                    c.malformed(what("dims"), format!("{dims:?}: element count overflows"))
                })?;
            let (ttype, n_bytes) = match GgmlDType::from_id(type_id) {
                Ok(dt) => {
                    if !(dims[0] as usize).is_multiple_of(dt.block_size()) {
                        return Err(c.malformed(
                            what("dims"),
                            format!(
                                "row length {} is not a multiple of the {} block size {}",
                                dims[0],
                                dt,
                                dt.block_size()
                            ),
                        ));
                    }
                    let nb = dt.n_bytes(n_elements).ok_or_else(|| {
                        c.malformed(what("dims"), format!("{dims:?}: byte size overflows"))
                    })?;
                    (TensorType::Supported(dt), nb)
                }
                Err(tname) => (
                    TensorType::Unsupported {
                        id: type_id,
                        name: tname,
                    },
                    0,
                ),
            };
            if offset % alignment != 0 {
                return Err(c.malformed(
                    what("offset"),
                    format!("{offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(c.malformed(format!("tensor '{name}'"), "duplicate tensor name".into()));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ttype,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        for t in &tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.n_bytes as u64));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        path: path.clone(),
                        tensor: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }

        Ok(Self {
            path,
            mmap,
            version,
            alignment,
            data_offset,
            metadata,
            meta_index,
            tensors,
            tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    pub fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        metadata_get(&self.metadata, &self.meta_index, key)
    }

    /// An integer value (any integer type, non-negative); `Ok(None)` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", MetadataValue::as_u64)
    }

    /// A float value (FLOAT32 or FLOAT64); `Ok(None)` when absent.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "FLOAT32 or FLOAT64", MetadataValue::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "BOOL", MetadataValue::as_bool)
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "STRING", MetadataValue::as_str)
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&[MetadataValue]>> {
        self.typed(key, "ARRAY", MetadataValue::as_array)
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(arr) = self.get_array(key)? else {
            return Ok(None);
        };
        arr.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "ARRAY of STRING", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers (e.g. `tokenizer.ggml.token_type`).
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(arr) = self.get_array(key)? else {
            return Ok(None);
        };
        arr.iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| self.wrong_type(key, "ARRAY of integers", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Like the `get_*` accessors but a missing key is an error; `expected` describes the key.
    pub fn require<T>(
        &self,
        key: &str,
        expected: &'static str,
        value: Result<Option<T>>,
    ) -> Result<T> {
        value?.ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
        })
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        let key = "general.architecture";
        self.require(
            key,
            "the model architecture, e.g. \"llama\"",
            self.get_str(key),
        )
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked at open for supported types).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let dtype = self.supported_dtype(info)?;
        let start = (self.data_offset + info.offset) as usize;
        let end = start + info.n_bytes;
        debug_assert_eq!(Some(info.n_bytes), dtype.n_bytes(info.n_elements));
        self.mmap
            .get(start..end)
            .ok_or_else(|| GgufError::TensorOutOfBounds {
                path: self.path.clone(),
                tensor: info.name.clone(),
                start: start as u64,
                end: end as u64,
                file_len: self.file_len(),
            })
    }

    /// The tensor dequantized to f32, in row-major order of [`TensorInfo::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let dtype = self.supported_dtype(info)?;
        let data = dequant::dequantize(dtype, self.tensor_bytes(info)?, info.n_elements)?;
        Ok((info.shape(), data))
    }

    fn supported_dtype(&self, info: &TensorInfo) -> Result<GgmlDType> {
        match info.ttype {
            TensorType::Supported(d) => Ok(d),
            TensorType::Unsupported { id, name } => Err(GgufError::UnsupportedDType {
                path: self.path.clone(),
                tensor: info.name.clone(),
                type_id: id,
                type_name: name,
                supported: SUPPORTED,
            }),
        }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl Fn(&'a MetadataValue) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, expected, v)),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str, v: &MetadataValue) -> GgufError {
        GgufError::WrongKeyType {
            path: self.path.clone(),
            key: key.to_string(),
            expected,
            found: v.type_name(),
        }
    }
}

fn metadata_get<'a>(
    metadata: &'a [(String, MetadataValue)],
    index: &HashMap<String, usize>,
    key: &str,
) -> Option<&'a MetadataValue> {
    index.get(key).map(|&i| &metadata[i].1)
}

/// Bounds-checked little-endian reader over the mapped file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: What) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: what(),
                start: self.pos as u64,
                end: (self.pos as u64).saturating_add(n as u64),
                file_len: self.buf.len() as u64,
            }),
        }
    }

    fn array<const N: usize>(&mut self, what: What) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: What) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A capacity hint for `count` items of at least `min_size` bytes each, bounded by what the
    /// remaining bytes can hold (a corrupt count must not trigger a huge allocation).
    fn cap(&self, count: u64, min_size: usize) -> usize {
        let left = (self.buf.len() - self.pos) / min_size.max(1);
        (count.min(left as u64)) as usize
    }

    fn string(&mut self, what: What) -> Result<String> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.malformed(what(), format!("string is not UTF-8: {e}")))
    }

    fn malformed(&self, what: String, detail: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.to_path_buf(),
            what,
            detail,
        }
    }

    fn value(&mut self, vtype: u32, key: &str, depth: usize) -> Result<MetadataValue> {
        let what = || format!("value of metadata '{key}'");
        let w: What = &what;
        Ok(match vtype {
            0 => MetadataValue::U8(self.array::<1>(w)?[0]),
            1 => MetadataValue::I8(self.array::<1>(w)?[0] as i8),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(w)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(w)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(w)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(w)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(w)?)),
            7 => match self.array::<1>(w)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                b => return Err(self.malformed(what(), format!("BOOL byte {b}, expected 0 or 1"))),
            },
            8 => MetadataValue::String(self.string(w)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(
                        what(),
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let etype = self.u32(w)?;
                let count = self.u64(w)?;
                let min_size = match etype {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    t => {
                        return Err(
                            self.malformed(what(), format!("unknown array element type {t}"))
                        )
                    }
                };
                if count > ((self.buf.len() - self.pos) / min_size) as u64 {
                    return Err(GgufError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!("{} ({count} array elements)", what()),
                        start: self.pos as u64,
                        end: (self.pos as u64)
                            .saturating_add(count.saturating_mul(min_size as u64)),
                        file_len: self.buf.len() as u64,
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(etype, key, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(w)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(w)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(w)?)),
            t => {
                return Err(
                    self.malformed(what(), format!("unknown value type {t}, expected 0..=12"))
                )
            }
        })
    }
}
