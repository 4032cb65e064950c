//! Runs: index files merged over consecutive sealed segments, so that a key whose events are
//! spread over the whole log is looked up in a few files, not in one file per segment.
//!
//! ```text
//! <data dir>/0000000000-0000000063.run   the keys of segments 0..=63 (their .idx files merged)
//! run  = block* meta trailer                          blocks and trailer as in segment_index.rs
//! meta = segment_count:u32 (segment:u32 len:u64)*     each segment covered, at the length indexed
//!        tenant_count:u32 tenant*
//! tenant = name_len:u8 name first:u64 last:u64
//!          bucket_count:u32 bucket_offset:u64*(bucket_count + 1) bloom_blocks:u32 (u64 x 8)*
//!          long_count:u32 (skip_offset:u64 skip_len:u32)*
//! entry  = kind:u8 name_len:u16 name count:u32
//!          count <= 128: bytes:u16 varint-deltas (segment:u32 offset:u32 len:u32 crc32:u32)*count
//!                        copied:u32 record*         the events' records, or none (copied 0)
//!          otherwise:    long:u32                   its skip block, in the tenant's long table
//! ```
//!
//! **Copies.** A short posting list (a tag's, mostly) holds copies of its events' records, as
//! the log has them, when they come to at most [`COPIED_BYTES_PER_KEY`]: a read by that tag
//! takes its events from the key bucket it reads anyway, instead of one read of the log per
//! event (they lie all over it). At 100 M events that is most of a tag read's time (about 60 %,
//! measured before copies). The price is disk (each event again, once per short list it is in)
//! and merges that read the records: from the log for a run of segments, from the input runs'
//! buckets after that. A copy is checked like the log's record (its location's CRC-32) and by its
//! bucket's checksum; run format 1 had no copies, and is merged again as 2.
//!
//! Where an event of a long posting list is still comes from its segment's loc blocks, and
//! the segments' own index files stay (the source for those and for `store check`). A run is
//! derived data: one that is missing, damaged, stale (a repair cut one of its segments), of
//! another format or overlapped by a bigger one is removed when the store opens, and merged
//! again.
//!
//! **Which runs.** The store keeps the sealed segments as a list of parts, runs and segments no
//! run covers yet; the sealer adds each segment it indexes, and the merger (sealer.rs) merges
//! the first [`FAN_IN`] consecutive parts of one size into one: runs
//! of 8, 64, 512 segments, like the digits of a counter in base 8. At 137 segments of 64 MiB (100
//! M events) a search goes through 2 runs of 64, one of 8 and one segment; each segment's index
//! is rewritten about once per level (three times up to 512 segments).
//!
//! **How.** A key bucket's entries are in hash order when sorted within the bucket (a bucket is a
//! range of hashes), so a merge reads its inputs' buckets in order, one chunk at a time, and
//! writes the merged keys in one pass, holding a chunk per input, the run's bucket offsets and
//! its keys' hashes (8 bytes a key, for the bloom filter written last). Long posting lists (an
//! event type's) are written after the buckets, block by block.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::disk::{Disk, DiskFile, OpenMode};
use super::log::{segment_path, Cursor, EventLoc};
use super::segment_index::{
    bucket_of, check_copies, key_hash_raw, put_deltas, put_str16, Bloom, BlockCache, Covers, EntryBody, IndexFileError,
    IndexFileState, SegmentIndex, TenantMeta, BLOOM_BLOCK_WORDS, CRC, POSTINGS_PER_BLOCK, RUN_MAGIC, RUN_VERSION,
};

