//! Restoring a backup into a new data directory: every file checked against the manifest
//! (length and SHA-256) while it is copied, the restored store opened (which checks every
//! frame's checksum) and its heads compared with the manifest's, all in a directory beside the
//! target that is renamed into place only when everything holds.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{copy_range, hex, sync_dir, Manifest, MANIFEST};
use super::BackupError;
use crate::store::{EmbeddedStore, Position};

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    pub dir: PathBuf,
    pub heads: BTreeMap<String, Position>,
    pub files: usize,
    pub bytes: u64,
}

/// Restores the backup in `src` into `dir`, which must be missing or empty.
pub fn restore(src: &Path, dir: &Path) -> Result<Restored, BackupError> {
    let manifest = Manifest::read(src)?.ok_or_else(|| {
        BackupError::NotABackup(format!(
            "{} has no {MANIFEST}: it is not a backup, or a first backup into it did not finish (the manifest is written last)",
            src.display()
        ))
    })?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    let name = dir.file_name().ok_or_else(|| BackupError::InvalidInput(format!("{} names no directory", dir.display())))?;
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| BackupError::io(&format!("creating {}", parent.display()), e))?;
    let staging = parent.join(format!(".{}.restoring-{}", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let restored = fill(src, &staging, &manifest).and_then(|restored| {
        // Renaming over an empty directory replaces it.
        std::fs::rename(&staging, dir)
            .and_then(|()| sync_dir(&parent))
            .map_err(|e| BackupError::io(&format!("moving the restored data into {}", dir.display()), e))?;
        Ok(restored)
    });
    if restored.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let (files, bytes) = restored?;
    Ok(Restored { dir: dir.to_path_buf(), heads: manifest.heads, files, bytes })
}

/// Copies and checks every file into `staging`, then checks the restored store.
fn fill(src: &Path, staging: &Path, manifest: &Manifest) -> Result<(usize, u64), BackupError> {
    let mut bytes = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for entry in manifest.log.iter().chain(&manifest.files) {
        let from_path = src.join(&entry.path);
        let to_path = staging.join(&entry.restore_as);
        let damaged = |detail: String| BackupError::Damaged { file: from_path.clone(), detail };
        let from = match File::open(&from_path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(damaged("is missing; the manifest names it".into())),
            Err(e) => return Err(BackupError::io(&format!("opening {}", from_path.display()), e)),
        };
        let len = from.metadata().map_err(|e| BackupError::io(&format!("reading {}", from_path.display()), e))?.len();
        if len < entry.len {
            return Err(damaged(format!("is {len} bytes; the manifest says {} (truncated)", entry.len)));
        }
        let dir = to_path.parent().expect("a file in a directory").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| BackupError::io(&format!("creating {}", dir.display()), e))?;
        let to = File::create(&to_path).map_err(|e| BackupError::io(&format!("creating {}", to_path.display()), e))?;
        let mut hasher = Sha256::new();
        copy_range(&from, &to, 0, entry.len, &mut hasher)
            .and_then(|()| to.sync_all())
            .map_err(|e| BackupError::io(&format!("copying {}", from_path.display()), e))?;
        let sha256 = hex(&hasher.finalize());
        if sha256 != entry.sha256 {
            return Err(damaged(format!("its SHA-256 is {sha256}; the manifest says {} (the bytes changed)", entry.sha256)));
        }
        bytes += entry.len;
        dirs.insert(dir);
    }
    for dir in dirs.iter().map(PathBuf::as_path).chain([staging]) {
        sync_dir(dir).map_err(|e| BackupError::io(&format!("syncing {}", dir.display()), e))?;
    }
    check_store(&staging.join("events"), manifest)?;
    Ok((manifest.log.len() + manifest.files.len(), bytes))
}

/// Opens the restored store (every frame's checksum is checked as it is scanned) and compares
/// each tenant's head with the manifest's.
fn check_store(events: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let store = EmbeddedStore::open(events)?;
    let (_, _, heads) = store.published_cut();
    drop(store);
    let heads: BTreeMap<String, Position> = heads.into_iter().map(|(t, p)| (t.as_str().to_string(), p)).collect();
    if heads != manifest.heads {
        return Err(BackupError::Damaged {
            file: PathBuf::from(MANIFEST),
            detail: format!("the restored log's heads {heads:?} are not the manifest's {:?}", manifest.heads),
        });
    }
    for (id, checkpoint) in &manifest.read_models {
        let tenant = id.split('/').next().unwrap_or_default();
        if *checkpoint > heads.get(tenant).copied().unwrap_or(Position::ZERO) {
            return Err(BackupError::Damaged {
                file: PathBuf::from(MANIFEST),
                detail: format!("read model {id} is at {checkpoint}, past its tenant's head"),
            });
        }
    }
    Ok(())
}
