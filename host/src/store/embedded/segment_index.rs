//! The index of a sealed log segment, in a file next to it: immutable, versioned, checksummed.
//!
//! ```text
//! <data dir>/0000000003.idx = block* meta trailer
//! block    = payload crc32(payload):u32                        every read of a block checks it
//! trailer  = "cpsegidx" version:u32 segment:u32 segment_len:u64
//!            meta_offset:u64 meta_len:u32 meta_crc:u32 trailer_crc:u32          (44 bytes)
//! meta     = tenant_count:u32 tenant*
//! tenant   = name_len:u8 name first:u64 last:u64 locs_offset:u64
//!            bucket_count:u32 bucket_offset:u64*(bucket_count + 1)     bucket i: [offset i, offset i+1)
//!            bloom_blocks:u32 (u64 x 8)*                               every key of the tenant
//! key bucket (payload) = entry*, the keys whose hash names this bucket, sorted by (kind, name)
//! entry    = kind:u8 name_len:u16 name count:u32
//!            count <= 128: bytes:u16 varint-deltas (offset:u32 len:u32 crc32:u32)*count
//!                                                      the positions and their events' locations
//!            otherwise:    skip_offset:u64 skip_len:u32            a skip block
//! skip block (payload) = (first:u64 offset:u64 len:u32)*           one per posting block of 128
//! posting block (payload) = varint-deltas
//! loc block (payload) = (offset:u32 len:u32 crc32:u32)* for 64 consecutive positions of one tenant
//! ```
//!
//! A tenant's events in one segment have consecutive positions (`first..=last`: positions are
//! dense and the log is in order), so an event's location is found by arithmetic: the loc block
//! `(p - first) / 64`, and a read needs no location held in memory. Keys are `(kind, name)`,
//! kind 0 an event type and 1 a tag; positions are stored as LEB128 deltas (the first one from 0).
//!
//! A key is found by its hash (FNV-1a and a 64-bit mix, fixed by the format): its bucket is
//! `hash * bucket_count >> 64` (buckets average 1 KiB), and its bloom filter bits lie in one
//! block of 512 bits (one cache line). A lookup is then one bloom probe, one bucket read and a
//! scan of the bucket: no search through key names. A short posting list (most tags' in a
//! segment) holds its events' locations too, so a read of a tag's events needs no loc block.
//!
//! Opening reads only the trailer and the meta (the bucket offsets and the bloom filter, about
//! 1.5 bytes per key): bounded whatever the segment holds. Everything else is read on demand with
//! positioned reads through a [`BlockCache`] bounded in bytes, not mapped: a mapped file's pages
//! count against the process (and a damaged page would be a signal, not an error), while the
//! page cache already keeps hot blocks in memory for positioned reads, and checking a block's
//! checksum once when it enters the cache keeps damage an error. A lookup of a key the segment
//! does not hold usually stops at the bloom filter ([`SegmentIndex::may_match`]: one memory
//! access per segment, and a search tests the segments it is about to pass together so that
//! those accesses overlap). Blocks are small (buckets of about 1 KiB, loc blocks of 64 events)
//! because a random lookup reads one bucket per segment that holds the key. Format 2 (sorted
//! key blocks found through their first keys, no locations in the postings) is rebuilt as 3.

//! The file is written once, to `<name>.idx.tmp`, synced and renamed, so it is whole or absent.
//! One that is missing, damaged, from another version or for another length of its segment (a
//! repair cut the segment) is not trusted: [`SegmentIndex::open_or_rebuild`] builds it again from
//! the segment, which stays the source of truth.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::disk::{Disk, DiskFile, DiskWaits, OpenMode};
use super::log::{scan_segment_from, segment_path, Cursor, EventAt, EventLoc, SegmentKind};
use crate::store::index::{KeyKind, PostingList, Resolved};
use crate::store::Query;

const MAGIC: &[u8; 8] = b"cpsegidx";
/// A run's magic (see index_run.rs): the same blocks and buckets, another meta.
pub(super) const RUN_MAGIC: &[u8; 8] = b"cpidxrun";
/// The version of run files' format; another one is removed and merged again.
pub(super) const RUN_VERSION: u32 = 2;
/// The version of this file's format; another one is rebuilt, never read.
pub(crate) const INDEX_VERSION: u32 = 3;
pub(super) const TRAILER: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4 + 4;
pub(super) const CRC: usize = 4;
const LOCS_PER_BLOCK: u64 = 64;
const LOC_BYTES: usize = 12;
pub(super) const POSTINGS_PER_BLOCK: usize = 128;
const SKIP_ENTRY: usize = 8 + 8 + 4;
/// The bytes a key bucket holds on average: the bucket count is the entries' bytes over this.
const KEY_BLOCK_BYTES: usize = 1024;
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_HASHES: usize = 7;
/// A bloom filter block: 512 bits, one cache line.
pub(super) const BLOOM_BLOCK_WORDS: usize = 8;


/// Why an index file cannot be used as it is. Every case but `Io` is fixed by a rebuild.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexFileError {
    #[error("{} is missing", path.display())]
    Missing { path: PathBuf },
    #[error("{} is for another version or length of its segment: {detail}", path.display())]
    Stale { path: PathBuf, detail: String },
    #[error("{} is damaged: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The segment itself does not scan: a rebuild cannot help.
    #[error("{} cannot be indexed: {detail}", path.display())]
    Segment { path: PathBuf, detail: String },
}

pub(crate) fn index_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.idx"))
}

/// Where an event is in its segment, and the CRC-32 of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub offset: u32,
    pub len: u32,
    pub crc: u32,
}

/// One tenant's events in a segment while an index is built.
#[derive(Default)]
struct TenantBuild {
    first: u64,
    locs: Vec<Loc>,
    types: KeysBuilt,
    tags: KeysBuilt,
}

/// Each key's positions, by name. Keyed by the name alone, so that an event whose keys are
/// there already (most: its type, the tags of a busy boundary) allocates nothing.
type KeysBuilt = HashMap<Box<str>, Vec<u64>, foldhash::fast::RandomState>;

/// The positions of key `name`, an empty list when it is new.
fn positions_of<'p>(keys: &'p mut KeysBuilt, name: &str) -> &'p mut Vec<u64> {
    if !keys.contains_key(name) {
        keys.insert(name.into(), Vec::new());
    }
    keys.get_mut(name).expect("inserted above")
}

/// Collects a segment's events, in log order, and writes their index file.
#[derive(Default)]
pub(crate) struct IndexBuilder {
    tenants: BTreeMap<String, TenantBuild>,
}

impl IndexBuilder {
    /// Adds the event at `position` (one more than the tenant's previous one in this segment)
    /// and its bytes' place in the segment.
    pub fn add(&mut self, tenant: &str, position: u64, event_type: &str, tags: &[String], loc: Loc) -> Result<(), String> {
        if !self.tenants.contains_key(tenant) {
            self.tenants.insert(tenant.to_string(), TenantBuild::default());
        }
        let build = self.tenants.get_mut(tenant).expect("inserted above");
        if build.locs.is_empty() {
            build.first = position;
        } else if position != build.first + build.locs.len() as u64 {
            return Err(format!("tenant {tenant}: position {position} follows {}", build.first + build.locs.len() as u64 - 1));
        }
        build.locs.push(loc);
        positions_of(&mut build.types, event_type).push(position);
        for tag in tags {
            let list = positions_of(&mut build.tags, tag);
            // A tag repeated on one event is one posting.
            if list.last() != Some(&position) {
                list.push(position);
            }
        }
        Ok(())
    }

