//! Folders written atomically (issue 7 item 3): checkpoints and exports are written into
//! `<name>.tmp/` (files and folder fsynced), then renamed to `<name>/`. An existing `<name>/` is
//! first moved to `<name>.old/` and deleted after the rename, so a crash leaves either the old
//! folder (as `<name>/` or, between the two renames, `<name>.old/`) or the new one, never a
//! half-written `<name>/`. Stale `.tmp` / `.old` folders are removed by the next write.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// `<dir>.<suffix>` next to `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// Best effort: directory fsync is not supported on every file system.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn remove_if_present(dir: &Path, action: &'static str) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(dir, action, e)),
        _ => Ok(()),
    }
}

/// Writes the folder `dir` atomically: `write` fills a fresh temporary folder (module docs).
pub fn write_dir_atomic(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = sibling(dir, "tmp");
    let old = sibling(dir, "old");
    remove_if_present(&tmp, "remove stale")?;
    fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, "create", e))?;
    write(&tmp)?;
    sync_dir(&tmp);
    remove_if_present(&old, "remove stale")?;
    let replacing = dir.exists();
    if replacing {
        fs::rename(dir, &old).map_err(|e| TrainError::io(dir, "move aside", e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, "rename into place", e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent);
    }
    if replacing {
        remove_if_present(&old, "remove replaced")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_fails_without_touching_the_old_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("export");
        write_dir_atomic(&dir, |d| {
            fs::write(d.join("a"), "1").unwrap();
            Ok(())
        })
        .unwrap();
        write_dir_atomic(&dir, |d| {
            fs::write(d.join("a"), "2").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        // A failing writer leaves the previous folder as it was.
        let err = write_dir_atomic(&dir, |d| {
            fs::write(d.join("a"), "3").unwrap();
            Err(TrainError::Invalid {
                what: "test",
                msg: "fails half-way".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&"export".to_string()), "{names:?}");
        assert!(!names.contains(&"export.old".to_string()), "{names:?}");
    }
}