fn inputs_of<'a>(parts: &[&'a SegmentIndex], metas: &[&'a TenantMeta]) -> Vec<Keys<'a>> {
    parts.iter().zip(metas).map(|(&input, &meta)| Keys { input, meta, next_bucket: 0, ready: VecDeque::new() }).collect()
}

/// How many parts of one size are merged into one run.
pub(super) const FAN_IN: usize = 8;
/// The bytes a run's key bucket holds at most on average (fewer: the estimate counts the inputs'
/// bytes, and merging shares their keys' names).
const RUN_BUCKET_BYTES: u64 = 2048;
/// The most bytes of records a run copies for one key (its short posting list's events), so
/// that a read of the key takes them from its bucket instead of from the log; a key whose events
/// are bigger is read from the log.
const COPIED_BYTES_PER_KEY: u64 = 4096;
/// The bytes of input buckets read at once.
const CHUNK_BYTES: u64 = 1 << 20;

pub(super) fn run_path(dir: &Path, first: u32, last: u32) -> PathBuf {
    dir.join(format!("{first:010}-{last:010}.run"))
}

/// The runs in `dir`, by the segments each covers, in order.
pub(super) fn runs_in(disk: &dyn Disk, dir: &Path) -> std::io::Result<Vec<(u32, u32)>> {
    let mut runs: Vec<(u32, u32)> = disk.list(dir)?.iter().filter_map(|name| parse_run_name(name)).collect();
    runs.sort_unstable();
    Ok(runs)
}

/// The segments among the first `sealed` that the runs in `dir` cover by their names (whether
/// the runs are sound is for [`open_runs`] to say; a name beyond them is ignored).
pub(super) fn named_coverage(disk: &dyn Disk, dir: &Path, sealed: u32) -> HashSet<u32> {
    let names = disk.list(dir).unwrap_or_default();
    let runs = names.iter().filter_map(|name| parse_run_name(name)).filter(|&(first, last)| first < last && last < sealed);
    runs.flat_map(|(first, last)| first..=last).collect()
}

/// The segments a file name names, if it is a run's.
fn parse_run_name(name: &str) -> Option<(u32, u32)> {
    let (first, last) = name.strip_suffix(".run")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn size(part: &SegmentIndex) -> u32 {
    let (first, last) = part.covers().segments();
    last - first + 1
}

/// The parts to merge next, if a merge is due: the first [`FAN_IN`] consecutive parts of one size.
pub(super) fn next_merge(parts: &[Arc<SegmentIndex>]) -> Option<std::ops::Range<usize>> {
    (0..parts.len().saturating_sub(FAN_IN - 1)).find(|&i| parts[i..i + FAN_IN].iter().all(|part| size(part) == size(&parts[i]))).map(|i| i..i + FAN_IN)
}

/// The parts searches go through when the store opens: the runs in `dir` that fit the sealed
/// segments `sealed` (in order, numbered from 0), the biggest first, and the segments they leave.
/// Every other run file (overlapped, stale, damaged, half written) is removed.
pub(super) fn open_runs(disk: &dyn Disk, dir: &Path, sealed: &[Arc<SegmentIndex>], cache: &Arc<BlockCache>) -> Vec<Arc<SegmentIndex>> {
    let names = disk.list(dir).unwrap_or_else(|err| {
        tracing::warn!(%err, "cannot list the index runs; searches go through every segment's index file");
        Vec::new()
    });
    let mut runs: Vec<(u32, u32)> = names.iter().filter_map(|name| parse_run_name(name)).collect();
    runs.sort_unstable_by_key(|&(first, last)| (first, std::cmp::Reverse(last)));
    let mut kept: BTreeMap<u32, Arc<SegmentIndex>> = BTreeMap::new();
    let mut next_free = 0;
    let mut removed = false;
    for (first, last) in runs {
        let path = run_path(dir, first, last);
        let fits = first >= next_free && first < last && (last as usize) < sealed.len();
        let opened = fits.then(|| {
            let lengths: Vec<(u32, u64)> = sealed[first as usize..=last as usize].iter().flat_map(|s| s.segment_lengths().to_vec()).collect();
            SegmentIndex::open_file(disk, path.clone(), Covers::Run { first, last }, &lengths, cache.clone())
        });
        match opened {
            Some(Ok(run)) if !lines_up(&run, &sealed[first as usize..=last as usize]) => {
                tracing::warn!(run = %path.display(), "removing an index run whose tenants' positions are not its segments'");
            }
            Some(Ok(run)) => {
                kept.insert(first, Arc::new(run));
                next_free = last + 1;
                continue;
            }
            Some(Err(err)) => tracing::warn!("{err}: removing it; it is merged again"),
            None => tracing::info!(run = %path.display(), "removing an index run that a bigger one covers"),
        }
        removed |= disk.remove(&path).is_ok();
    }
    for name in names.iter().filter(|name| name.ends_with(".run.tmp")) {
        removed |= disk.remove(&dir.join(name)).is_ok();
    }
    if removed {
        let _ = disk.sync_dir(dir);
    }
    let mut parts = Vec::new();
    let mut at = 0;
    while at < sealed.len() {
        match kept.remove(&(at as u32)) {
            Some(run) => {
                at = run.covers().segments().1 as usize + 1;
                parts.push(run);
            }
            None => {
                parts.push(sealed[at].clone());
                at += 1;
            }
        }
    }
    parts
}

/// What `store check` finds of the run of segments `first..=last` in `dir`, given each sealed
/// segment's length (by number).
pub(super) fn verify(disk: &dyn Disk, dir: &Path, (first, last): (u32, u32), sealed: &[u64]) -> (PathBuf, IndexFileState) {
    let path = run_path(dir, first, last);
    if first >= last || last as usize >= sealed.len() {
        let why = IndexFileError::Stale { path: path.clone(), detail: "it covers segments that are not sealed".into() };
        return (path, IndexFileState::RebuiltAtOpen(why));
    }
    let lengths: Vec<(u32, u64)> = (first..=last).map(|n| (n, sealed[n as usize])).collect();
    let state = match SegmentIndex::open_file(disk, path.clone(), Covers::Run { first, last }, &lengths, Arc::new(BlockCache::new(0))) {
        Err(err @ (IndexFileError::Stale { .. } | IndexFileError::Damaged { .. } | IndexFileError::Missing { .. })) => {
            IndexFileState::RebuiltAtOpen(err)
        }
        Err(err) => IndexFileState::Unsound(err),
        Ok(run) => match run.check_blocks() {
            Ok(()) => IndexFileState::Sound,
            Err(err) => IndexFileState::Unsound(err),
        },
    };
    (path, state)
}

/// Whether each tenant's positions in `run` are those it has in `segments`.
fn lines_up(run: &SegmentIndex, segments: &[Arc<SegmentIndex>]) -> bool {
    let mut want: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for segment in segments {
        for (tenant, first, last) in segment.tenants() {
            want.entry(tenant).and_modify(|range| range.1 = last).or_insert((first, last));
        }
    }
    run.tenants().map(|(tenant, first, last)| (tenant, (first, last))).collect::<BTreeMap<_, _>>() == want
}

/// Merges `inputs` (consecutive parts, oldest first) into one run file, written whole or not
/// at all; None when `stop` was set meanwhile.
pub(super) fn merge(
    disk: &dyn Disk,
    dir: &Path,
    inputs: &[Arc<SegmentIndex>],
    cache: &Arc<BlockCache>,
    stop: &AtomicBool,
) -> Result<Option<SegmentIndex>, IndexFileError> {
    let (first, last) = (inputs[0].covers().segments().0, inputs[inputs.len() - 1].covers().segments().1);
    let path = run_path(dir, first, last);
    let tmp = path.with_extension("run.tmp");
    let io = |source| IndexFileError::Io { path: tmp.clone(), source };
    let file = disk.open(&tmp, OpenMode::CreateTruncate).map_err(io)?;
    let mut out = Out { file: file.clone(), path: tmp.clone(), buf: Vec::with_capacity(CHUNK_BYTES as usize * 2), at: 0 };
    let mut log = LogFiles { disk, dir, open: BTreeMap::new() };
    let written = write_run(&mut out, &mut log, inputs, first, last, stop);
    drop(file);
    let lengths = match written {
        Ok(Some(lengths)) => lengths,
        // Stopped, or failed (a full disk, a damaged input): nothing is left behind.
        other => {
            let _ = disk.remove(&tmp);
            return other.map(|_| None);
        }
    };
    disk.rename(&tmp, &path).map_err(io)?;
    disk.sync_dir(dir).map_err(io)?;
    SegmentIndex::open_file(disk, path, Covers::Run { first, last }, &lengths, cache.clone()).map(Some)
}

/// Writes the run of `inputs` (segments `first..=last`) and syncs it; the segments' lengths it
/// describes, or None when `stop` was set meanwhile.
fn write_run(
    out: &mut Out,
    log: &mut LogFiles,
    inputs: &[Arc<SegmentIndex>],
    first: u32,
    last: u32,
    stop: &AtomicBool,
) -> Result<Option<Vec<(u32, u64)>>, IndexFileError> {
    // Each tenant's inputs, and how many events each input holds (of all its tenants).
    let mut tenants: BTreeMap<&str, (Vec<&SegmentIndex>, Vec<u64>)> = BTreeMap::new();
    for input in inputs {
        let events = input.tenants().fold(0u64, |sum, (_, first, last)| sum.saturating_add((last - first).saturating_add(1)));
        for (tenant, _, _) in input.tenants() {
            let (parts, counts) = tenants.entry(tenant).or_default();
            parts.push(input);
            counts.push(events);
        }
    }
    let lengths: Vec<(u32, u64)> = inputs.iter().flat_map(|input| input.segment_lengths().to_vec()).collect();
    let mut meta = Vec::new();
    meta.extend_from_slice(&(lengths.len() as u32).to_le_bytes());
    for (segment, len) in &lengths {
        meta.extend_from_slice(&segment.to_le_bytes());
        meta.extend_from_slice(&len.to_le_bytes());
    }
    meta.extend_from_slice(&(tenants.len() as u32).to_le_bytes());
    for (tenant, (parts, events)) in &tenants {
        if !merge_tenant(tenant, parts, events, out, log, &mut meta, stop)? {
            return Ok(None);
        }
    }
    let meta_offset = out.pos();
    let meta_crc = crc32fast::hash(&meta);
    out.buf.extend_from_slice(&meta);
    let trailer_start = out.buf.len();
    out.buf.extend_from_slice(RUN_MAGIC);
    out.buf.extend_from_slice(&RUN_VERSION.to_le_bytes());
    out.buf.extend_from_slice(&first.to_le_bytes());
    out.buf.extend_from_slice(&(last as u64).to_le_bytes());
    out.buf.extend_from_slice(&meta_offset.to_le_bytes());
    out.buf.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.buf.extend_from_slice(&meta_crc.to_le_bytes());
    let trailer_crc = crc32fast::hash(&out.buf[trailer_start..]);
    out.buf.extend_from_slice(&trailer_crc.to_le_bytes());
    out.flush()?;
    out.file.sync_data().map_err(|source| IndexFileError::Io { path: out.path.clone(), source })?;
    Ok(Some(lengths))
}

/// The file being written, through a buffer.
struct Out {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    at: u64,
}

impl Out {
    fn pos(&self) -> u64 {
        self.at + self.buf.len() as u64
    }

    /// Writes a block (its payload and checksum); its offset and length.
    fn block(&mut self, payload: &[u8]) -> Result<(u64, u32), IndexFileError> {
        let start = self.pos();
        self.buf.extend_from_slice(payload);
        self.buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let len = (self.pos() - start) as u32;
        if self.buf.len() as u64 >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok((start, len))
    }

    fn flush(&mut self) -> Result<(), IndexFileError> {
        self.file.write_all_at(&self.buf, self.at).map_err(|source| IndexFileError::Io { path: self.path.clone(), source })?;
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// A key of one input, with its postings.
struct Key {
    hash: u64,
    kind: u8,
    name: Box<[u8]>,
    count: usize,
    body: Body,
}

enum Body {
    /// Positions, their events' locations and the copies of their records (empty: none).
    Short(Vec<u64>, Vec<EventLoc>, Vec<u8>),
    Long { skip_offset: u64, skip_len: u32 },
}

impl Key {
    fn order(&self) -> (u64, u8, &[u8]) {
        (self.hash, self.kind, &self.name)
    }
}

/// One input's keys of one tenant, in hash order: its buckets read a chunk at a time.
struct Keys<'a> {
    input: &'a SegmentIndex,
    meta: &'a TenantMeta,
    next_bucket: usize,
    /// The keys read and not yet taken, in order.
    ready: VecDeque<Key>,
}

impl<'a> Keys<'a> {
    fn peek(&mut self) -> Result<Option<&Key>, IndexFileError> {
        while self.ready.is_empty() && self.next_bucket + 1 < self.meta.buckets.len() {
            self.read_chunk()?;
        }
        Ok(self.ready.front())
    }

    fn read_chunk(&mut self) -> Result<(), IndexFileError> {
        let buckets = &self.meta.buckets;
        let start = buckets[self.next_bucket];
        let mut end_bucket = self.next_bucket + 1;
        while end_bucket + 1 < buckets.len() && buckets[end_bucket + 1] - start <= CHUNK_BYTES {
            end_bucket += 1;
        }
        let bytes = self.input.read_raw(start, buckets[end_bucket] - start)?;
        let damaged = |detail: String| IndexFileError::Damaged { path: self.input.path().to_path_buf(), detail };
        for bucket in self.next_bucket..end_bucket {
            let block = &bytes[(buckets[bucket] - start) as usize..(buckets[bucket + 1] - start) as usize];
            let (payload, crc) = block.split_at(block.len() - CRC);
            if crc32fast::hash(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                return Err(damaged(format!("the key bucket at byte {} fails its checksum", buckets[bucket])));
            }
            let mut keys = Vec::new();
            let mut r = Cursor::new(payload);
            while !r.is_empty() {
                let entry = self.input.entry(self.meta, &mut r).map_err(|e| damaged(format!("the key bucket at byte {}: {e}", buckets[bucket])))?;
                let body = match entry.body {
                    EntryBody::Short { deltas, locs, copies } => match self.input.short_postings(entry.count, deltas, locs, copies) {
                        Ok((positions, locs)) => {
                            check_positions(self.input, self.meta, &positions)?;
                            check_copies(&locs, copies).map_err(|e| damaged(format!("the key bucket at byte {}: {e}", buckets[bucket])))?;
                            Body::Short(positions, locs, copies.to_vec())
                        }
                        Err(e) => return Err(damaged(format!("the key bucket at byte {}: {e}", buckets[bucket]))),
                    },
                    EntryBody::Long { skip_offset, skip_len } => Body::Long { skip_offset, skip_len },
                };
                let hash = key_hash_raw(entry.kind, entry.name);
                keys.push(Key { hash, kind: entry.kind, name: entry.name.into(), count: entry.count, body });
            }
            // A bucket holds a range of hashes: sorted within it, its keys follow the earlier ones'.
            keys.sort_unstable_by(|a, b| a.order().cmp(&b.order()));
            self.ready.extend(keys);
        }
        self.next_bucket = end_bucket;
        Ok(())
    }
}

/// Merges one tenant's keys of `parts` into `out`, and its meta into `meta`; false when `stop`.
fn merge_tenant(
    tenant: &str,
    parts: &[&SegmentIndex],
    part_events: &[u64],
    out: &mut Out,
    log: &mut LogFiles,
    meta: &mut Vec<u8>,
    stop: &AtomicBool,
) -> Result<bool, IndexFileError> {
    let metas: Vec<&TenantMeta> = parts.iter().map(|part| part.tenant_meta(tenant).expect("the part holds the tenant")).collect();
    for (pair, next) in metas.windows(2).zip(&parts[1..]) {
        if pair[1].first != pair[0].last + 1 {
            let detail = format!("tenant {tenant}'s positions jump from {} to {}", pair[0].last, pair[1].first);
            return Err(IndexFileError::Damaged { path: next.path().to_path_buf(), detail });
        }
    }
    let (first, last) = (metas[0].first, metas[metas.len() - 1].last);
    // The inputs' key buckets, and the records a segment's short lists will copy: about its
    // share of the segment's bytes (an event is copied once for each short list it is in).
    let estimate = parts.iter().zip(&metas).zip(part_events).fold(0u64, |sum, ((part, m), &events)| {
        sum.saturating_add(m.buckets[m.buckets.len() - 1] - m.buckets[0]).saturating_add(copies_estimate(part, m, events))
    });
    let bucket_count = estimate.div_ceil(RUN_BUCKET_BYTES).max(1) as usize;
    let mut inputs: Vec<Keys> = inputs_of(parts, &metas);
    let mut hashes = Vec::new();
    let mut offsets = Vec::with_capacity(bucket_count + 1);
    let mut bucket = Vec::new();
    let mut long_lists: Vec<Vec<(usize, Body)>> = Vec::new();
    loop {
        if hashes.len() % 4096 == 0 && stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        // The smallest key among the inputs' next ones, and every input that holds it.
        let mut min: Option<(u64, u8, Box<[u8]>)> = None;
        for keys in &mut inputs {
            if let Some(key) = keys.peek()?
                && min.as_ref().is_none_or(|m| key.order() < (m.0, m.1, &m.2[..]))
            {
                min = Some((key.hash, key.kind, key.name.clone()));
            }
        }
        let Some((hash, kind, name)) = min else { break };
        let mut found = Vec::new();
        for (i, keys) in inputs.iter_mut().enumerate() {
            if keys.peek()?.is_some_and(|key| key.order() == (hash, kind, &name[..])) {
                found.push((i, keys.ready.pop_front().expect("peeked")));
            }
        }
        let target = bucket_of(hash, bucket_count);
        while offsets.len() <= target {
            if !offsets.is_empty() {
                out.block(&bucket)?;
                bucket.clear();
            }
            offsets.push(out.pos());
        }
        hashes.push(hash);
        let count: usize = found.iter().map(|(_, key)| key.count).sum();
        bucket.push(kind);
        let name = std::str::from_utf8(&name).map_err(|_| IndexFileError::Damaged {
            path: parts[found[0].0].path().to_path_buf(),
            detail: format!("a key of tenant {tenant} is not UTF-8"),
        })?;
        put_str16(&mut bucket, name);
        bucket.extend_from_slice(&(count as u32).to_le_bytes());
        if count <= POSTINGS_PER_BLOCK {
            let pieces: Vec<(Vec<u64>, Vec<EventLoc>, Vec<u8>)> = found
                .into_iter()
                .map(|(_, key)| match key.body {
                    Body::Short(p, l, c) => (p, l, c),
                    Body::Long { .. } => unreachable!("a list of at most 128 is short in every input"),
                })
                .collect();
            let mut deltas = Vec::new();
            put_deltas(&mut deltas, &pieces.iter().flat_map(|piece| piece.0.iter().copied()).collect::<Vec<_>>());
            bucket.extend_from_slice(&(deltas.len() as u16).to_le_bytes());
            bucket.extend_from_slice(&deltas);
            for loc in pieces.iter().flat_map(|piece| &piece.1) {
                for n in [loc.segment, loc.offset, loc.len, loc.crc] {
                    bucket.extend_from_slice(&n.to_le_bytes());
                }
            }
            let copied: u64 = pieces.iter().flat_map(|piece| &piece.1).map(|loc| loc.len as u64).sum();
            let at = bucket.len();
            bucket.extend_from_slice(&0u32.to_le_bytes());
            if copied <= COPIED_BYTES_PER_KEY {
                let mut whole = true;
                for (_, locs, copies) in &pieces {
                    match copies.is_empty() {
                        false => bucket.extend_from_slice(copies),
                        true => whole &= log.copy_records(locs, &mut bucket),
                    }
                }
                match whole {
                    true => bucket[at..at + 4].copy_from_slice(&(copied as u32).to_le_bytes()),
                    // A record the log cannot give: the key's events are read from the log.
                    false => bucket.truncate(at + 4),
                }
            }
        } else {
            bucket.extend_from_slice(&(long_lists.len() as u32).to_le_bytes());
            // Only the positions are kept: a long list's events are found through their segments.
            let sources = found.into_iter().map(|(i, key)| match key.body {
                Body::Short(positions, ..) => (i, Body::Short(positions, Vec::new(), Vec::new())),
                long => (i, long),
            });
            long_lists.push(sources.collect());
        }
    }
    if offsets.is_empty() {
        offsets.push(out.pos());
    }
    while offsets.len() < bucket_count {
        out.block(&bucket)?;
        bucket.clear();
        offsets.push(out.pos());
    }
    out.block(&bucket)?;
    offsets.push(out.pos());

    let mut long_table = Vec::with_capacity(long_lists.len());
    for sources in long_lists {
        long_table.push(write_long_list(out, parts, &metas, sources)?);
    }
    let mut bloom = Bloom::with_keys(hashes.len());
    for hash in hashes {
        bloom.insert_hash(hash);
    }
    meta.push(tenant.len() as u8);
    meta.extend_from_slice(tenant.as_bytes());
    meta.extend_from_slice(&first.to_le_bytes());
    meta.extend_from_slice(&last.to_le_bytes());
    meta.extend_from_slice(&(bucket_count as u32).to_le_bytes());
    for offset in offsets {
        meta.extend_from_slice(&offset.to_le_bytes());
    }
    meta.extend_from_slice(&((bloom.words.len() / BLOOM_BLOCK_WORDS) as u32).to_le_bytes());
    for word in &bloom.words {
        meta.extend_from_slice(&word.to_le_bytes());
    }
    meta.extend_from_slice(&(long_table.len() as u32).to_le_bytes());
    for (offset, len) in long_table {
        meta.extend_from_slice(&offset.to_le_bytes());
        meta.extend_from_slice(&len.to_le_bytes());
    }
    Ok(true)
}

/// About the bytes of `meta`'s tenant's records in `part` when it is a segment of `events`
/// events (a run's buckets hold its copies already): its share of the segment, at most all of it.
fn copies_estimate(part: &SegmentIndex, meta: &TenantMeta, events: u64) -> u64 {
    let Covers::Segment(_) = part.covers() else { return 0 };
    let bytes = part.segment_lengths()[0].1;
    let share = (meta.last - meta.first).saturating_add(1).min(events);
    (bytes as u128 * share as u128 / events.max(1) as u128) as u64
}

/// The log's segments, opened as a merge first needs their records (a segment's index holds
/// none: a run copies them from the log).
struct LogFiles<'a> {
    disk: &'a dyn Disk,
    dir: &'a Path,
    open: BTreeMap<u32, Arc<dyn DiskFile>>,
}

impl LogFiles<'_> {
    /// Appends the records at `locs` to `out`, each checked against its location's checksum;
    /// false if one cannot be read or fails it (damage `store check` reports). The merge goes
    /// on: a run is derived data, and a key without copies is read from the log.
    fn copy_records(&mut self, locs: &[EventLoc], out: &mut Vec<u8>) -> bool {
        for loc in locs {
            let path = segment_path(self.dir, loc.segment);
            let file = match self.open.get(&loc.segment) {
                Some(file) => Ok(file.clone()),
                None => self.disk.open(&path, OpenMode::Read).inspect(|file| {
                    self.open.insert(loc.segment, file.clone());
                }),
            };
            let start = out.len();
            out.resize(start + loc.len as usize, 0);
            let read = file.and_then(|file| file.read_exact_at(&mut out[start..], loc.offset as u64));
            let problem = match read {
                Err(err) => err.to_string(),
                Ok(()) if crc32fast::hash(&out[start..]) != loc.crc => "it fails its checksum".to_string(),
                Ok(()) => continue,
            };
            tracing::warn!(segment = %path.display(), "a merge cannot copy the event at byte {}: {problem}; its key is read from the log", loc.offset);
            return false;
        }
        true
    }
}

/// Writes a long posting list made of `sources` (each input's part of it, oldest first) as
/// posting blocks of 128 and their skip block; the skip block's offset and length.
fn write_long_list(out: &mut Out, parts: &[&SegmentIndex], metas: &[&TenantMeta], sources: Vec<(usize, Body)>) -> Result<(u64, u32), IndexFileError> {
    let mut skip = Vec::new();
    let mut chunk: Vec<u64> = Vec::with_capacity(POSTINGS_PER_BLOCK);
    let mut deltas = Vec::new();
    let mut flush = |chunk: &mut Vec<u64>, out: &mut Out| -> Result<(), IndexFileError> {
        deltas.clear();
        put_deltas(&mut deltas, chunk);
        let (offset, len) = out.block(&deltas)?;
        skip.extend_from_slice(&chunk[0].to_le_bytes());
        skip.extend_from_slice(&offset.to_le_bytes());
        skip.extend_from_slice(&len.to_le_bytes());
        chunk.clear();
        Ok(())
    };
    let mut push = |i: usize, positions: &[u64], chunk: &mut Vec<u64>, out: &mut Out| -> Result<(), IndexFileError> {
        check_positions(parts[i], metas[i], positions)?;
        for &p in positions {
            chunk.push(p);
            if chunk.len() == POSTINGS_PER_BLOCK {
                flush(chunk, out)?;
            }
        }
        Ok(())
    };
    for (i, body) in sources {
        match body {
            Body::Short(positions, ..) => push(i, &positions, &mut chunk, out)?,
            Body::Long { skip_offset, skip_len } => {
                for &(_, offset, len) in parts[i].skip_list(skip_offset, skip_len)?.iter() {
                    push(i, &parts[i].posting_block(offset, len)?, &mut chunk, out)?;
                }
            }
        }
    }
    if !chunk.is_empty() {
        flush(&mut chunk, out)?;
    }
    out.block(&skip)
}

/// Positions read from `part` must be its tenant's and ascending: a file that passes its
/// checksums may still say otherwise, and a merge never writes what it cannot read back.
fn check_positions(part: &SegmentIndex, meta: &TenantMeta, positions: &[u64]) -> Result<(), IndexFileError> {
    let in_range = positions.iter().all(|p| (meta.first..=meta.last).contains(p));
    if !in_range || positions.windows(2).any(|w| w[0] >= w[1]) {
        let detail = format!("a posting list of positions outside {}..={} or out of order", meta.first, meta.last);
        return Err(IndexFileError::Damaged { path: part.path().to_path_buf(), detail });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::disk::RealDisk;
    use crate::store::embedded::log::segment_path;
    use crate::store::embedded::segment_index::tests::{every, keys_of, write_segment_from, Expected};
    use crate::store::embedded::segment_index::{build_from_segment, index_path, Postings, TRAILER};
    use crate::store::index::KeyKind;

    /// `count` consecutive segments of two tenants in `dir`, indexed; each tenant's events by
    /// position, and the segments' index files opened.
    fn segments(dir: &Path, count: u32, events: u64) -> (Expected, Vec<Arc<SegmentIndex>>) {
        let mut all: Expected = BTreeMap::new();
        let mut indexes = Vec::new();
        for segment in 0..count {
            let firsts = all.iter().map(|(tenant, events)| (tenant.clone(), events.last().unwrap().0 + 1)).collect();
            let (len, expected) = write_segment_from(dir, segment, events, &firsts, segment as u64);
            for (tenant, events) in expected {
                all.entry(tenant).or_default().extend(events);
            }
            build_from_segment(&RealDisk, dir, segment, len).unwrap();
            indexes.push(Arc::new(SegmentIndex::open(&RealDisk, dir, segment, len, Arc::new(BlockCache::new(1 << 20))).unwrap()));
        }
        (all, indexes)
    }

    /// Runs of segments 0..=7 and 8..=15, then the run of those two runs: both kinds of input.
    /// Leaves all three files.
    fn run_of_runs(dir: &Path, parts: &[Arc<SegmentIndex>], cache: &Arc<BlockCache>) -> SegmentIndex {
        let stop = AtomicBool::new(false);
        let low = Arc::new(merge(&RealDisk, dir, &parts[..8], cache, &stop).unwrap().unwrap());
        let high = Arc::new(merge(&RealDisk, dir, &parts[8..], cache, &stop).unwrap().unwrap());
        merge(&RealDisk, dir, &[low, high], cache, &stop).unwrap().unwrap()
    }

    #[test]
    fn a_run_holds_every_key_of_its_parts_with_their_events_locations() {
        let dir = tempfile::tempdir().unwrap();
        let (expected, parts) = segments(dir.path(), 16, 300);
        let run = run_of_runs(dir.path(), &parts, &Arc::new(BlockCache::new(1 << 20)));
        assert_eq!(run.covers(), Covers::Run { first: 0, last: 15 });
        let (mut copied, mut too_big) = (0, 0);
        for (tenant, events) in &expected {
            let keys = keys_of(events);
            assert!(keys.values().any(|l| l.len() > POSTINGS_PER_BLOCK) && keys.values().any(|l| l.len() <= POSTINGS_PER_BLOCK));
            let segment_of = |position: u64| parts.iter().position(|p| p.tenant_meta(tenant).is_some_and(|m| m.first <= position && position <= m.last)).unwrap() as u32;
            for ((kind, name), list) in &keys {
                let postings = run.postings(tenant, *kind, name).unwrap().expect("every key of the parts");
                assert_eq!(&every(&run, &postings), list, "{tenant} {kind:?} {name}");
                if let Postings::Short(_, locs, copies) = &postings {
                    let first = events[0].0;
                    let bytes: u64 = locs.iter().map(|l| l.len as u64).sum();
                    match copies {
                        Some((bucket, starts)) => {
                            for ((&p, loc), &start) in list.iter().zip(locs).zip(starts) {
                                let record = &bucket[start as usize..(start + loc.len) as usize];
                                let event = crate::store::embedded::log::decode_at(record, p, loc).unwrap();
                                assert_eq!(event.event, events[(p - first) as usize].1, "the copy of {p} is its event: {tenant} {name}");
                            }
                            copied += 1;
                        }
                        None => {
                            assert!(bytes > COPIED_BYTES_PER_KEY, "a list of {bytes} bytes of events is copied: {tenant} {name}");
                            too_big += 1;
                        }
                    }
                    let want: Vec<(u32, u32, u32, u32)> = list
                        .iter()
                        .map(|&p| {
                            let loc = events[(p - first) as usize].2;
                            (segment_of(p), loc.offset, loc.len, loc.crc)
                        })
                        .collect();
                    let got: Vec<_> = locs.iter().map(|l| (l.segment, l.offset, l.len, l.crc)).collect();
                    assert_eq!(got, want, "a short list names each event's segment and place: {tenant} {name}");
                }
            }
            assert!(run.postings(tenant, KeyKind::Tag, "key:50").unwrap().is_none());
        }
        assert!(copied > 0 && too_big > 0, "{copied} short lists copied, {too_big} too big to copy: both kinds are covered");
        assert!(run.check_blocks().is_ok());
    }

    #[test]
    fn the_biggest_runs_that_fit_are_kept_and_the_others_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut parts) = segments(dir.path(), 16, 100);
        let cache = Arc::new(BlockCache::new(1 << 20));
        // A crash after the run of runs was written, before its inputs were removed.
        run_of_runs(dir.path(), &parts, &cache);
        assert_eq!(runs_in(&RealDisk, dir.path()).unwrap(), vec![(0, 7), (0, 15), (8, 15)]);
        let found = open_runs(&RealDisk, dir.path(), &parts, &cache);
        assert_eq!(found.iter().map(|p| p.covers()).collect::<Vec<_>>(), vec![Covers::Run { first: 0, last: 15 }]);
        assert_eq!(runs_in(&RealDisk, dir.path()).unwrap(), vec![(0, 15)], "the runs it covers are removed");

        // Segment 12 is not what it was (as after a repair's cut): the run describes other bytes.
        let (len, _) = write_segment_from(dir.path(), 12, 50, &BTreeMap::new(), 99);
        build_from_segment(&RealDisk, dir.path(), 12, len).unwrap();
        parts[12] = Arc::new(SegmentIndex::open(&RealDisk, dir.path(), 12, len, cache.clone()).unwrap());
        let found = open_runs(&RealDisk, dir.path(), &parts, &cache);
        assert_eq!(found.len(), 16, "every segment on its own again");
        assert!(runs_in(&RealDisk, dir.path()).unwrap().is_empty());
    }

    /// A record the log cannot give (damaged since its segment was indexed) does not stop the
    /// merge: the keys of that event get no copies, and are read from the log; the others do.
    #[test]
    fn a_damaged_record_leaves_its_keys_without_copies_and_the_merge_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (expected, parts) = segments(dir.path(), 8, 100);
        let events = &expected["acme"];
        let segment_of = |position: u64| parts.iter().position(|p| p.tenant_meta("acme").is_some_and(|m| m.first <= position && position <= m.last)).unwrap() as u32;
        // An event with a tag, whose short list the run would copy.
        let (position, event, loc) = events.iter().find(|(_, event, _)| !event.tags.is_empty()).unwrap();
        let log = segment_path(dir.path(), segment_of(*position));
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[(loc.offset + loc.len - 1) as usize] ^= 0x40;
        std::fs::write(&log, bytes).unwrap();

        let run = merge(&RealDisk, dir.path(), &parts, &Arc::new(BlockCache::new(1 << 20)), &AtomicBool::new(false)).unwrap().unwrap();
        let keys = keys_of(events);
        let (mut with, mut without) = (0, 0);
        for ((kind, name), list) in keys.iter().filter(|(_, list)| list.len() <= POSTINGS_PER_BLOCK) {
            let Some(Postings::Short(_, locs, copies)) = run.postings("acme", *kind, name).unwrap() else { panic!("{name} is short") };
            let bytes: u64 = locs.iter().map(|l| l.len as u64).sum();
            if list.contains(position) {
                assert!(copies.is_none(), "{name} holds the damaged event: no copies");
                without += 1;
            } else if bytes <= COPIED_BYTES_PER_KEY {
                assert!(copies.is_some(), "{name} is copied");
                with += 1;
            }
        }
        let tags: std::collections::BTreeSet<&String> = event.tags.iter().collect();
        assert!(without == tags.len() && with > 0, "{without} keys without copies, {with} with");
        assert!(run.check_blocks().is_ok());
    }

    /// A store written by the build before (run format 1, without copies) opens: its runs are
    /// removed, searches go through the segments, and the merger merges them again as format 2.
    #[test]
    fn a_run_of_the_format_before_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (_, parts) = segments(dir.path(), 8, 100);
        let cache = Arc::new(BlockCache::new(1 << 20));
        let run = merge(&RealDisk, dir.path(), &parts, &cache, &AtomicBool::new(false)).unwrap().unwrap();
        let path = run.path().to_path_buf();
        drop(run);
        // The trailer as format 1 wrote it: the version, and the trailer's own checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let trailer = bytes.len() - TRAILER;
        bytes[trailer + 8..trailer + 12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[trailer..bytes.len() - 4]);
        let end = bytes.len();
        bytes[end - 4..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();

        let err = SegmentIndex::open_file(&RealDisk, path.clone(), Covers::Run { first: 0, last: 7 }, &[], cache.clone()).err().unwrap();
        assert!(matches!(&err, IndexFileError::Stale { detail, .. } if detail.contains("format 1")), "{err}");
        let found = open_runs(&RealDisk, dir.path(), &parts, &cache);
        assert_eq!(found.len(), 8, "every segment searched on its own");
        assert!(!path.exists(), "the run of the format before is removed, to be merged again");
        merge(&RealDisk, dir.path(), &parts, &cache, &AtomicBool::new(false)).unwrap().unwrap();
        assert_eq!(open_runs(&RealDisk, dir.path(), &parts, &cache).len(), 1, "merged again, it is kept");
    }

    #[test]
    fn a_power_cut_during_a_merge_leaves_the_run_whole_or_absent() {
        use crate::store::embedded::sim_disk::{Faults, SimDisk};
        let real = tempfile::tempdir().unwrap();
        let (_, parts) = segments(real.path(), 8, 400);
        let cache = Arc::new(BlockCache::new(1 << 20));
        let stop = AtomicBool::new(false);
        let good = merge(&RealDisk, real.path(), &parts, &cache, &stop).unwrap().unwrap();
        let good = std::fs::read(good.path()).unwrap();
        let dir = Path::new("/data");
        let setup = SimDisk::new(1, Faults::default());
        setup.create_dir_all(dir).unwrap();
        for segment in 0..8 {
            for path in [segment_path(real.path(), segment), index_path(real.path(), segment)] {
                setup.set_contents(&dir.join(path.file_name().unwrap()), std::fs::read(&path).unwrap());
            }
        }
        let open = |disk: &SimDisk| -> Vec<Arc<SegmentIndex>> {
            (0..8).map(|s| Arc::new(SegmentIndex::open(disk, dir, s, parts[s as usize].segment_lengths()[0].1, cache.clone()).unwrap())).collect()
        };
        let (mut whole, mut absent) = (0, 0);
        for cut in 0..8 {
            for seed in 0..3 {
                let disk = setup.power_cut(seed);
                let inputs = open(&disk);
                disk.set_faults(Faults { power_cut_after: Some(cut), ..Faults::default() });
                let merged = merge(&disk, dir, &inputs, &cache, &stop);
                let after = disk.power_cut(seed);
                let found = open_runs(&after, dir, &open(&after), &cache);
                match found.len() {
                    1 => {
                        assert_eq!(after.contents(&run_path(dir, 0, 7)).unwrap(), good, "cut after {cut} operations");
                        whole += 1;
                    }
                    8 => {
                        assert!(merged.is_err(), "a merged run survives the cut (cut after {cut})");
                        absent += 1;
                    }
                    n => panic!("{n} parts after a cut after {cut} operations"),
                }
                let leftovers: Vec<String> = after.list(dir).unwrap().into_iter().filter(|n| n.ends_with(".tmp")).collect();
                assert!(leftovers.is_empty(), "{leftovers:?}");
            }
        }
        assert!(whole > 0 && absent > 0, "cuts before and after the run was durable: {whole} whole, {absent} absent");
    }
}