    /// The file's bytes, for a segment of `segment_len` bytes.
    fn encode(self, segment: u32, segment_len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut metas = Vec::new();
        for (tenant, build) in self.tenants {
            let locs_offset = out.len() as u64;
            for chunk in build.locs.chunks(LOCS_PER_BLOCK as usize) {
                let start = out.len();
                for loc in chunk {
                    for n in [loc.offset, loc.len, loc.crc] {
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                }
                seal(&mut out, start);
            }
            let types = build.types.into_iter().map(|(name, positions)| ((KeyKind::Type, name), positions));
            let mut keys: Vec<_> = types.chain(build.tags.into_iter().map(|(name, positions)| ((KeyKind::Tag, name), positions))).collect();
            keys.sort_unstable_by(|a, b| (a.0 .0, a.0 .1.as_bytes()).cmp(&(b.0 .0, b.0 .1.as_bytes())));
            let mut bloom = Bloom::with_keys(keys.len());
            // Each key's entry (all in one buffer), then the entries dealt to buckets by the
            // key's hash (in key order within a bucket): a lookup reads the one bucket its hash
            // names.
            let mut entries = Vec::with_capacity(keys.len());
            let (mut entry_bytes, mut deltas) = (Vec::new(), Vec::new());
            for ((kind, name), positions) in keys {
                let hash = key_hash(kind, &name);
                bloom.insert_hash(hash);
                let start = entry_bytes.len();
                let entry = &mut entry_bytes;
                entry.push(kind as u8);
                put_str16(entry, &name);
                entry.extend_from_slice(&(positions.len() as u32).to_le_bytes());
                if positions.len() <= POSTINGS_PER_BLOCK {
                    deltas.clear();
                    put_deltas(&mut deltas, &positions);
                    entry.extend_from_slice(&(deltas.len() as u16).to_le_bytes());
                    entry.extend_from_slice(&deltas);
                    for &p in &positions {
                        let loc = build.locs[(p - build.first) as usize];
                        for n in [loc.offset, loc.len, loc.crc] {
                            entry.extend_from_slice(&n.to_le_bytes());
                        }
                    }
                } else {
                    let (skip_offset, skip_len) = write_long_list(&mut out, &positions);
                    entry.extend_from_slice(&skip_offset.to_le_bytes());
                    entry.extend_from_slice(&skip_len.to_le_bytes());
                }
                entries.push((hash, start..entry.len()));
            }
            let bucket_count = entry_bytes.len().div_ceil(KEY_BLOCK_BYTES).max(1);
            // A stable sort: key order stays within a bucket.
            entries.sort_by_key(|(hash, _)| bucket_of(*hash, bucket_count));
            let mut entries = entries.into_iter().peekable();
            let mut bucket_offsets = Vec::with_capacity(bucket_count + 1);
            for bucket in 0..bucket_count {
                let start = out.len();
                bucket_offsets.push(start as u64);
                while let Some((_, entry)) = entries.next_if(|(hash, _)| bucket_of(*hash, bucket_count) == bucket) {
                    out.extend_from_slice(&entry_bytes[entry]);
                }
                seal(&mut out, start);
            }
            bucket_offsets.push(out.len() as u64);
            let last = build.first + build.locs.len() as u64 - 1;
            metas.push((tenant, build.first, last, locs_offset, bucket_offsets, bloom));
        }

        let meta_offset = out.len() as u64;
        out.extend_from_slice(&(metas.len() as u32).to_le_bytes());
        for (tenant, first, last, locs_offset, bucket_offsets, bloom) in metas {
            out.push(tenant.len() as u8);
            out.extend_from_slice(tenant.as_bytes());
            for n in [first, last, locs_offset] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&((bucket_offsets.len() - 1) as u32).to_le_bytes());
            for offset in bucket_offsets {
                out.extend_from_slice(&offset.to_le_bytes());
            }
            out.extend_from_slice(&((bloom.words.len() / BLOOM_BLOCK_WORDS) as u32).to_le_bytes());
            for word in &bloom.words {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        let meta_len = out.len() as u64 - meta_offset;
        let meta_crc = crc32fast::hash(&out[meta_offset as usize..]);
        let trailer_start = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&segment.to_le_bytes());
        out.extend_from_slice(&segment_len.to_le_bytes());
        out.extend_from_slice(&meta_offset.to_le_bytes());
        out.extend_from_slice(&(meta_len as u32).to_le_bytes());
        out.extend_from_slice(&meta_crc.to_le_bytes());
        let trailer_crc = crc32fast::hash(&out[trailer_start..]);
        out.extend_from_slice(&trailer_crc.to_le_bytes());
        out
    }

    /// Writes the index of segment `segment` (`segment_len` bytes) in `dir`: to a temporary
    /// file, synced, then renamed, so the file is whole or absent after a crash.
    pub fn write(self, disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64) -> Result<(), IndexFileError> {
        self.write_to(disk, dir, index_path(dir, segment), segment, segment_len)
    }

    /// [`IndexBuilder::write`] to `path` in `dir` (a checkpoint of the open segment's later
    /// bytes, checkpoint.rs).
    pub fn write_to(self, disk: &dyn Disk, dir: &Path, path: PathBuf, segment: u32, segment_len: u64) -> Result<(), IndexFileError> {
        let tmp = path.with_extension("idx.tmp");
        let io = |source| IndexFileError::Io { path: path.clone(), source };
        let bytes = self.encode(segment, segment_len);
        let file = disk.open(&tmp, OpenMode::CreateTruncate).map_err(io)?;
        file.write_all_at(&bytes, 0).and_then(|()| file.sync_data()).map_err(io)?;
        disk.rename(&tmp, &path).map_err(io)?;
        disk.sync_dir(dir).map_err(io)
    }
}

/// Writes a long posting list's blocks and its skip block; the skip block's offset and length.
fn write_long_list(out: &mut Vec<u8>, positions: &[u64]) -> (u64, u32) {
    let mut skip = Vec::new();
    for chunk in positions.chunks(POSTINGS_PER_BLOCK) {
        let start = out.len();
        put_deltas(out, chunk);
        seal(out, start);
        skip.extend_from_slice(&chunk[0].to_le_bytes());
        skip.extend_from_slice(&(start as u64).to_le_bytes());
        skip.extend_from_slice(&((out.len() - start) as u32).to_le_bytes());
    }
    let offset = out.len();
    out.extend_from_slice(&skip);
    seal(out, offset);
    (offset as u64, (out.len() - offset) as u32)
}

/// Appends the checksum of `out[start..]`.
pub(super) fn seal(out: &mut Vec<u8>, start: usize) {
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

pub(super) fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_deltas(out: &mut Vec<u8>, positions: &[u64]) {
    let mut prev = 0;
    for &p in positions {
        let mut delta = p - prev;
        prev = p;
        while delta >= 0x80 {
            out.push(delta as u8 | 0x80);
            delta >>= 7;
        }
        out.push(delta as u8);
    }
}

pub(super) fn get_deltas(bytes: &[u8]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    let (mut prev, mut value, mut shift) = (0u64, 0u64, 0u32);
    for &b in bytes {
        if shift > 63 {
            return Err("a position is too long".into());
        }
        value |= ((b & 0x7f) as u64) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            prev = prev.checked_add(value).ok_or("positions overflow")?;
            out.push(prev);
            (value, shift) = (0, 0);
        }
    }
    if shift != 0 {
        return Err("a position is cut short".into());
    }
    Ok(out)
}

/// The hash of a key, fixed by this file format (FNV-1a, then splitmix64's finaliser, which
/// spreads FNV's weak low bits), never the standard library's, whose output may change between
/// releases. It names the key's bucket and its bloom filter bits.
pub(super) fn key_hash(kind: KeyKind, name: &str) -> u64 {
    key_hash_raw(kind as u8, name.as_bytes())
}

/// [`key_hash`] of a key as a bucket stores it.
pub(super) fn key_hash_raw(kind: u8, name: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in std::iter::once(&kind).chain(name) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

fn mix(h: u64) -> u64 {
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which of `count` buckets holds the key of hash `hash` (its high bits, scaled).
pub(super) fn bucket_of(hash: u64, count: usize) -> usize {
    ((hash as u128 * count as u128) >> 64) as usize
}

/// A blocked bloom filter over a tenant's keys: a key's bits all lie in one block of 512 bits
/// (one cache line), chosen by the low half of its hash, so a probe of a segment that does not
/// hold the key costs one memory access, however many segments a search passes.
pub(super) struct Bloom {
    pub words: Vec<u64>,
}

impl Bloom {
    pub fn with_keys(keys: usize) -> Self {
        let blocks = (keys * BLOOM_BITS_PER_KEY).div_ceil(BLOOM_BLOCK_WORDS * 64).max(1);
        Bloom { words: vec![0; blocks * BLOOM_BLOCK_WORDS] }
    }

    /// The first word of the key's block.
    fn block(&self, hash: u64) -> usize {
        let blocks = (self.words.len() / BLOOM_BLOCK_WORDS) as u64;
        (((hash & 0xffff_ffff) * blocks) >> 32) as usize * BLOOM_BLOCK_WORDS
    }

    /// The key's block (its first word) and the bits within it.
    fn bits(&self, hash: u64) -> (usize, [u32; BLOOM_HASHES]) {
        let block = self.block(hash);
        // Nine bits a probe, from a second mix: 7 x 9 = 63 bits.
        let bits = mix(hash ^ 0x5851_f42d_4c95_7f2d);
        (block, std::array::from_fn(|i| ((bits >> (9 * i)) & 511) as u32))
    }

    pub fn insert_hash(&mut self, hash: u64) {
        let (block, bits) = self.bits(hash);
        for bit in bits {
            self.words[block + bit as usize / 64] |= 1 << (bit % 64);
        }
    }

    /// No filter: an index file a run covers keeps none in memory (searches go through the
    /// run), and answers "maybe" to every key, never a wrong "no".
    fn absent() -> Self {
        Bloom { words: Vec::new() }
    }

    fn may_hold_hash(&self, hash: u64) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let (block, bits) = self.bits(hash);
        let words = &self.words[block..block + BLOOM_BLOCK_WORDS];
        bits.into_iter().all(|bit| words[bit as usize / 64] & (1 << (bit % 64)) != 0)
    }

    #[cfg(test)]
    fn insert(&mut self, kind: KeyKind, name: &str) {
        self.insert_hash(key_hash(kind, name));
    }

    #[cfg(test)]
    fn may_hold(&self, kind: KeyKind, name: &str) -> bool {
        self.may_hold_hash(key_hash(kind, name))
    }
}

/// Checked blocks of index files, bounded in bytes, shared by a store's segments. Eviction is
/// second chance (CLOCK): a block read since it was last passed over stays one more round.
///
/// A block is admitted on its second miss, as by TinyLFU's doorkeeper: a table of recently
/// missed blocks' fingerprints, a few slots per cached block. Reads of keys spread evenly
/// over a log far bigger than the cache (random tags at 100 M events hit it about 2% of the
/// time) would otherwise allocate and evict a block each, the allocator faulting in fresh
/// pages for them; a block read again soon, as a hot key's is, is kept from its second read.
///
/// It also notes how often the store's reads wait for the disk (an event or a block not in the
/// page cache), which tells searches to ask the disk ahead for what they will read.
pub(crate) struct BlockCache {
    max_bytes: usize,
    inner: Mutex<CacheInner>,
    /// How often the store's reads waited for the disk lately.
    disk_waits: DiskWaits,
}

/// A block's payload and whether it was read since the clock hand last passed it.
type CachedBlock = (Arc<[u8]>, bool);

#[derive(Default)]
struct CacheInner {
    bytes: usize,
    blocks: HashMap<(u64, u64), CachedBlock, foldhash::fast::RandomState>,
    order: VecDeque<(u64, u64)>,
    /// Fingerprints of blocks missed once and not admitted yet, by slot (0: none). One that
    /// shares its slot with another may be pushed out and missed once more before it is kept.
    missed: Vec<u64>,
}

/// The doorkeeper's slots per byte the cache holds: four per KiB, about a block's size, so that
/// few blocks missed in the same while share a slot (64 MiB of cache: 2 MiB of slots).
const BYTES_PER_MISSED_SLOT: usize = 256;

impl BlockCache {
    pub fn new(max_bytes: usize) -> Self {
        let slots = (max_bytes / BYTES_PER_MISSED_SLOT).next_power_of_two().max(64);
        BlockCache {
            max_bytes,
            inner: Mutex::new(CacheInner { missed: vec![0; slots], ..CacheInner::default() }),
            disk_waits: DiskWaits::default(),
        }
    }

    /// Notes a read of the store (an index block, a batch of events) and whether it found its
    /// bytes out of memory.
    pub fn note_read(&self, waited: bool) {
        self.disk_waits.note(waited);
    }

    /// Whether the store's reads often wait for the disk lately ([`DiskWaits::often`]): the log
    /// is not all in memory, and a search then asks for the key buckets it will read all at once
    /// ([`SegmentIndex::prefetch_keys`]) rather than wait for them one by one.
    pub fn reads_disk_often(&self) -> bool {
        self.disk_waits.often()
    }

    fn contains(&self, key: (u64, u64)) -> bool {
        self.inner.lock().expect("block cache lock").blocks.contains_key(&key)
    }

    /// The bytes the cache holds.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("block cache lock").bytes
    }

    fn get(&self, key: (u64, u64)) -> Option<Arc<[u8]>> {
        let mut inner = self.inner.lock().expect("block cache lock");
        let (block, referenced) = inner.blocks.get_mut(&key)?;
        *referenced = true;
        Some(block.clone())
    }

    /// Offers a block just read from its file; kept if it was missed once before (see above).
    fn insert(&self, key: (u64, u64), block: Arc<[u8]>) {
        let mut inner = self.inner.lock().expect("block cache lock");
        if block.len() > self.max_bytes || inner.blocks.contains_key(&key) || !inner.missed_before(key) {
            return;
        }
        inner.bytes += block.len();
        inner.blocks.insert(key, (block, false));
        inner.order.push_back(key);
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            let Some((_, referenced)) = inner.blocks.get_mut(&oldest) else { continue };
            if std::mem::take(referenced) {
                inner.order.push_back(oldest);
            } else if let Some((gone, _)) = inner.blocks.remove(&oldest) {
                inner.bytes -= gone.len();
            }
        }
    }
}

