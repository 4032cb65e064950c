//! The open segment's index, written while the store runs and when it closes cleanly, so that
//! the next open scans only what came after it.
//!
//! Opening the store scans the open segment into memory: up to 64 MiB, 0.3–1.1 s and about
//! 100 MB for the 720,000 events of a full one. So the open segment's index is written next to
//! it, as a chain of files in a sealed segment's format: the first (`<segment>.idx`, whose
//! trailer names where the bytes it describes end) describes the segment from its start, each
//! next one (`<segment>+<from>.idx`) the bytes from where the one before ends. The sealer adds
//! a file each time the segment has grown some MiB and some seconds past the last one (only
//! published bytes: a crash cannot take them back), and a clean close adds the rest. A file
//! costs what its own bytes cost to index, not what the segment holds, so checkpoints can be
//! close together at any append rate; after `MAX_LINKS` files the next one describes the
//! segment from its start again, in one file, and the others are removed, so a chain stays
//! short. The next open takes the events up to the chain's end from its files, as it takes a
//! sealed segment's, and scans the rest: after a clean close nothing, after a crash what came
//! after the last checkpoint. When the segment is sealed, its whole index replaces the first
//! file (the same name), the others are removed and, in a store opened from them, the parts
//! taken from them go.
//!
//! The files are derived, and trusted only as far as a cheap check goes: each must describe
//! bytes of the segment that begin where its first event begins and end where its last event
//! ends, with that event's checksum holding, so that a segment cut by a repair or changed
//! behind the store's back is not described by a file from before; and those bytes must be
//! whole frames whose checksums hold (read, not parsed: tens of milliseconds for 64 MiB), so
//! that damage in the open segment stops the open as it does without a file. A file that does
//! not continue the chain is removed with every later one, and the segment scanned from where
//! the chain ends. Each file is written like every index file, to a temporary file, synced and
//! renamed, so a crash while it is written leaves the chain as it was.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{Disk, DiskFile};
use super::log::{first_bad_frame, first_frame_len};
use super::segment_index::{described_len, index_path, index_segment_range, BlockCache, Covers, IndexFileError, SegmentIndex};
use super::Shared;

/// How many files a chain holds at most: the checkpoint after that many describes the segment
/// from its start again.
pub(super) const MAX_LINKS: usize = 8;

/// The name of a checkpoint file after the first: segment `segment`'s bytes from `from` on.
pub(crate) fn link_path(dir: &Path, segment: u32, from: u64) -> PathBuf {
    dir.join(format!("{segment:010}+{from:012}.idx"))
}

/// The checkpoint files after the first in `dir`, of every segment: (segment, from, path), in
/// order.
pub(crate) fn links_in(disk: &dyn Disk, dir: &Path) -> std::io::Result<Vec<(u32, u64, PathBuf)>> {
    Ok(links_among(dir, disk.list(dir)?))
}

/// [`links_in`] of the directory `dir` whose entries are `names`.
fn links_among(dir: &Path, names: Vec<String>) -> Vec<(u32, u64, PathBuf)> {
    let mut links: Vec<_> = names
        .into_iter()
        .filter_map(|name| {
            let (segment, from) = name.strip_suffix(".idx")?.split_once('+')?;
            Some((segment.parse().ok()?, from.parse().ok()?, dir.join(&name)))
        })
        .collect();
    links.sort();
    links
}

/// The files of segment `segment`'s chain there are, in order: (from, path), the first file
/// whether or not it exists.
pub(crate) fn chain_files(disk: &dyn Disk, dir: &Path, segment: u32) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let links = links_in(disk, dir)?.into_iter().filter(|&(s, ..)| s == segment).map(|(_, from, path)| (from, path));
    Ok(std::iter::once((0, index_path(dir, segment))).chain(links).collect())
}

/// Where the open segment's checkpoints end, as the sealer knows them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chain {
    pub segment: u32,
    /// Where the bytes its files describe end (0: it has none).
    pub end: u64,
    pub files: usize,
}

impl Chain {
    /// No file of segment `segment` yet.
    pub fn new(segment: u32) -> Self {
        Chain { segment, end: 0, files: 0 }
    }

    /// A file that ends at `end` taken at the open.
    pub fn loaded(&mut self, end: u64) {
        (self.end, self.files) = (end, self.files + 1);
    }

    /// While the store runs (on the sealer's thread): adds the checkpoint of open segment
    /// `segment`'s first `len` bytes, if it is still the open segment.
    pub fn grow(&mut self, shared: &Shared, segment: u32, len: u64) {
        let open = shared.segments.read().expect("segments lock").len() - 1;
        if segment == self.segment && segment as usize == open && !shared.closing.load(Ordering::Relaxed) {
            self.write(shared, len);
        }
    }

