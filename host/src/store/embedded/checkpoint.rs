//! The open segment's index, written when the store closes cleanly, so that the next open scans
//! only what came after it.
//!
//! Opening the store scans the open segment into memory: up to 64 MiB, 0.3–1.1 s and about
//! 100 MB for the 720,000 events of a full one. So the open segment's index is written next to
//! it as a sealed segment's is (`<segment>.idx`, whose trailer names the length it describes):
//! when the store closes cleanly, and while it runs, by the sealer, each time the segment has
//! grown some MiB and some seconds past the last one (only published bytes: a crash cannot take
//! them back). The next open takes the events up to that length from the file, as it takes a
//! sealed segment's, and scans the rest: after a clean close nothing, after a crash what came
//! after the last checkpoint. When the segment is sealed, its whole index replaces the file
//! (the same name) and, in a store opened from one, the part taken from it.
//!
//! The file is derived, and trusted only as far as a cheap check goes: it must describe a prefix
//! of the segment that ends where its last event ends, with that event's checksum holding, so
//! that a segment cut by a repair or changed behind the store's back is not described by a file
//! from before; and the prefix must be whole frames whose checksums hold (read, not parsed:
//! tens of milliseconds for 64 MiB), so that damage in the open segment stops the open as it
//! does without a file. Any other file is removed and the segment scanned whole. The file is written like
//! every index file, to a temporary file, synced and renamed, so a crash while it is written
//! leaves the one before it, or none.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{Disk, DiskFile};
use super::log::first_bad_frame;
use super::segment_index::{build_from_segment, index_path, indexed_len, BlockCache, IndexFileError, Loc, SegmentIndex};
use super::Shared;

/// The open segment's index file, to take the first events from: the file and the length of the
/// segment it describes. None when there is none, or it does not describe a prefix of the
/// segment `file` (`len` bytes): that file is removed, and the segment is scanned whole.
pub(super) fn load(
    disk: &dyn Disk,
    dir: &Path,
    segment: u32,
    file: &Arc<dyn DiskFile>,
    len: u64,
    cache: &Arc<BlockCache>,
) -> Option<(SegmentIndex, u64)> {
    let checked = (|| {
        let Some(prefix) = indexed_len(disk, dir, segment)? else { return Ok(None) };
        if prefix == 0 || prefix > len {
            let detail = format!("it describes {prefix} bytes of a segment of {len}");
            return Err(IndexFileError::Stale { path: index_path(dir, segment), detail });
        }
        let index = SegmentIndex::open(disk, dir, segment, prefix, cache.clone())?;
        check_last_event(&index, &**file, prefix)?;
        // The prefix is not scanned, but damage in it still stops the open, as in any open
        // segment: it is removed, and the scan of the whole segment finds the damage.
        let io = |source| IndexFileError::Io { path: index_path(dir, segment), source };
        if let Some(at) = first_bad_frame(file.reader(prefix), prefix).map_err(io)? {
            let detail = format!("the frame at byte {at} of the segment, before the end it describes, is damaged");
            return Err(IndexFileError::Stale { path: index_path(dir, segment), detail });
        }
        Ok(Some((index, prefix)))
    })();
    checked.unwrap_or_else(|err: IndexFileError| {
        tracing::warn!(%err, "not using the open segment's index file: scanning the segment");
        remove(disk, dir, segment);
        None
    })
}

/// Removes the open segment's index file (one that describes it no more).
pub(super) fn remove(disk: &dyn Disk, dir: &Path, segment: u32) {
    let path = index_path(dir, segment);
    if let Err(err) = disk.remove(&path).and_then(|()| disk.sync_dir(dir)) {
        tracing::warn!(%err, path = %path.display(), "cannot remove an index file that does not describe its segment");
    }
}

/// Whether the last event `index` holds ends the segment's first `prefix` bytes and reads back
/// with its checksum.
fn check_last_event(index: &SegmentIndex, segment: &dyn DiskFile, prefix: u64) -> Result<(), IndexFileError> {
    let path = index.path().to_path_buf();
    let mut last: Option<Loc> = None;
    for (tenant, _, position) in index.tenants() {
        let loc = index.locs(tenant, &[position])?[0];
        if last.is_none_or(|held| loc.offset > held.offset) {
            last = Some(loc);
        }
    }
    let stale = |detail: String| IndexFileError::Stale { path: path.clone(), detail };
    let Some(loc) = last else { return Err(stale("it holds no event".into())) };
    let mut bytes = vec![0; loc.len as usize];
    segment.read_exact_at(&mut bytes, loc.offset.into()).map_err(|source| IndexFileError::Io { path: path.clone(), source })?;
    let end = u64::from(loc.offset) + u64::from(loc.len);
    if end != prefix || crc32fast::hash(&bytes) != loc.crc {
        return Err(stale(format!("its last event, at byte {}, is not what the segment holds there", loc.offset)));
    }
    Ok(())
}

/// When the writer asks the sealer for a checkpoint of the open segment's index: each time the
/// segment has grown `every_bytes` past the last one, and `interval` after it.
pub(super) struct Checkpoints {
    every_bytes: u64,
    interval: Duration,
    last_len: u64,
    last_at: Instant,
}

impl Checkpoints {
    /// For an open segment whose first `len` bytes an index file describes.
    pub fn after(len: u64, every_bytes: u64, interval: Duration) -> Self {
        Checkpoints { every_bytes, interval, last_len: len, last_at: Instant::now() }
    }

    /// Whether a checkpoint of the open segment, now `len` published bytes, is due. Asking moves
    /// the baseline whether or not the sealer's write then succeeds: a disk that refuses the
    /// write is asked again only a full step later, and an open meanwhile scans a little more.
    pub fn due(&mut self, len: u64) -> bool {
        if len.saturating_sub(self.last_len) < self.every_bytes || self.last_at.elapsed() < self.interval {
            return false;
        }
        (self.last_len, self.last_at) = (len, Instant::now());
        true
    }

    /// A new segment: nothing of it is described yet.
    pub fn restart(&mut self) {
        self.last_len = 0;
    }
}

/// While the store runs (on the sealer's thread): writes the index of the first `len` bytes of
/// `segment`, if it is still the open segment.
pub(super) fn write(shared: &Shared, segment: u32, len: u64) {
    let open = shared.segments.read().expect("segments lock").len() - 1;
    if segment as usize == open && !shared.closing.load(Ordering::Relaxed) {
        write_file(shared, segment, len);
    }
}

/// At a clean close (the writer, sealer and merger stopped): writes the index of the open
/// segment's `len` bytes of frames (the writer's end of them: the file may still hold zeros after
/// them if cutting those failed), when they are at least `min_bytes`.
pub(super) fn write_at_close(shared: &Shared, min_bytes: u64, len: u64) {
    let segment = (shared.segments.read().expect("segments lock").len() - 1) as u32;
    if len > 0 && len >= min_bytes {
        write_file(shared, segment, len);
    }
}

/// Writes the index of the first `len` bytes of the open segment, unless a file describes them.
fn write_file(shared: &Shared, segment: u32, len: u64) {
    // After a failed flush the segment may hold a frame that was never published.
    if shared.poisoned().is_some() || matches!(indexed_len(&*shared.disk, &shared.dir, segment), Ok(Some(indexed)) if indexed == len) {
        return;
    }
    match build_from_segment(&*shared.disk, &shared.dir, segment, len) {
        Ok(()) => tracing::debug!(segment, bytes = len, "wrote the open segment's index for the next open"),
        Err(err) => tracing::warn!(%err, "cannot write the open segment's index; the next open scans it"),
    }
}