impl CacheInner {
    /// Whether `key` was missed before; if not, remembers it in its slot (over whatever was there).
    fn missed_before(&mut self, (file, offset): (u64, u64)) -> bool {
        let hash = mix(file.rotate_left(32) ^ offset);
        let (slot, fingerprint) = (hash as usize & (self.missed.len() - 1), hash | 1);
        if self.missed[slot] == fingerprint {
            self.missed[slot] = 0;
            return true;
        }
        self.missed[slot] = fingerprint;
        false
    }
}

/// What the meta says about one tenant's events in the segment (or run).
pub(super) struct TenantMeta {
    pub first: u64,
    pub last: u64,
    /// A segment's: where its loc blocks start.
    locs_offset: u64,
    /// Where each key bucket starts, and where the last one ends.
    pub buckets: Vec<u64>,
    pub bloom: Bloom,
    /// A run's: each long posting list's skip block (offset, length), which its entry names.
    long: Vec<(u64, u32)>,
}

impl TenantMeta {
    /// Where the key bucket of the key with `hash` lies: bytes `start..end` of the file (the
    /// meta holds at least one bucket, none empty: checked when it is read).
    fn bucket(&self, hash: u64) -> (u64, u64) {
        let bucket = bucket_of(hash, self.buckets.len() - 1);
        (self.buckets[bucket], self.buckets[bucket + 1])
    }

    /// A copy without the bloom filter, which is not copied only to be dropped.
    fn without_bloom(&self) -> TenantMeta {
        let TenantMeta { first, last, locs_offset, ref buckets, bloom: _, ref long } = *self;
        TenantMeta { first, last, locs_offset, buckets: buckets.clone(), bloom: Bloom::absent(), long: long.clone() }
    }
}

/// Each tenant's meta, by name; hashed with foldhash, since a search looks its tenant up in every
/// segment it passes.
type TenantMetas = HashMap<Box<str>, TenantMeta, foldhash::fast::RandomState>;

/// A query's keys, hashed once to test the bloom filters of many segments.
pub(crate) struct QueryKeys {
    /// Per item: its types' hashes and its tags' hashes; `None`: the query matches every event.
    items: Option<Vec<(Vec<u64>, Vec<u64>)>>,
}

impl QueryKeys {
    pub fn new(query: &Query) -> Self {
        let every = query.matches_every_event();
        let items = (!every).then(|| {
            let hashes = |kind, names: &[String]| names.iter().map(|name| key_hash(kind, name)).collect();
            query.items.iter().map(|item| (hashes(KeyKind::Type, &item.types), hashes(KeyKind::Tag, &item.tags))).collect()
        });
        QueryKeys { items }
    }
}

/// What an index file covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Covers {
    /// One sealed segment: its keys, and each event's location in loc blocks.
    Segment(u32),
    /// Consecutive sealed segments, `first..=last`: their files' keys merged (index_run.rs),
    /// each short posting list's locations naming their segment; no loc blocks.
    Run { first: u32, last: u32 },
}

impl Covers {
    /// The first and last segment covered.
    pub fn segments(self) -> (u32, u32) {
        match self {
            Covers::Segment(segment) => (segment, segment),
            Covers::Run { first, last } => (first, last),
        }
    }

    /// The bytes of one location in a short posting list: a run's name their segment too.
    fn loc_bytes(self) -> usize {
        match self {
            Covers::Segment(_) => LOC_BYTES,
            Covers::Run { .. } => LOC_BYTES + 4,
        }
    }
}

/// An open, checked index file of one sealed segment, or of a run of them.
pub(crate) struct SegmentIndex {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    covers: Covers,
    /// Each segment covered, and the length of it the file describes.
    segments: Vec<(u32, u64)>,
    tenants: TenantMetas,
    cache: Arc<BlockCache>,
    /// This opening's key in the block cache: one per file opened, since a file's name can
    /// stand for another file later (the open segment's from a clean close, then its whole one).
    cache_id: u64,
    /// Where the meta starts: every block lies before it.
    blocks_end: u64,
}

/// The next [`SegmentIndex::cache_id`].
static NEXT_CACHE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Per block of 128 positions of a long list: its first position, its offset and length.
type SkipList = Arc<[(u64, u64, u32)]>;

/// A key's positions in one segment.
pub(crate) enum Postings {
    /// Up to 128 positions and their events' locations, read with the key; in a run, often
    /// their events' records too (the key bucket holding them, and where each starts in it).
    Short(Vec<u64>, Vec<EventLoc>, Option<(Arc<[u8]>, Vec<u32>)>),
    /// More: how many, the first position of each block of 128, and where the block is.
    Long(u64, SkipList),
}

/// One entry of a key bucket, as stored.
pub(super) struct Entry<'b> {
    pub kind: u8,
    pub name: &'b [u8],
    pub count: usize,
    pub body: EntryBody<'b>,
}

pub(super) enum EntryBody<'b> {
    /// `copies`: the events' records, one after another, when a run holds them (empty if not).
    Short { deltas: &'b [u8], locs: &'b [u8], copies: &'b [u8] },
    Long { skip_offset: u64, skip_len: u32 },
}

/// A key's positions in one segment, searched by the query engine.
pub(crate) struct SegmentList<'a> {
    index: &'a SegmentIndex,
    postings: Postings,
}

impl PostingList for SegmentList<'_> {
    type Error = IndexFileError;
    fn next_at_least(&self, x: u64) -> Result<Option<u64>, IndexFileError> {
        self.index.next_at_least(&self.postings, x)
    }
    fn last_at_most(&self, x: u64) -> Result<Option<u64>, IndexFileError> {
        self.index.last_at_most(&self.postings, x)
    }
    fn len(&self) -> u64 {
        match &self.postings {
            Postings::Short(list, ..) => list.len() as u64,
            Postings::Long(count, _) => *count,
        }
    }
}

impl SegmentList<'_> {
    /// Whether this list holds its events' locations (a short one).
    pub fn is_short(&self) -> bool {
        matches!(self.postings, Postings::Short(..))
    }

    /// Where the event at `position` is, if this list holds it and says so (a short one), with
    /// the copy of its record that the list holds, if it does.
    pub fn event_at(&self, position: u64) -> Option<EventAt> {
        match &self.postings {
            Postings::Short(list, locs, copies) => list.binary_search(&position).ok().map(|i| EventAt {
                loc: locs[i],
                copy: copies.as_ref().map(|(block, starts)| (block.clone(), starts[i])),
            }),
            Postings::Long(..) => None,
        }
    }
}

impl SegmentIndex {
    /// Opens the index of segment `segment` in `dir`, which must describe the segment's first
    /// `segment_len` bytes. Reads the trailer and the meta only.
    pub fn open(disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64, cache: Arc<BlockCache>) -> Result<Self, IndexFileError> {
        Self::open_file(disk, index_path(dir, segment), Covers::Segment(segment), &[(segment, segment_len)], cache)
    }

