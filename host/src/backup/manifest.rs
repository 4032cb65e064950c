//! A backup's manifest (`MANIFEST.json`): what the backup holds, file by file, with lengths and
//! SHA-256, and every tenant's head. It is written last and atomically, so a directory without
//! one holds no finished backup, and a backup interrupted while it added to an earlier one still
//! restores as that earlier one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;
use crate::store::Position;

/// The manifest's name in a backup directory.
pub const MANIFEST: &str = "MANIFEST.json";
/// The `format` this build writes and reads.
pub const FORMAT: &str = "counterpoint-backup 1";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// 1 for the first backup into a directory, one more for each backup added to it.
    pub generation: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Each tenant's head: the backup holds its events 1 to head, and nothing after.
    pub heads: BTreeMap<String, Position>,
    /// The log's segments, in order.
    pub log: Vec<FileEntry>,
    /// Everything else: the store's FORMAT, the read-model state, deployed slices, tenant files.
    pub files: Vec<FileEntry>,
    /// Each read model's checkpoint in the backed-up state (at or before its tenant's head).
    pub read_models: BTreeMap<String, Position>,
}

/// One file of a backup: where it is in the backup, where it goes in a data directory, and how
/// many of its bytes belong to the backup (a log segment may hold more, from an interrupted
/// later backup).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub restore_as: String,
    pub len: u64,
    /// Of the first `len` bytes, hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads `dir`'s manifest; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>, BackupError> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackupError::io(&format!("reading {}", path.display()), e)),
        };
        let damaged = |detail: String| BackupError::Damaged { file: path.clone(), detail };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| damaged(format!("does not parse: {e}")))?;
        if manifest.format != FORMAT {
            return Err(damaged(format!("has format {:?}; this build reads {FORMAT:?}", manifest.format)));
        }
        for entry in manifest.log.iter().chain(&manifest.files) {
            for name in [&entry.path, &entry.restore_as] {
                if !is_plain_relative(name) {
                    return Err(damaged(format!("names {name:?}, which is not a plain relative path")));
                }
            }
        }
        Ok(Some(manifest))
    }

    /// Writes the manifest into `dir` atomically: a temporary file, synced, renamed over the old
    /// one, then the directory synced.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest serializes");
        File::create(&tmp)
            .and_then(|mut file| file.write_all(&bytes).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| sync_dir(dir))
            .map_err(|e| BackupError::io(&format!("writing {}", path.display()), e))
    }

    pub fn entry(&self, path: &str) -> Option<&FileEntry> {
        self.log.iter().chain(&self.files).find(|entry| entry.path == path)
    }
}

/// No root, no `..`: a manifest must not send a restore outside its directories.
fn is_plain_relative(name: &str) -> bool {
    let path = Path::new(name);
    !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const CHUNK: usize = 1 << 20;

/// Feeds bytes `from..to` of `file` to `hasher`.
pub fn hash_range(file: &File, from: u64, to: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    stream_range(file, None, from, to, hasher)
}

/// Copies bytes `from..to` of `src` to the same offsets of `dst`, feeding them to `hasher`.
pub fn copy_range(src: &File, dst: &File, from: u64, to: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    stream_range(src, Some(dst), from, to, hasher)
}

fn stream_range(src: &File, dst: Option<&File>, from: u64, to: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    let mut buf = vec![0; CHUNK.min((to - from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        src.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        if let Some(dst) = dst {
            dst.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// Copies the whole file `src` to `dst` (created, synced); its entry in a manifest.
pub fn copy_file(src: &Path, dst: &Path, path: &str, restore_as: &str) -> Result<FileEntry, BackupError> {
    let failed = |e| BackupError::io(&format!("copying {} to {}", src.display(), dst.display()), e);
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let from = File::open(src).map_err(failed)?;
    let len = from.metadata().map_err(failed)?.len();
    let to = File::create(dst).map_err(failed)?;
    let mut hasher = Sha256::new();
    copy_range(&from, &to, 0, len, &mut hasher).and_then(|()| to.sync_all()).map_err(failed)?;
    Ok(FileEntry { path: path.into(), restore_as: restore_as.into(), len, sha256: hex(&hasher.finalize()) })
}

/// The entry of a file already in place (written by something else, e.g. redb).
pub fn entry_of(file: &Path, path: &str, restore_as: &str) -> Result<FileEntry, BackupError> {
    let failed = |e| BackupError::io(&format!("reading {}", file.display()), e);
    let opened = File::open(file).map_err(failed)?;
    opened.sync_all().map_err(failed)?;
    let len = opened.metadata().map_err(failed)?.len();
    let mut hasher = Sha256::new();
    hash_range(&opened, 0, len, &mut hasher).map_err(failed)?;
    Ok(FileEntry { path: path.into(), restore_as: restore_as.into(), len, sha256: hex(&hasher.finalize()) })
}

/// Checks that the first `entry.len` bytes of `file` are the ones the manifest describes;
/// feeds them to `hasher` on the way.
pub fn verify_prefix(file: &File, shown: &Path, entry: &FileEntry, hasher: &mut Sha256) -> Result<(), BackupError> {
    let damaged = |detail: String| BackupError::Damaged { file: shown.to_path_buf(), detail };
    let len = file.metadata().map_err(|e| BackupError::io(&format!("reading {}", shown.display()), e))?.len();
    if len < entry.len {
        return Err(damaged(format!("is {len} bytes; the manifest says {} (truncated)", entry.len)));
    }
    hash_range(file, 0, entry.len, hasher).map_err(|e| BackupError::io(&format!("reading {}", shown.display()), e))?;
    let sha256 = hex(&hasher.clone().finalize());
    if sha256 != entry.sha256 {
        return Err(damaged(format!("its SHA-256 is {sha256}; the manifest says {} (the bytes changed)", entry.sha256)));
    }
    Ok(())
}