    /// At a clean close (the writer, sealer and merger stopped): adds the checkpoint of the open
    /// segment's `len` bytes of frames (the writer's end of them: the file may still hold zeros
    /// after them if cutting those failed), when they are at least `min_bytes`.
    pub fn close(mut self, shared: &Shared, min_bytes: u64, len: u64) {
        let open = (shared.segments.read().expect("segments lock").len() - 1) as u32;
        if self.segment != open {
            // The sealer stopped at a segment it could not index: nothing of this one is written.
            self = Chain::new(open);
        }
        if len > 0 && len >= min_bytes {
            self.write(shared, len);
        }
    }

    /// The segment was sealed: its whole index took the place of the chain, whose other files go.
    pub fn sealed(&mut self, shared: &Shared, segment: u32) {
        remove_links(&*shared.disk, &shared.dir, segment, 0);
        *self = Chain::new(segment + 1);
    }

    /// Writes the file that takes the chain to `len` bytes: of the bytes after its end, or of
    /// the whole segment once it holds `MAX_LINKS` files (the others are removed then).
    fn write(&mut self, shared: &Shared, len: u64) {
        // After a failed flush the segment may hold a frame that was never published.
        if shared.poisoned().is_some() || len <= self.end {
            return;
        }
        let (disk, dir, segment) = (&*shared.disk, &shared.dir, self.segment);
        let from = if self.files >= MAX_LINKS { 0 } else { self.end };
        let path = if from == 0 { index_path(dir, segment) } else { link_path(dir, segment, from) };
        match index_segment_range(disk, dir, segment, from, len).and_then(|index| index.write_to(disk, dir, path, segment, len)) {
            Ok(()) => {
                tracing::debug!(segment, from, to = len, "wrote a checkpoint of the open segment's index for the next open");
                if from == 0 && self.files > 0 {
                    remove_links(disk, dir, segment, 0);
                }
                (self.end, self.files) = (len, if from == 0 { 1 } else { self.files + 1 });
            }
            Err(err) => tracing::warn!(%err, "cannot write a checkpoint of the open segment's index; the next open scans more of it"),
        }
    }
}

/// The open segment's chain, to take its first events from: each file's index and where the
/// bytes it describes end, in order. A file that does not continue the chain (it describes
/// other bytes of the segment, or is damaged) is removed with every later one: the segment is
/// scanned from where the chain ends.
pub(super) fn load(
    disk: &dyn Disk,
    dir: &Path,
    segment: u32,
    file: &Arc<dyn DiskFile>,
    len: u64,
    cache: &Arc<BlockCache>,
) -> Vec<(SegmentIndex, u64)> {
    let files = match chain_files(disk, dir, segment) {
        Ok(files) => files,
        Err(err) => {
            tracing::warn!(%err, "cannot list the open segment's index files: scanning the segment");
            return Vec::new();
        }
    };
    let mut chain = Vec::new();
    let mut end = 0;
    for (from, path) in files {
        let link = described_end(disk, &path, segment, from, end, len)
            .and_then(|to| to.map(|to| open_link(disk, &path, segment, from..to, file, cache).map(|index| (index, to))).transpose());
        match link {
            Ok(Some((index, to))) => {
                chain.push((index, to));
                end = to;
            }
            // No first file: the others describe nothing the open can start from.
            Ok(None) => {
                remove_links(disk, dir, segment, 0);
                break;
            }
            Err(err) => {
                tracing::warn!(%err, "not using the open segment's index file: scanning the segment from where the files before it end");
                remove_from(disk, dir, segment, end);
                break;
            }
        }
    }
    chain
}

/// Removes the files of segment `segment`'s chain that describe it from byte `from` on (the
/// first file too when `from` is 0): they describe it no more.
pub(super) fn remove_from(disk: &dyn Disk, dir: &Path, segment: u32, from: u64) {
    if from == 0 {
        let path = index_path(dir, segment);
        if let Err(err) = disk.remove(&path).and_then(|()| disk.sync_dir(dir)) {
            tracing::warn!(%err, path = %path.display(), "cannot remove an index file that does not describe its segment");
        }
    }
    remove_links(disk, dir, segment, from);
}

/// Removes the checkpoint files after the first of segment `segment` that start at `from` or
/// later (of a sealed segment: all of them, its whole index replaced them).
pub(super) fn remove_links(disk: &dyn Disk, dir: &Path, segment: u32, from: u64) {
    let removed = links_in(disk, dir).and_then(|links| {
        let mut removed = false;
        for (_, _, path) in links.into_iter().filter(|&(s, f, _)| s == segment && f >= from) {
            disk.remove(&path)?;
            removed = true;
        }
        if removed {
            disk.sync_dir(dir)?;
        }
        Ok(())
    });
    if let Err(err) = removed {
        tracing::warn!(%err, segment, "cannot remove the open segment's checkpoint files; the next open does");
    }
}