    /// Opens the index file at `path`, which must cover `covers` and describe each of its
    /// segments at the length `lengths` gives. Reads the trailer and the meta only.
    pub(super) fn open_file(
        disk: &dyn Disk,
        path: PathBuf,
        covers: Covers,
        lengths: &[(u32, u64)],
        cache: Arc<BlockCache>,
    ) -> Result<Self, IndexFileError> {
        let file = match disk.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(IndexFileError::Missing { path }),
            Err(source) => return Err(IndexFileError::Io { path, source }),
        };
        let (want_magic, want_version) = match covers {
            Covers::Segment(_) => (MAGIC, INDEX_VERSION),
            Covers::Run { .. } => (RUN_MAGIC, RUN_VERSION),
        };
        let (len, Trailer { version, a, b, meta_offset, meta_len, meta_crc }) = read_trailer(&*file, &path, want_magic)?;
        let damaged = |detail: &str| IndexFileError::Damaged { path: path.clone(), detail: detail.into() };
        let stale = |detail: String| IndexFileError::Stale { path: path.clone(), detail };
        if version != want_version {
            return Err(stale(format!("index format {version}, this build writes {want_version}")));
        }
        match covers {
            Covers::Segment(segment) if (a, b) != lengths[0] => {
                return Err(stale(format!("it indexes {b} bytes of segment {a}, the segment {segment} has {}", lengths[0].1)));
            }
            Covers::Run { first, last } if (a, b) != (first, last as u64) => {
                return Err(stale(format!("it covers segments {a}..={b}, not {first}..={last}")));
            }
            _ => {}
        }
        if meta_offset.checked_add(meta_len as u64 + TRAILER as u64) != Some(len) {
            return Err(damaged("its length does not match its trailer"));
        }
        let mut meta = vec![0; meta_len as usize];
        file.read_exact_at(&mut meta, meta_offset).map_err(|source| IndexFileError::Io { path: path.clone(), source })?;
        if crc32fast::hash(&meta) != meta_crc {
            return Err(damaged("its meta fails its checksum"));
        }
        let (segments, tenants) = parse_meta(&meta, covers).map_err(|e| damaged(&e))?;
        let segments = segments.unwrap_or_else(|| lengths.to_vec());
        if segments != lengths {
            return Err(stale(format!("it describes segments of {segments:?} bytes, they have {lengths:?}")));
        }
        let cache_id = NEXT_CACHE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(SegmentIndex { path, file, covers, segments, tenants, cache, cache_id, blocks_end: meta_offset })
    }

    /// Opens the index of sealed segment `segment`, building it from the segment first when it
    /// is missing, damaged or stale.
    pub fn open_or_rebuild(disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64, cache: Arc<BlockCache>) -> Result<Self, IndexFileError> {
        match Self::open(disk, dir, segment, segment_len, cache.clone()) {
            // Never written: a crash before the sealer wrote it, or a store of format 1.
            Err(IndexFileError::Missing { .. }) => {}
            Err(err @ (IndexFileError::Stale { .. } | IndexFileError::Damaged { .. })) => {
                tracing::warn!("{err}: building it again from its segment");
            }
            other => return other,
        }
        build_from_segment(disk, dir, segment, segment_len)?;
        tracing::info!(segment = %segment_path(dir, segment).display(), "indexed a sealed log segment");
        Self::open(disk, dir, segment, segment_len, cache)
    }

    /// This file without its bloom filters, for a segment a run covers: searches go through
    /// the run, and the segment's file serves only its events' locations.
    pub fn without_blooms(&self) -> SegmentIndex {
        let tenants = self.tenants.iter().map(|(name, meta)| (name.clone(), meta.without_bloom())).collect();
        SegmentIndex { path: self.path.clone(), file: self.file.clone(), covers: self.covers, segments: self.segments.clone(), tenants, cache: self.cache.clone(), cache_id: self.cache_id, blocks_end: self.blocks_end }
    }

    /// The bytes of the bloom filters this file holds in memory.
    pub fn bloom_bytes(&self) -> usize {
        self.tenants.values().map(|meta| meta.bloom.words.len() * 8).sum()
    }

    /// The segment this file indexes (a run's first).
    pub fn segment(&self) -> u32 {
        self.covers.segments().0
    }

    /// What this file covers.
    pub fn covers(&self) -> Covers {
        self.covers
    }

    /// Each segment covered, and the length of it the file describes.
    pub(super) fn segment_lengths(&self) -> &[(u32, u64)] {
        &self.segments
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn tenant_meta(&self, tenant: &str) -> Option<&TenantMeta> {
        self.tenants.get(tenant)
    }

    /// Each tenant with events in this segment, and its first and last position here.
    pub fn tenants(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.tenants.iter().map(|(name, meta)| (&**name, meta.first, meta.last))
    }

    /// The first and last position `tenant` has in this segment.
    #[cfg(test)]
    pub fn range(&self, tenant: &str) -> Option<(u64, u64)> {
        self.tenants.get(tenant).map(|t| (t.first, t.last))
    }

    /// Whether `tenant`'s events here may match the query of `keys`: false when they have none,
    /// or when the bloom filter rules out every item (one of its tags, or all of its types).
    pub fn may_match(&self, tenant: &str, keys: &QueryKeys) -> bool {
        let Some(meta) = self.tenants.get(tenant) else { return false };
        let Some(items) = &keys.items else { return true };
        items.iter().any(|(types, tags)| {
            (types.is_empty() || types.iter().any(|&h| meta.bloom.may_hold_hash(h))) && tags.iter().all(|&h| meta.bloom.may_hold_hash(h))
        })
    }

    /// Loads the bloom filter blocks that [`may_match`](Self::may_match) tests, and returns a
    /// word of them to keep the loads: a search touches the segments it is about to pass first,
    /// so that these memory accesses (one per segment, mostly cache misses) overlap.
    pub fn touch(&self, tenant: &str, keys: &QueryKeys) -> u64 {
        let (Some(meta), Some(items)) = (self.tenants.get(tenant), &keys.items) else { return 0 };
        let hashes = items.iter().flat_map(|(types, tags)| types.iter().chain(tags));
        if meta.bloom.words.is_empty() {
            return 0;
        }
        hashes.fold(0, |acc, &h| acc ^ meta.bloom.words[meta.bloom.block(h)])
    }

    /// Whether this store's reads often wait for the disk lately ([`BlockCache::reads_disk_often`]).
    pub fn reads_disk_often(&self) -> bool {
        self.cache.reads_disk_often()
    }

    /// Asks the disk ahead for the key buckets that a search of `keys` reads here and the block
    /// cache does not hold, so that the parts a search goes through are read side by side.
    pub fn prefetch_keys(&self, tenant: &str, keys: &QueryKeys) {
        let (Some(meta), Some(items)) = (self.tenants.get(tenant), &keys.items) else { return };
        for &hash in items.iter().flat_map(|(types, tags)| types.iter().chain(tags)) {
            if !meta.bloom.may_hold_hash(hash) {
                continue;
            }
            let (offset, end) = meta.bucket(hash);
            if !self.cache.contains((self.cache_id, offset)) {
                self.file.prefetch(offset, end - offset);
            }
        }
    }

    /// The positions of `tenant`'s events with this type or tag, if there are any here.
    pub fn postings(&self, tenant: &str, kind: KeyKind, name: &str) -> Result<Option<Postings>, IndexFileError> {
        let Some(meta) = self.tenants.get(tenant) else { return Ok(None) };
        let hash = key_hash(kind, name);
        if !meta.bloom.may_hold_hash(hash) {
            return Ok(None);
        }
        let (offset, end) = meta.bucket(hash);
        let block = self.block(offset, (end - offset) as u32)?;
        let mut r = Cursor::new(&block);
        let damaged = |e: String| self.damaged(format!("the key bucket at byte {offset}: {e}"));
        while !r.is_empty() {
            let entry = self.entry(meta, &mut r).map_err(damaged)?;
            if entry.kind != kind as u8 || entry.name != name.as_bytes() {
                continue;
            }
            return match entry.body {
                EntryBody::Short { deltas, locs, copies } => {
                    let (positions, locs) = self.short_postings(entry.count, deltas, locs, copies).map_err(damaged)?;
                    let copies = (!copies.is_empty()).then(|| {
                        // `copies` lies in `block`: each record's start in it, from their lengths.
                        let first = (copies.as_ptr() as usize - block.as_ptr() as usize) as u32;
                        let starts = locs.iter().scan(first, |at, loc| Some(std::mem::replace(at, *at + loc.len))).collect();
                        (block.clone(), starts)
                    });
                    Ok(Some(Postings::Short(positions, locs, copies)))
                }
                EntryBody::Long { skip_offset, skip_len } => {
                    self.skip_list(skip_offset, skip_len).map(|s| Some(Postings::Long(entry.count as u64, s)))
                }
            };
        }
        Ok(None)
    }

    /// The next entry of a key bucket.
    pub(super) fn entry<'b>(&self, meta: &TenantMeta, r: &mut Cursor<'b>) -> Result<Entry<'b>, String> {
        let kind = r.take(1)?[0];
        let n = r.u16()?;
        let name = r.take(n)?;
        let count = r.u32()? as usize;
        let body = if count <= POSTINGS_PER_BLOCK {
            let n = r.u16()?;
            let deltas = r.take(n)?;
            let locs = r.take(count * self.covers.loc_bytes())?;
            let copies = match self.covers {
                Covers::Segment(_) => &[][..],
                Covers::Run { .. } => {
                    let n = r.u32()? as usize;
                    r.take(n)?
                }
            };
            EntryBody::Short { deltas, locs, copies }
        } else if let Covers::Run { .. } = self.covers {
            let i = r.u32()? as usize;
            let &(skip_offset, skip_len) = meta.long.get(i).ok_or_else(|| format!("long list {i} is not in the meta"))?;
            EntryBody::Long { skip_offset, skip_len }
        } else {
            EntryBody::Long { skip_offset: r.u64()?, skip_len: r.u32()? }
        };
        Ok(Entry { kind, name, count, body })
    }

    /// A short posting list's positions and their events' locations (and the copies of their
    /// records, if any, must be as long as those locations say).
    pub(super) fn short_postings(&self, count: usize, deltas: &[u8], locs: &[u8], copies: &[u8]) -> Result<(Vec<u64>, Vec<EventLoc>), String> {
        let positions = get_deltas(deltas)?;
        if positions.len() != count {
            return Err(format!("{} positions where the entry says {count}", positions.len()));
        }
        let word = |l: &[u8], i: usize| u32::from_le_bytes(l[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let locs = match self.covers {
            Covers::Segment(segment) => locs
                .chunks_exact(LOC_BYTES)
                .map(|l| EventLoc { segment, offset: word(l, 0), len: word(l, 1), crc: word(l, 2) })
                .collect(),
            Covers::Run { first, last } => {
                let locs: Vec<EventLoc> = locs
                    .chunks_exact(LOC_BYTES + 4)
                    .map(|l| EventLoc { segment: word(l, 0), offset: word(l, 1), len: word(l, 2), crc: word(l, 3) })
                    .collect();
                if let Some(loc) = locs.iter().find(|loc| loc.segment < first || loc.segment > last) {
                    return Err(format!("a location in segment {}, outside the run", loc.segment));
                }
                let copied: u64 = locs.iter().map(|loc| loc.len as u64).sum();
                if !copies.is_empty() && copies.len() as u64 != copied {
                    return Err(format!("{} bytes of copied events where their locations say {copied}", copies.len()));
                }
                locs
            }
        };
        Ok((positions, locs))
    }

    pub(super) fn skip_list(&self, offset: u64, len: u32) -> Result<SkipList, IndexFileError> {
        let block = self.block(offset, len)?;
        if block.len() % SKIP_ENTRY != 0 {
            return Err(self.damaged(format!("the skip block at byte {offset} has a partial entry")));
        }
        Ok(block
            .chunks_exact(SKIP_ENTRY)
            .map(|e| {
                let mut r = Cursor::new(e);
                (r.u64().expect("8 bytes"), r.u64().expect("8 bytes"), r.u32().expect("4 bytes"))
            })
            .collect())
    }

    /// The smallest position `>= x` in `postings`.
    pub fn next_at_least(&self, postings: &Postings, x: u64) -> Result<Option<u64>, IndexFileError> {
        match postings {
            Postings::Short(list, ..) => Ok(list.get(list.partition_point(|&p| p < x)).copied()),
            Postings::Long(_, skip) => {
                let i = skip.partition_point(|&(first, _, _)| first <= x).saturating_sub(1);
                for &(_, offset, len) in &skip[i..(i + 2).min(skip.len())] {
                    let list = self.posting_block(offset, len)?;
                    if let Some(&p) = list.get(list.partition_point(|&p| p < x)) {
                        return Ok(Some(p));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The largest position `<= x` in `postings`.
    pub fn last_at_most(&self, postings: &Postings, x: u64) -> Result<Option<u64>, IndexFileError> {
        let prev = |list: &[u64]| list.partition_point(|&p| p <= x).checked_sub(1).map(|i| list[i]);
        match postings {
            Postings::Short(list, ..) => Ok(prev(list)),
            Postings::Long(_, skip) => match skip.partition_point(|&(first, _, _)| first <= x).checked_sub(1) {
                Some(i) => Ok(prev(&self.posting_block(skip[i].1, skip[i].2)?)),
                None => Ok(None),
            },
        }
    }

    pub(super) fn posting_block(&self, offset: u64, len: u32) -> Result<Vec<u64>, IndexFileError> {
        let block = self.block(offset, len)?;
        get_deltas(&block).map_err(|e| self.damaged(format!("the posting block at byte {offset}: {e}")))
    }

    /// `query` resolved to `tenant`'s lists in this segment, to search with
    /// [`Resolved::next`] and [`Resolved::prev`] within [`SegmentIndex::range`].
    pub fn resolve(&self, tenant: &str, query: &Query) -> Result<Resolved<SegmentList<'_>>, IndexFileError> {
        Resolved::new(query, |kind, name| Ok(self.postings(tenant, kind, name)?.map(|postings| SegmentList { index: self, postings })))
    }

    /// Where the events at `positions` (all `tenant`'s, in this segment) are: offset and length
    /// in the segment.
    pub fn locs(&self, tenant: &str, positions: &[u64]) -> Result<Vec<Loc>, IndexFileError> {
        let meta = self.tenants.get(tenant).ok_or_else(|| self.damaged(format!("no events of tenant {tenant}")))?;
        if let Some(&p) = positions.iter().find(|&&p| p < meta.first || p > meta.last) {
            return Err(self.damaged(format!("position {p} of tenant {tenant} is not in this segment")));
        }
        let block_bytes = LOCS_PER_BLOCK * LOC_BYTES as u64 + CRC as u64;
        // Block `b` of the tenant's loc blocks: its offset and length (the last may be short).
        let block_at = |block: u64| {
            let in_block = (meta.last - meta.first + 1 - block * LOCS_PER_BLOCK).min(LOCS_PER_BLOCK);
            let offset = block.checked_mul(block_bytes).and_then(|at| at.checked_add(meta.locs_offset));
            let offset = offset.ok_or_else(|| self.damaged(format!("tenant {tenant}'s loc blocks lie past the file")))?;
            Ok((offset, (in_block as usize * LOC_BYTES + CRC) as u32))
        };
        let block_of = |p: u64| ((p - meta.first) / LOCS_PER_BLOCK, ((p - meta.first) % LOCS_PER_BLOCK) as usize);
        let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else { return Ok(Vec::new()) };
        let (lo, hi) = (block_of(first.min(last)).0, block_of(first.max(last)).0);
        let mut out = Vec::with_capacity(positions.len());
        let mut push = |block: &[u8], slot: usize, p: u64| {
            let bytes = block.get(slot * LOC_BYTES..(slot + 1) * LOC_BYTES);
            let bytes = bytes.ok_or_else(|| self.damaged(format!("the loc block of position {p} is short")))?;
            let mut r = Cursor::new(bytes);
            out.push(Loc { offset: r.u32().expect("4 bytes"), len: r.u32().expect("4 bytes"), crc: r.u32().expect("4 bytes") });
            Ok::<_, IndexFileError>(())
        };
        if hi > lo && positions.len() as u64 >= (hi - lo + 1).saturating_mul(LOCS_PER_BLOCK / 2) {
            // Most events of consecutive blocks (a full read): one read of them all, each block
            // checked, none cached (a scan reads each block once, and would evict hot ones).
            let (start, _) = block_at(lo)?;
            let (last_offset, last_len) = block_at(hi)?;
            let end = last_offset.checked_add(last_len as u64).ok_or_else(|| self.damaged(format!("tenant {tenant}'s loc blocks lie past the file")))?;
            let bytes = self.read_raw(start, end - start)?;
            let blocks = (lo..=hi)
                .map(|block| {
                    let (offset, len) = block_at(block)?;
                    let raw = &bytes[(offset - start) as usize..(offset - start) as usize + len as usize];
                    let (payload, crc) = raw.split_at(raw.len() - CRC);
                    if crc32fast::hash(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                        return Err(self.damaged(format!("the block at byte {offset} fails its checksum")));
                    }
                    Ok(payload)
                })
                .collect::<Result<Vec<_>, _>>()?;
            for &p in positions {
                let (block, slot) = block_of(p);
                push(blocks[(block - lo) as usize], slot, p)?;
            }
            return Ok(out);
        }
        let mut current: Option<(u64, Arc<[u8]>)> = None;
        for &p in positions {
            let (block, slot) = block_of(p);
            if current.as_ref().is_none_or(|(b, _)| *b != block) {
                let (offset, len) = block_at(block)?;
                current = Some((block, self.block(offset, len)?));
            }
            push(current.as_ref().map(|(_, block)| &block[..]).expect("just read"), slot, p)?;
        }
        Ok(out)
    }

    /// Reads every key bucket and posting block of a run, checking each (`store check`: a run
    /// is not built byte for byte from one segment, so its blocks are checked instead).
    pub(super) fn check_blocks(&self) -> Result<(), IndexFileError> {
        for meta in self.tenants.values() {
            let buckets = &meta.buckets;
            let bytes = self.read_raw(buckets[0], buckets[buckets.len() - 1] - buckets[0])?;
            for pair in buckets.windows(2) {
                let block = &bytes[(pair[0] - buckets[0]) as usize..(pair[1] - buckets[0]) as usize];
                let (payload, crc) = block.split_at(block.len() - CRC);
                if crc32fast::hash(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
                    return Err(self.damaged(format!("the key bucket at byte {} fails its checksum", pair[0])));
                }
                let mut r = Cursor::new(payload);
                let damaged = |e: String| self.damaged(format!("the key bucket at byte {}: {e}", pair[0]));
                while !r.is_empty() {
                    if let EntryBody::Short { deltas, locs, copies } = self.entry(meta, &mut r).map_err(damaged)?.body {
                        let count = locs.len() / self.covers.loc_bytes();
                        let (_, locs) = self.short_postings(count, deltas, locs, copies).map_err(damaged)?;
                        check_copies(&locs, copies).map_err(damaged)?;
                    }
                }
            }
            for &(offset, len) in &meta.long {
                for &(_, offset, len) in self.skip_list(offset, len)?.iter() {
                    self.posting_block(offset, len)?;
                }
            }
        }
        Ok(())
    }

    /// `len` bytes from `offset`, within the blocks, read past the cache (a merge reads each once).
    pub(super) fn read_raw(&self, offset: u64, len: u64) -> Result<Vec<u8>, IndexFileError> {
        if offset.checked_add(len).is_none_or(|end| end > self.blocks_end) {
            return Err(self.damaged(format!("{len} bytes at byte {offset} do not lie within the blocks")));
        }
        let mut bytes = vec![0; len as usize];
        self.file.read_exact_at(&mut bytes, offset).map_err(|source| IndexFileError::Io { path: self.path.clone(), source })?;
        Ok(bytes)
    }

    /// The checked payload of the block at `offset` (`len` bytes with its checksum).
    fn block(&self, offset: u64, len: u32) -> Result<Arc<[u8]>, IndexFileError> {
        // Offsets and lengths come from the meta and from blocks: checked, but never trusted
        // to lie within the file or to name one block the same way twice.
        if (len as usize) < CRC || offset.checked_add(len as u64).is_none_or(|end| end > self.blocks_end) {
            return Err(self.damaged(format!("the block at byte {offset} ({len} bytes) does not lie within the blocks")));
        }
        if let Some(block) = self.cache.get((self.cache_id, offset)) {
            if block.len() + CRC != len as usize {
                return Err(self.damaged(format!("the block at byte {offset} is read as {len} bytes and as {}", block.len() + CRC)));
            }
            return Ok(block);
        }
        // Read on the stack when small (most are), so the block is allocated once, in the cache.
        let (mut stack, mut heap) = ([0u8; 4096], Vec::new());
        let bytes = if len as usize <= stack.len() {
            &mut stack[..len as usize]
        } else {
            heap.resize(len as usize, 0);
            &mut heap[..]
        };
        let io = |source| IndexFileError::Io { path: self.path.clone(), source };
        let in_memory = self.file.read_cached_at(bytes, offset).map_err(io)?;
        self.cache.note_read(!in_memory);
        if !in_memory {
            self.file.read_exact_at(bytes, offset).map_err(io)?;
        }
        let (payload, crc) = bytes.split_at(len as usize - CRC);
        if crc32fast::hash(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(self.damaged(format!("the block at byte {offset} fails its checksum")));
        }
        let block: Arc<[u8]> = payload.into();
        self.cache.insert((self.cache_id, offset), block.clone());
        Ok(block)
    }

    fn damaged(&self, detail: String) -> IndexFileError {
        IndexFileError::Damaged { path: self.path.clone(), detail }
    }
}

/// Each record in `copies` (one after another, as a run copies them) against its location's
/// checksum; nothing to check when there are none.
pub(super) fn check_copies(locs: &[EventLoc], copies: &[u8]) -> Result<(), String> {
    if copies.is_empty() {
        return Ok(());
    }
    let mut at = 0;
    for loc in locs {
        let record = copies.get(at..at + loc.len as usize).ok_or("the copied events are shorter than their locations say")?;
        if crc32fast::hash(record) != loc.crc {
            return Err(format!("the copy of the event at byte {} of segment {} fails its checksum", loc.offset, loc.segment));
        }
        at += loc.len as usize;
    }
    Ok(())
}

/// Segments by number and the length of each that a file describes.
type SegmentLengths = Vec<(u32, u64)>;

/// The segments a run's meta lists (None for a segment's file) and each tenant's meta.
fn parse_meta(meta: &[u8], covers: Covers) -> Result<(Option<SegmentLengths>, TenantMetas), String> {
    let mut r = Cursor::new(meta);
    let run = matches!(covers, Covers::Run { .. });
    let segments = if run {
        let count = r.u32()? as usize;
        let bytes = r.take(count.checked_mul(12).ok_or("too many segments")?)?;
        Some(bytes.chunks_exact(12).map(|s| (u32::from_le_bytes(s[..4].try_into().expect("4 bytes")), u64::from_le_bytes(s[4..].try_into().expect("8 bytes")))).collect())
    } else {
        None
    };
    let count = r.u32()?;
    let mut tenants = TenantMetas::with_capacity_and_hasher(count.min(1 << 16) as usize, Default::default());
    for _ in 0..count {
        let n = r.take(1)?[0] as usize;
        let name = r.str(n)?.into_boxed_str();
        let (first, last) = (r.u64()?, r.u64()?);
        let locs_offset = if run { 0 } else { r.u64()? };
        if first == 0 || last < first {
            return Err(format!("tenant {name} has positions {first}..={last}"));
        }
        let count = r.u32()? as usize;
        if count == 0 {
            return Err(format!("tenant {name} has no key bucket"));
        }
        let bytes = r.take(count.checked_add(1).and_then(|n| n.checked_mul(8)).ok_or("too many key buckets")?)?;
        let buckets: Vec<u64> = bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).collect();
        if buckets.windows(2).any(|w| w[1].checked_sub(w[0]).is_none_or(|len| len < CRC as u64 || len > u32::MAX as u64)) {
            return Err(format!("tenant {name} has key buckets out of order"));
        }
        let blocks = r.u32()? as usize;
        let bytes = r.take(blocks.checked_mul(BLOOM_BLOCK_WORDS * 8).ok_or("a bloom filter too large")?)?;
        let bloom = Bloom { words: bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes"))).collect() };
        if bloom.words.is_empty() {
            return Err(format!("tenant {name} has an empty bloom filter"));
        }
        let mut long = Vec::new();
        if run {
            let count = r.u32()? as usize;
            let bytes = r.take(count.checked_mul(12).ok_or("too many long lists")?)?;
            long = bytes.chunks_exact(12).map(|l| (u64::from_le_bytes(l[..8].try_into().expect("8 bytes")), u32::from_le_bytes(l[8..].try_into().expect("4 bytes")))).collect();
        }
        tenants.insert(name, TenantMeta { first, last, locs_offset, buckets, bloom, long });
    }
    if !r.is_empty() {
        return Err("the meta has trailing bytes".into());
    }
    Ok((segments, tenants))
}

/// An index file's trailer: its format version, what it covers (a segment and its length, or a
/// run's first and last segments), and where its meta is.
struct Trailer {
    version: u32,
    a: u32,
    b: u64,
    meta_offset: u64,
    meta_len: u32,
    meta_crc: u32,
}

/// The length of the index file `file` at `path`, and its trailer, checked against `magic` and
/// its checksum.
fn read_trailer(file: &dyn DiskFile, path: &Path, magic: &[u8; 8]) -> Result<(u64, Trailer), IndexFileError> {
    let io = |source| IndexFileError::Io { path: path.to_path_buf(), source };
    let damaged = |detail: &str| IndexFileError::Damaged { path: path.to_path_buf(), detail: detail.into() };
    let len = file.len().map_err(io)?;
    if len < TRAILER as u64 {
        return Err(damaged("shorter than its trailer"));
    }
    let mut bytes = [0u8; TRAILER];
    file.read_exact_at(&mut bytes, len - TRAILER as u64).map_err(io)?;
    let mut t = Cursor::new(&bytes);
    let fields = (|| {
        let found = t.take(8)?;
        let trailer = Trailer { version: t.u32()?, a: t.u32()?, b: t.u64()?, meta_offset: t.u64()?, meta_len: t.u32()?, meta_crc: t.u32()? };
        Ok::<_, String>((found, trailer, t.u32()?))
    })();
    match fields {
        Ok((found, trailer, crc)) if found == magic && crc32fast::hash(&bytes[..TRAILER - CRC]) == crc => Ok((len, trailer)),
        Ok(_) => Err(damaged("its trailer fails its checksum")),
        Err(e) => Err(damaged(&e)),
    }
}

/// Where the bytes of segment `segment` that the index file at `path` describes end, from its
/// trailer alone (None: there is no file).
pub(crate) fn described_len(disk: &dyn Disk, path: PathBuf, segment: u32) -> Result<Option<u64>, IndexFileError> {
    let file = match disk.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IndexFileError::Io { path, source }),
    };
    let (_, trailer) = read_trailer(&*file, &path, MAGIC)?;
    if trailer.version != INDEX_VERSION || trailer.a != segment {
        let detail = format!("index format {} of segment {}", trailer.version, trailer.a);
        return Err(IndexFileError::Stale { path, detail });
    }
    Ok(Some(trailer.b))
}

/// Scans segment `segment` (`segment_len` bytes, sealed: any damage is an error) and writes its
/// index.
pub(crate) fn build_from_segment(disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64) -> Result<(), IndexFileError> {
    index_segment(disk, dir, segment, segment_len)?.write(disk, dir, segment, segment_len)
}

/// What `store check` finds of a sealed segment's index file.
#[derive(Debug)]
pub(crate) enum IndexFileState {
    Sound,
    /// None: the open segment, or one the next open builds.
    Missing,
    /// What opening the store finds by itself and builds again: another version or segment
    /// length, a damaged trailer or meta.
    RebuiltAtOpen(IndexFileError),
    /// What only the read of a block would find, or a file that cannot be read: the file is not
    /// the index its segment gives.
    Unsound(IndexFileError),
}

/// Checks the index file of `segment` against its segment (`store check`): first what opening
/// it checks (trailer, version, length, meta), then every byte against the index the segment
/// gives. A build is deterministic, so a sound file is identical to it; a flipped bit in a block,
/// which only the read of that block would find, is found here.
pub(crate) fn verify(disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64) -> IndexFileState {
    verify_file(disk, dir, index_path(dir, segment), segment, 0, segment_len)
}

/// [`verify`] of the index file at `path`, which describes bytes `from..to` of `segment` (a
/// checkpoint of the open segment, checkpoint.rs).
pub(crate) fn verify_file(disk: &dyn Disk, dir: &Path, path: PathBuf, segment: u32, from: u64, to: u64) -> IndexFileState {
    let opened = SegmentIndex::open_file(disk, path, Covers::Segment(segment), &[(segment, to)], Arc::new(BlockCache::new(0)));
    let index = match opened {
        Ok(index) => index,
        Err(IndexFileError::Missing { .. }) => return IndexFileState::Missing,
        Err(err @ (IndexFileError::Stale { .. } | IndexFileError::Damaged { .. })) => return IndexFileState::RebuiltAtOpen(err),
        Err(err) => return IndexFileState::Unsound(err),
    };
    let found = index.file.read_all().map_err(|source| IndexFileError::Io { path: index.path.clone(), source });
    let expected = index_segment_range(disk, dir, segment, from, to).map(|builder| builder.encode(segment, to));
    let (found, expected) = match (found, expected) {
        (Ok(found), Ok(expected)) => (found, expected),
        (Err(err), _) | (_, Err(err)) => return IndexFileState::Unsound(err),
    };
    let differs = found.iter().zip(&expected).position(|(a, b)| a != b);
    match differs.or((found.len() != expected.len()).then(|| found.len().min(expected.len()))) {
        None => IndexFileState::Sound,
        Some(at) => IndexFileState::Unsound(IndexFileError::Damaged {
            path: index.path.clone(),
            detail: format!("byte {at} differs from the index its segment gives"),
        }),
    }
}

/// The index of every event in `segment`, from a scan of it.
fn index_segment(disk: &dyn Disk, dir: &Path, segment: u32, segment_len: u64) -> Result<IndexBuilder, IndexFileError> {
    index_segment_range(disk, dir, segment, 0, segment_len)
}

/// The index of the events in bytes `from..to` of `segment` (`from` a frame's start).
pub(crate) fn index_segment_range(disk: &dyn Disk, dir: &Path, segment: u32, from: u64, to: u64) -> Result<IndexBuilder, IndexFileError> {
    let path = segment_path(dir, segment);
    let io = |source| IndexFileError::Io { path: path.clone(), source };
    let file = disk.open(&path, OpenMode::Read).map_err(io)?;
    let mut builder = IndexBuilder::default();
    // A sealed segment, or the open one's published bytes: both end with a frame.
    let scan = scan_segment_from(file.reader_from(from, to), from, to, segment, SegmentKind::Sealed, |_, frame| {
        for ((event, loc), position) in frame.events.iter().zip(frame.first..) {
            builder.add(&frame.tenant, position, &event.event_type, &event.tags, Loc { offset: loc.offset, len: loc.len, crc: loc.crc })?;
        }
        Ok(())
    })
    .map_err(|detail| IndexFileError::Segment { path: path.clone(), detail })?;
    if let Some(damage) = scan.damage {
        return Err(IndexFileError::Segment { path: path.clone(), detail: format!("damaged at byte {}", damage.offset) });
    }
    Ok(builder)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::embedded::disk::RealDisk;
    use crate::store::embedded::log::encode_frame;
    use crate::store::{Event, QueryItem};

    /// Per tenant, each position's event and location.
    pub(in crate::store::embedded) type Expected = BTreeMap<String, Vec<(u64, Event, Loc)>>;

    /// A segment of appends by two tenants (many events of few types, tags from a small set),
    /// written to `dir`; returns its length and, per tenant, each position's (type, tags, loc).
    pub(in crate::store::embedded) fn write_segment(dir: &Path, segment: u32, events: u64) -> (u64, Expected) {
        write_segment_from(dir, segment, events, &BTreeMap::new(), 7)
    }

    /// [`write_segment`] with each tenant's first position (1000 if not given) and the seed given.
    pub(in crate::store::embedded) fn write_segment_from(
        dir: &Path,
        segment: u32,
        events: u64,
        firsts: &BTreeMap<String, u64>,
        seed: u64,
    ) -> (u64, Expected) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut bytes = Vec::new();
        let mut expected: Expected = BTreeMap::new();
        let mut appended = 0;
        while appended < events {
            let tenant = if rng.bool() { "acme" } else { "globex" };
            let batch: Vec<Event> = (0..rng.u64(1..20))
                .map(|_| {
                    // Mostly small, now and then a few hundred bytes.
                    let size = if rng.u8(0..16) == 0 { rng.usize(100..500) } else { rng.usize(0..40) };
                    let mut event = Event::new(format!("Type{}", rng.u8(0..3))).data(vec![1; size]);
                    for _ in 0..rng.usize(0..3) {
                        event = event.tag(format!("key:{}", rng.u32(0..50)));
                    }
                    event
                })
                .collect();
            appended += batch.len() as u64;
            let list = expected.entry(tenant.into()).or_default();
            let first = list.last().map_or(firsts.get(tenant).copied().unwrap_or(1000), |e| e.0 + 1);
            let spans = encode_frame(&mut bytes, tenant, first, &batch);
            for ((event, (at, len)), position) in batch.into_iter().zip(spans).zip(first..) {
                let crc = crc32fast::hash(&bytes[at..at + len]);
                list.push((position, event, Loc { offset: at as u32, len: len as u32, crc }));
            }
        }
        std::fs::write(segment_path(dir, segment), &bytes).unwrap();
        (bytes.len() as u64, expected)
    }

    /// A query of `min_items..3` items, each of up to two types `Type0..` (of `types`) and tags
    /// `key:0..` (of `tags`).
    fn random_query(rng: &mut fastrand::Rng, min_items: usize, types: u8, tags: u32) -> Query {
        let mut query = Query::default();
        for _ in 0..rng.usize(min_items..3) {
            let mut item = QueryItem::default();
            for _ in 0..rng.usize(0..3) {
                item = item.with_type(format!("Type{}", rng.u8(0..types)));
            }
            for _ in 0..rng.usize(0..3) {
                item = item.with_tag(format!("key:{}", rng.u32(0..tags)));
            }
            query = query.or(item);
        }
        query
    }

    /// Each type's and tag's positions among `events`.
    pub(in crate::store::embedded) fn keys_of(events: &[(u64, Event, Loc)]) -> BTreeMap<(KeyKind, String), Vec<u64>> {
        let mut keys: BTreeMap<(KeyKind, String), Vec<u64>> = BTreeMap::new();
        for (position, event, _) in events {
            keys.entry((KeyKind::Type, event.event_type.clone())).or_default().push(*position);
            for tag in &event.tags {
                let list = keys.entry((KeyKind::Tag, tag.clone())).or_default();
                if list.last() != Some(position) {
                    list.push(*position);
                }
            }
        }
        keys
    }

    /// A segment written by [`write_segment`] and its index file, opened.
    fn indexed_segment(dir: &Path, segment: u32, events: u64) -> (SegmentIndex, Expected) {
        let (len, expected) = write_segment(dir, segment, events);
        build_from_segment(&RealDisk, dir, segment, len).unwrap();
        (SegmentIndex::open(&RealDisk, dir, segment, len, Arc::new(BlockCache::new(1 << 20))).unwrap(), expected)
    }

    /// Every position of a list, from its postings.
    pub(in crate::store::embedded) fn every(index: &SegmentIndex, postings: &Postings) -> Vec<u64> {
        let mut out = Vec::new();
        let mut x = 0;
        while let Some(p) = index.next_at_least(postings, x).unwrap() {
            out.push(p);
            x = p + 1;
        }
        out
    }

    #[test]
    fn round_trip_answers_what_the_segment_holds() {
        let dir = tempfile::tempdir().unwrap();
        let (len, expected) = write_segment(dir.path(), 3, 5_000);
        build_from_segment(&RealDisk, dir.path(), 3, len).unwrap();
        // A cache smaller than the index: blocks come and go while the test reads.
        let cache = Arc::new(BlockCache::new(16 << 10));
        let index = SegmentIndex::open(&RealDisk, dir.path(), 3, len, cache.clone()).unwrap();
        for (tenant, events) in &expected {
            assert_eq!(index.range(tenant), Some((events[0].0, events.last().unwrap().0)));
            let positions: Vec<u64> = events.iter().map(|e| e.0).collect();
            let locs: Vec<Loc> = events.iter().map(|e| e.2).collect();
            // Read in one go (most of consecutive blocks) and block by block (sparse), either way.
            assert_eq!(index.locs(tenant, &positions).unwrap(), locs);
            fn reversed<T: Copy>(v: &[T]) -> Vec<T> {
                v.iter().rev().copied().collect()
            }
            fn every_37th<T: Copy>(v: &[T]) -> Vec<T> {
                v.iter().step_by(37).copied().collect()
            }
            assert_eq!(index.locs(tenant, &reversed(&positions)).unwrap(), reversed(&locs));
            assert_eq!(index.locs(tenant, &every_37th(&positions)).unwrap(), every_37th(&locs));
            let keys = keys_of(events);
            assert!(keys.values().any(|l| l.len() > POSTINGS_PER_BLOCK), "long lists are covered");
            assert!(keys.values().any(|l| l.len() <= POSTINGS_PER_BLOCK), "short lists are covered");
            for ((kind, name), list) in &keys {
                let postings = index.postings(tenant, *kind, name).unwrap().expect("a key the segment holds");
                assert_eq!(&every(&index, &postings), list, "{tenant} {kind:?} {name}");
                if let Postings::Short(_, inline, copies) = &postings {
                    assert!(copies.is_none(), "a segment's index holds no copies of its events");
                    let want: Vec<Loc> = list.iter().map(|&p| events[(p - events[0].0) as usize].2).collect();
                    let inline: Vec<(u32, Loc)> = inline.iter().map(|l| (l.segment, Loc { offset: l.offset, len: l.len, crc: l.crc })).collect();
                    let want: Vec<(u32, Loc)> = want.into_iter().map(|loc| (3, loc)).collect();
                    assert_eq!(inline, want, "a short list holds its events' locations: {tenant} {kind:?} {name}");
                }
                for probe in [list[0] - 1, list[0], list[list.len() / 2] + 1, list[list.len() - 1], list[list.len() - 1] + 5] {
                    let want = list.partition_point(|&p| p <= probe).checked_sub(1).map(|i| list[i]);
                    assert_eq!(index.last_at_most(&postings, probe).unwrap(), want);
                }
            }
            assert!(index.postings(tenant, KeyKind::Tag, "key:50").unwrap().is_none());
            assert!(index.postings(tenant, KeyKind::Tag, "Type1").unwrap().is_none(), "kinds are distinct");
        }
        assert!(index.range("initech").is_none());
        assert!(cache.bytes() <= 16 << 10);
    }

    #[test]
    fn queries_in_a_segment_find_what_a_scan_finds() {
        let dir = tempfile::tempdir().unwrap();
        let (index, expected) = indexed_segment(dir.path(), 1, 3_000);
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let query = random_query(&mut rng, 0, 4, 55);
            let tenant = if rng.bool() { "acme" } else { "globex" };
            let events = &expected[tenant];
            let matching: Vec<u64> = events
                .iter()
                .filter(|(_, event, _)| query.matches(event))
                .map(|e| e.0)
                .collect();
            let (first, last) = index.range(tenant).unwrap();
            let resolved = index.resolve(tenant, &query).unwrap();
            let x = rng.u64(first..=last);
            let next = matching.iter().copied().find(|&p| p >= x);
            let prev = matching.iter().copied().rev().find(|&p| p <= x);
            assert_eq!(resolved.next(x, last).unwrap(), next, "{query:?} from {x}");
            assert_eq!(resolved.prev(x, first).unwrap(), prev, "{query:?} back from {x}");
            assert_eq!(resolved.next(first, last).unwrap(), matching.first().copied(), "{query:?}");
        }
    }

    #[test]
    fn bloom_filters_rule_out_segments_without_letting_a_match_through() {
        let dir = tempfile::tempdir().unwrap();
        let (index, expected) = indexed_segment(dir.path(), 2, 3_000);
        let mut rng = fastrand::Rng::with_seed(5);
        let (mut ruled_out, mut absent) = (0, 0);
        for _ in 0..2_000 {
            // Types and tags beyond those written (Type0..3, key:0..50): keys a segment lacks.
            let query = random_query(&mut rng, 1, 5, 60);
            let keys = QueryKeys::new(&query);
            let tenant = if rng.bool() { "acme" } else { "globex" };
            let events = &expected[tenant];
            let matches = events.iter().any(|(_, event, _)| query.items.iter().any(|item| item.matches(event)));
            let held = |f: &dyn Fn(&Event) -> bool| events.iter().any(|(_, event, _)| f(event));
            // Every item names a key no event here has: what the bloom filters can rule out.
            let names_absent_keys = query.items.iter().all(|item| {
                item.tags.iter().any(|tag| !held(&|e| e.tags.contains(tag)))
                    || (!item.types.is_empty() && item.types.iter().all(|t| !held(&|e| &e.event_type == t)))
            });
            if matches {
                assert!(index.may_match(tenant, &keys), "{query:?} matches events of {tenant} here");
            } else if names_absent_keys {
                absent += 1;
                ruled_out += usize::from(!index.may_match(tenant, &keys));
            }
            assert!(!index.may_match("initech", &keys), "a tenant without events here");
        }
        assert!(absent > 100 && ruled_out * 10 > absent * 9, "{ruled_out} of {absent} queries naming absent keys ruled out");
        assert!(index.may_match("acme", &QueryKeys::new(&Query::all())));
        let every_type = Query::item(QueryItem::default().with_type("Type9")).or(QueryItem::default());
        assert!(index.may_match("acme", &QueryKeys::new(&every_type)), "an empty item matches every event");
    }

    #[test]
    fn damage_is_detected_and_rebuilt_from_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (len, _) = write_segment(dir.path(), 0, 2_000);
        let cache = || Arc::new(BlockCache::new(1 << 20));
        let path = index_path(dir.path(), 0);
        let open = || SegmentIndex::open(&RealDisk, dir.path(), 0, len, cache());

        assert!(matches!(open(), Err(IndexFileError::Missing { .. })));
        let rebuilt = SegmentIndex::open_or_rebuild(&RealDisk, dir.path(), 0, len, cache()).unwrap();
        let want = every(&rebuilt, &rebuilt.postings("acme", KeyKind::Type, "Type0").unwrap().unwrap());
        let good = std::fs::read(&path).unwrap();

        // A bit flipped in the meta, in the trailer, in a block; a file cut short.
        let meta_offset = u64::from_le_bytes(good[good.len() - 20..good.len() - 12].try_into().unwrap()) as usize;
        for at in [meta_offset + 3, good.len() - 30] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(matches!(open(), Err(IndexFileError::Damaged { .. })), "byte {at}");
        }
        std::fs::write(&path, &good[..good.len() - 10]).unwrap();
        assert!(matches!(open(), Err(IndexFileError::Damaged { .. })), "a partial file");
        let index = SegmentIndex::open_or_rebuild(&RealDisk, dir.path(), 0, len, cache()).unwrap();
        assert_eq!(every(&index, &index.postings("acme", KeyKind::Type, "Type0").unwrap().unwrap()), want);
        assert_eq!(std::fs::read(&path).unwrap(), good, "the rebuilt file is the same");

        let mut bad = good.clone();
        bad[10] ^= 0x01; // the first block: the loc block of the first tenant
        std::fs::write(&path, &bad).unwrap();
        let index = open().expect("the meta is intact");
        let first = index.range("acme").unwrap().0;
        assert!(matches!(index.locs("acme", &[first]), Err(IndexFileError::Damaged { .. })));
        let run: Vec<u64> = (first..first + 200).collect();
        assert!(matches!(index.locs("acme", &run), Err(IndexFileError::Damaged { .. })), "read in one go, checked too");

        // The segment grew (or a repair cut it): the index is for other bytes.
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(SegmentIndex::open(&RealDisk, dir.path(), 0, len + 1, cache()), Err(IndexFileError::Stale { .. })));
        assert!(matches!(SegmentIndex::open(&RealDisk, dir.path(), 1, len, cache()), Err(IndexFileError::Missing { .. })));
    }

    #[test]
    fn a_power_cut_while_an_index_is_written_leaves_it_whole_or_absent() {
        use crate::store::embedded::sim_disk::{Faults, SimDisk};
        let real = tempfile::tempdir().unwrap();
        let (len, _) = write_segment(real.path(), 0, 1_000);
        build_from_segment(&RealDisk, real.path(), 0, len).unwrap();
        let good = std::fs::read(index_path(real.path(), 0)).unwrap();
        let dir = Path::new("/data");
        let setup = SimDisk::new(1, Faults::default());
        setup.create_dir_all(dir).unwrap();
        setup.set_contents(&segment_path(dir, 0), std::fs::read(segment_path(real.path(), 0)).unwrap());
        let cache = || Arc::new(BlockCache::new(1 << 20));
        let (mut whole, mut absent) = (0, 0);
        for cut in 0..8 {
            for seed in 0..4 {
                let disk = setup.power_cut(seed);
                disk.set_faults(Faults { power_cut_after: Some(cut), ..Faults::default() });
                let built = build_from_segment(&disk, dir, 0, len);
                let after = disk.power_cut(seed);
                match SegmentIndex::open(&after, dir, 0, len, cache()) {
                    Ok(_) => {
                        assert_eq!(after.contents(&index_path(dir, 0)).unwrap(), good, "cut after {cut} operations");
                        whole += 1;
                    }
                    Err(IndexFileError::Missing { .. }) => {
                        assert!(built.is_err(), "a built index survives the cut (cut after {cut})");
                        absent += 1;
                    }
                    Err(other) => panic!("cut after {cut} operations, seed {seed}: {other}"),
                }
                let index = SegmentIndex::open_or_rebuild(&after, dir, 0, len, cache()).unwrap();
                assert!(index.range("acme").is_some());
                assert_eq!(after.contents(&index_path(dir, 0)).unwrap(), good);
            }
        }
        assert!(whole > 0 && absent > 0, "cuts before and after the index was durable: {whole} whole, {absent} absent");
    }

    #[test]
    fn a_damaged_segment_is_not_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let (len, _) = write_segment(dir.path(), 0, 500);
        let mut bytes = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(segment_path(dir.path(), 0), &bytes).unwrap();
        let err = SegmentIndex::open_or_rebuild(&RealDisk, dir.path(), 0, len, Arc::new(BlockCache::new(1 << 20)));
        assert!(matches!(err, Err(IndexFileError::Segment { .. })));
        assert!(!index_path(dir.path(), 0).exists());
    }

    #[test]
    fn deltas_round_trip_and_bad_bytes_are_errors() {
        let positions = [1, 2, 130, 1 << 40, u64::MAX];
        let mut bytes = Vec::new();
        put_deltas(&mut bytes, &positions);
        assert_eq!(get_deltas(&bytes).unwrap(), positions);
        assert!(get_deltas(&bytes[..bytes.len() - 1]).is_err());
        assert!(get_deltas(&[0xff; 11]).is_err());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = BlockCache::new(100);
        for i in 0..50 {
            // Missed twice: admitted.
            cache.insert((0, i), vec![0; 30].into());
            cache.insert((0, i), vec![0; 30].into());
            assert!(cache.bytes() <= 100);
        }
        assert!(cache.get((0, 49)).is_some());
        assert!(cache.get((0, 0)).is_none());
    }

    #[test]
    fn a_block_is_kept_from_its_second_miss_not_its_first() {
        let cache = BlockCache::new(1 << 20);
        for i in 0..1_000 {
            cache.insert((7, i * 64), vec![0; 100].into());
        }
        assert_eq!(cache.bytes(), 0, "blocks read once are not kept");
        assert!(cache.get((7, 0)).is_none());
        for i in 0..1_000 {
            cache.insert((7, i * 64), vec![0; 100].into());
        }
        let kept = (0..1_000).filter(|i| cache.get((7, i * 64)).is_some()).count();
        // 4,096 slots for 1,000 blocks: about a fifth share a slot and push each other out.
        assert!(kept > 700, "{kept} of 1,000 blocks read twice are kept");
        assert_eq!(cache.bytes(), kept * 100);
    }

    #[test]
    fn the_bloom_filter_refuses_most_absent_keys() {
        let mut bloom = Bloom::with_keys(100_000);
        for i in 0..100_000 {
            bloom.insert(KeyKind::Tag, &format!("key:{i}"));
        }
        assert!((0..100_000).all(|i| bloom.may_hold(KeyKind::Tag, &format!("key:{i}"))), "no false negative");
        let false_positives = (100_000..200_000).filter(|i| bloom.may_hold(KeyKind::Tag, &format!("key:{i}"))).count();
        assert!(false_positives < 2_000, "{false_positives} of 100,000 absent keys pass");
    }
}
