//! Optimizer state files: tensors in safetensors, everything else (config, step counts, sides,
//! RNG states) in JSON; each file written atomically (temp file, fsync, rename), the tensor file
//! first, so that a crash never leaves a JSON that points at missing tensors.
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};

/// Tensor file name inside a state directory.
pub const TENSORS_FILE: &str = "optimizer.safetensors";
/// JSON file name inside a state directory.
pub const META_FILE: &str = "optimizer.json";
/// Version of the state layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// Which optimizer wrote a state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    AdamW,
    GaLore,
    CrossLore,
}

/// The JSON part of a saved state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedMeta<C, P> {
    pub format_version: u32,
    pub kind: OptimizerKind,
    pub config: C,
    /// Per-parameter scalars, keyed by parameter name.
    pub params: std::collections::BTreeMap<String, P>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OptimError + '_ {
    move |source| OptimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn fsync_and_rename(tmp: &Path, path: &Path) -> Result<()> {
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(tmp))?;
    fs::rename(tmp, path).map_err(io_err(path))
}

/// Writes `tensors` and `meta` to `dir` (created if missing).
pub fn write_state<M: Serialize>(
    dir: &Path,
    tensors: Vec<(String, Tensor)>,
    meta: &M,
) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let tpath = dir.join(TENSORS_FILE);
    let ttmp = tmp_path(&tpath);
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, &ttmp).map_err(|e| OptimError::State {
        msg: format!("writing {}: {e}", ttmp.display()),
    })?;
    fsync_and_rename(&ttmp, &tpath)?;

    let mpath = dir.join(META_FILE);
    let mtmp = tmp_path(&mpath);
    let json = serde_json::to_vec_pretty(meta).map_err(|e| OptimError::State {
        msg: format!("serializing {}: {e}", mpath.display()),
    })?;
    let mut f = fs::File::create(&mtmp).map_err(io_err(&mtmp))?;
    f.write_all(&json).map_err(io_err(&mtmp))?;
    drop(f);
    fsync_and_rename(&mtmp, &mpath)
}

/// Reads a state directory written by [`write_state`], tensors onto `device`; checks the format
/// version and the optimizer kind.
pub fn read_state<C: DeserializeOwned, P: DeserializeOwned>(
    dir: &Path,
    device: &Device,
    kind: OptimizerKind,
) -> Result<(HashMap<String, Tensor>, SavedMeta<C, P>)> {
    let mpath = dir.join(META_FILE);
    let bytes = fs::read(&mpath).map_err(io_err(&mpath))?;
    let parse_err = |e: serde_json::Error| OptimError::State {
        msg: format!("parsing {}: {e}", mpath.display()),
    };
    // version and kind first, so that a foreign state gets a clear message
    #[derive(Deserialize)]
    struct Header {
        format_version: u32,
        kind: OptimizerKind,
    }
    let header: Header = serde_json::from_slice(&bytes).map_err(parse_err)?;
    if header.format_version != FORMAT_VERSION {
        return Err(OptimError::State {
            msg: format!(
                "{}: format_version {} (expected {FORMAT_VERSION})",
                mpath.display(),
                header.format_version
            ),
        });
    }
    if header.kind != kind {
        return Err(OptimError::State {
            msg: format!(
                "{}: state of a {:?} optimizer, expected {kind:?}",
                mpath.display(),
                header.kind
            ),
        });
    }
    let meta: SavedMeta<C, P> = serde_json::from_slice(&bytes).map_err(parse_err)?;
    let tpath = dir.join(TENSORS_FILE);
    if !tpath.exists() {
        return Err(OptimError::Io {
            path: tpath,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let tensors =
        candle_core::safetensors::load(&tpath, device).map_err(|e| OptimError::State {
            msg: format!("reading {}: {e}", tpath.display()),
        })?;
    Ok((tensors, meta))
}

/// Removes and returns tensor `key` from a loaded state, checking its shape.
pub fn take(
    tensors: &mut HashMap<String, Tensor>,
    key: &str,
    dims: Option<&[usize]>,
) -> Result<Tensor> {
    let t = tensors.remove(key).ok_or_else(|| OptimError::State {
        msg: format!("tensor `{key}` missing from {TENSORS_FILE}"),
    })?;
    if let Some(d) = dims {
        if t.dims() != d {
            return Err(OptimError::State {
                msg: format!("tensor `{key}`: expected shape {d:?}, got {:?}", t.dims()),
            });
        }
    }
    Ok(t)
}

/// Removes and returns tensor `key` if present.
pub fn take_opt(tensors: &mut HashMap<String, Tensor>, key: &str) -> Option<Tensor> {
    tensors.remove(key)
}

/// Total bytes of the tensors stored in a state directory's tensor file (for accounting tests).
pub fn stored_tensor_bytes(dir: &Path) -> Result<usize> {
    let tpath = dir.join(TENSORS_FILE);
    let tensors =
        candle_core::safetensors::load(&tpath, &Device::Cpu).map_err(|e| OptimError::State {
            msg: format!("reading {}: {e}", tpath.display()),
        })?;
    Ok(tensors.values().map(crate::tensor_bytes).sum())
}