/// Removes what a crash can leave behind: the checkpoint files after the first of the segments
/// before `open` (a crash after a seal wrote the segment's whole index, before they were
/// removed), and index files' temporary files (a crash while one was written).
pub(super) fn remove_leftovers(disk: &dyn Disk, dir: &Path, open: u32) {
    let names = match disk.list(dir) {
        Ok(names) => names,
        Err(err) => return tracing::warn!(%err, "cannot list the data directory"),
    };
    let temporary: Vec<PathBuf> = names.iter().filter(|name| name.ends_with(".idx.tmp")).map(|name| dir.join(name)).collect();
    for path in &temporary {
        if let Err(err) = disk.remove(path) {
            tracing::warn!(%err, path = %path.display(), "cannot remove an index file's temporary file");
        }
    }
    let mut sealed: Vec<u32> = links_among(dir, names).into_iter().map(|(segment, ..)| segment).filter(|&segment| segment < open).collect();
    sealed.dedup();
    for segment in sealed {
        remove_links(disk, dir, segment, 0);
    }
}

/// Where the bytes that the chain's file at `path`, named for segment `segment` from byte
/// `from`, describes end, when it continues a chain that ends at `chain_end` inside the
/// segment's `len` bytes; None if it does not exist. Only its name and trailer are read.
pub(crate) fn described_end(disk: &dyn Disk, path: &Path, segment: u32, from: u64, chain_end: u64, len: u64) -> Result<Option<u64>, IndexFileError> {
    let stale = |detail: String| IndexFileError::Stale { path: path.to_path_buf(), detail };
    if from != chain_end {
        return Err(stale(format!("it describes the segment from byte {from}, the files before it up to byte {chain_end}")));
    }
    let Some(to) = described_len(disk, path.to_path_buf(), segment)? else { return Ok(None) };
    if to <= from || to > len {
        return Err(stale(format!("it describes bytes {from}..{to} of a segment of {len}")));
    }
    Ok(Some(to))
}

/// Opens the file at `path` of the chain, which describes bytes `from..to` of segment `segment`
/// ([`described_end`]): its index, once the segment's bytes agree with it.
fn open_link(
    disk: &dyn Disk,
    path: &Path,
    segment: u32,
    Range { start: from, end: to }: Range<u64>,
    file: &Arc<dyn DiskFile>,
    cache: &Arc<BlockCache>,
) -> Result<SegmentIndex, IndexFileError> {
    let stale = |detail: String| IndexFileError::Stale { path: path.to_path_buf(), detail };
    let index = SegmentIndex::open_file(disk, path.to_path_buf(), Covers::Segment(segment), &[(segment, to)], cache.clone())?;
    let io = |source| IndexFileError::Io { path: path.to_path_buf(), source };
    let first_frame = first_frame_len(file.reader_from(from, to), to - from).map_err(io)?.unwrap_or(0);
    check_ends(&index, &**file, from..from + first_frame, to)?;
    // The bytes are not scanned, but damage in them still stops the open, as in any open
    // segment: the file is removed, and the scan finds the damage.
    if let Some(at) = first_bad_frame(file.reader_from(from, to), to - from).map_err(io)? {
        let at = from + at;
        return Err(stale(format!("the frame at byte {at} of the segment, before the end it describes, is damaged")));
    }
    Ok(index)
}

/// Whether the events `index` holds begin in the segment's frame at bytes `first_frame` (where
/// the file says it starts) and end at byte `to`, the last reading back with its checksum.
fn check_ends(index: &SegmentIndex, segment: &dyn DiskFile, first_frame: Range<u64>, to: u64) -> Result<(), IndexFileError> {
    let path = index.path().to_path_buf();
    let (mut first, mut last): (Option<u64>, Option<super::segment_index::Loc>) = (None, None);
    for (tenant, start, end) in index.tenants() {
        let start = index.locs(tenant, &[start])?[0];
        let end = index.locs(tenant, &[end])?[0];
        first = Some(first.map_or(u64::from(start.offset), |held| held.min(u64::from(start.offset))));
        if last.is_none_or(|held| end.offset > held.offset) {
            last = Some(end);
        }
    }
    let stale = |detail: String| IndexFileError::Stale { path: path.clone(), detail };
    let (Some(first), Some(loc)) = (first, last) else { return Err(stale("it holds no event".into())) };
    if !first_frame.contains(&first) {
        return Err(stale(format!("its first event is at byte {first}, not in the frame at byte {} where it starts", first_frame.start)));
    }
    let mut bytes = vec![0; loc.len as usize];
    segment.read_exact_at(&mut bytes, loc.offset.into()).map_err(|source| IndexFileError::Io { path: path.clone(), source })?;
    let end = u64::from(loc.offset) + u64::from(loc.len);
    if end != to || crc32fast::hash(&bytes) != loc.crc {
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
    /// For an open segment whose first `len` bytes index files describe.
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
