//! Copying the log's segments up to a cut: whole sealed segments, and the open one up to the
//! cut's length. The log is append-only, so into a directory holding an earlier backup only
//! what is new is copied, after the earlier bytes are checked against its manifest.

use std::fs::{File, OpenOptions};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::{copy_range, hex, verify_prefix, FileEntry, Manifest};
use super::BackupError;

/// The name of segment `number`, as the embedded store names them.
pub fn segment_name(number: u32) -> String {
    format!("events/{number:010}.log")
}

/// How many bytes of the store's log an identity check compares with an earlier backup's copy.
const IDENTITY_BYTES: u64 = 64 << 10;

/// What copying the log did.
pub struct Copied {
    pub entries: Vec<FileEntry>,
    /// Bytes written into the backup (the rest was there already).
    pub bytes_copied: u64,
}

/// Copies segments `0..=last` of the store in `store_dir` into `dest/events/`, the last one up
/// to `last_len`, adding to what `previous` (the backup in `dest`) holds.
pub fn copy_log(store_dir: &Path, dest: &Path, last: u32, last_len: u64, previous: Option<&Manifest>) -> Result<Copied, BackupError> {
    std::fs::create_dir_all(dest.join("events")).map_err(|e| BackupError::io(&format!("creating {}", dest.join("events").display()), e))?;
    if let Some(previous) = previous {
        // An earlier backup with more segments than the store has is not of this log.
        let later = previous.log.iter().find(|entry| (0..=last).all(|n| segment_name(n) != entry.path));
        if let Some(entry) = later {
            return Err(BackupError::OtherStore(format!(
                "the backup holds {} but the store's log ends before it",
                entry.path
            )));
        }
    }
    let mut copied = Copied { entries: Vec::new(), bytes_copied: 0 };
    for number in 0..=last {
        let name = segment_name(number);
        let src_path = store_dir.join(format!("{number:010}.log"));
        let dst_path = dest.join(&name);
        let src = File::open(&src_path).map_err(|e| BackupError::io(&format!("opening {}", src_path.display()), e))?;
        // Earlier segments are sealed: the writer never touches them again.
        let len = if number == last {
            last_len
        } else {
            src.metadata().map_err(|e| BackupError::io(&format!("reading {}", src_path.display()), e))?.len()
        };
        let dst = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&dst_path)
            .map_err(|e| BackupError::io(&format!("opening {}", dst_path.display()), e))?;
        let mut hasher = Sha256::new();
        let kept = match previous.and_then(|p| p.entry(&name)) {
            Some(entry) => {
                verify_prefix(&dst, &dst_path, entry, &mut hasher)?;
                check_same_log(&src, &src_path, &dst, entry.len, len)?;
                entry.len
            }
            None => 0,
        };
        let io = |e| BackupError::io(&format!("copying {} to {}", src_path.display(), dst_path.display()), e);
        // Anything past what the manifest vouches for is from a backup that did not finish.
        dst.set_len(kept).map_err(io)?;
        copy_range(&src, &dst, kept, len, &mut hasher).and_then(|()| dst.sync_all()).map_err(io)?;
        copied.bytes_copied += len - kept;
        copied.entries.push(FileEntry { path: name.clone(), restore_as: name, len, sha256: hex(&hasher.finalize()) });
    }
    super::manifest::sync_dir(&dest.join("events")).map_err(|e| BackupError::io("syncing the backup's events directory", e))?;
    Ok(copied)
}

/// An earlier backup's copy of a segment must be a prefix of the store's: no longer, and its
/// last bytes the same (a cheap check that catches a backup of another store, or of this one
/// before `store repair` cut it, without reading the whole log again).
fn check_same_log(src: &File, src_path: &Path, dst: &File, kept: u64, len: u64) -> Result<(), BackupError> {
    let other = |detail: String| BackupError::OtherStore(format!("{}: {detail}", src_path.display()));
    if kept > len {
        return Err(other(format!("the backup holds {kept} bytes of it, more than the log's {len}")));
    }
    let from = kept.saturating_sub(IDENTITY_BYTES);
    let (mut ours, mut theirs) = (vec![0; (kept - from) as usize], vec![0; (kept - from) as usize]);
    use std::os::unix::fs::FileExt;
    src.read_exact_at(&mut ours, from).map_err(|e| BackupError::io(&format!("reading {}", src_path.display()), e))?;
    dst.read_exact_at(&mut theirs, from).map_err(|e| BackupError::io("reading the earlier backup", e))?;
    if ours != theirs {
        return Err(other(format!("its bytes {from} to {kept} differ from the earlier backup's copy")));
    }
    Ok(())
}
