//! The embedded backend: the durable default, in one data directory.
//!
//! ```text
//! <data dir>/FORMAT            "counterpoint-store 2"
//! <data dir>/LOCK              held by the process that has the store open; holds its pid
//! <data dir>/0000000000.log    log segments: checksummed frames, one per append (see log.rs)
//! <data dir>/0000000000.idx    a sealed segment's type and tag index (see segment_index.rs)
//! <data dir>/0000000005+000012582912.idx   the open segment's index from byte 12582912 on,
//!                              after the checkpoint that ends there (see checkpoint.rs)
//! <data dir>/0000000000-0000000007.run   index files merged over 8 segments (see index_run.rs)
//! ```
//!
//! Events are written once, sequentially, by a group-commit writer (writer.rs): concurrent
//! appends share one `fdatasync`, and appends are accepted (checked and indexed) while the
//! previous flush runs. The type and tag indexes are derived from the log. The open segment's
//! are kept in memory; when a segment is sealed (the writer starts the next one), its index is
//! written next to it as an immutable file (sealer.rs) and memory forgets it. Opening the store
//! reads the index files' small meta and scans the open segment alone, so it takes about as long
//! whatever the size of the log, and memory holds the open segment's index, the files' metas and
//! a bounded cache of their blocks. Index files are merged into runs over 8, 64, 512 segments in
//! the background, so that a key whose events are spread over the log is found in a few files;
//! a segment a run covers keeps its file's meta in memory without its bloom filters, which only
//! searches use. A read resolves its query on the indexes (tenant.rs) and
//! fetches the events with positioned reads, coalescing neighbours into one read; each event's
//! checksum is checked as it is read.
//!
//! Durability: an append is acknowledged only after its frame is synced. When the store opens,
//! a torn frame at the end of the last segment (a crash during a write) is cut off; damage
//! with valid frames after it stops the store from opening (check.rs says what to do). An
//! index file that is missing, partial, damaged or stale is built again from its segment.
//!
//! Format 1 (before index files) is upgraded in place: the first open builds every sealed
//! segment's index file, then writes format 2.

/// `counterpoint store check|repair`.
pub mod check;
mod checkpoint;
pub mod disk;
pub mod sim_disk;
// The FoundationDB backend reuses the event record encoding.
pub(super) mod log;
mod index_run;
mod sealer;
mod segment_index;
mod tenant;
mod threads;
mod writer;


use std::any::Any;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use self::check::damage_report;
use self::disk::{Disk, DiskFile, OpenMode, RealDisk};
use self::log::{decode_at, decode_run, list_segments, scan_segment_from, segment_path, EventLoc, EventsAt, SegmentKind};
use self::segment_index::{BlockCache, Covers, SegmentIndex};
use self::tenant::{index_error, SealedPart, TenantLog};
use self::checkpoint::{Chain, Checkpoints};
use self::writer::{Accepted, Writer};
use crate::last_noted::LastNoted;
use super::index::{ReadCursor, TenantIndex};
use super::{
    AcceptedAppend, AppendCondition, Event, EventBatches, EventStore, Limits, Position, Query, ReadOptions, ReadStream,
    SequencedEvent, StoreError, Subscription, Tenant, READ_BATCH,
};

/// The on-disk format this build writes; it reads this one and upgrades the one before.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT_PREFIX: &str = "counterpoint-store ";

/// Neighbouring events are fetched with one read while the range stays under this size...
const MAX_RUN_BYTES: u64 = 1 << 20;
/// ...and wastes at most this many bytes on events the read does not want.
const MAX_RUN_SLACK: u64 = 64 << 10;

#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    pub limits: Limits,
    /// A new log segment starts when the current one would grow past this size. The open
    /// segment's index is held in memory and scanned at every open: this bounds both.
    pub segment_bytes: u32,
    /// The bytes of index-file blocks kept in memory.
    pub index_cache_bytes: usize,
    /// At a clean close, the open segment's index is written to a file when the segment holds at
    /// least this many bytes, so that the next open scans only what came after (checkpoint.rs).
    pub checkpoint_min_bytes: u64,
    /// While the store runs, the open segment's index file is written again each time the
    /// segment has grown this many bytes past the last one, and at least `checkpoint_interval`
    /// after it, so that an open after a crash scans at most about that much (`u64::MAX`: never).
    pub checkpoint_every_bytes: u64,
    pub checkpoint_interval: Duration,
    /// While appends come in together (the last flush carried more than one), the writer waits
    /// this long before it takes what is queued and flushes it: fewer flushes, each carrying
    /// more appends, for that much latency (writer.rs). An append that comes alone is flushed
    /// at once. At most [`MAX_GROUP_COMMIT_WINDOW`]; zero: never wait.
    pub group_commit_window: Duration,
}

/// [`EmbeddedOptions::group_commit_window`] by default: none. With one, commands beside a hot
/// boundary kept less of their speed (README, "How the embedded store works").
pub const DEFAULT_GROUP_COMMIT_WINDOW: Duration = Duration::ZERO;
/// The longest [`EmbeddedOptions::group_commit_window`]: past a few flushes' time, a longer wait
/// only adds latency.
pub const MAX_GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(100);
/// How long accepted appends may wait for the writer to answer (beyond the group commit
/// window) before [`EventStore::flushes_late`] says so: about two flushes' time on the disks measured here (0.15 – 0.25 ms each at their
/// usual speed). Measured beside a hot course (`bench contention`, each worker on its own
/// processor): at 1 ms one turn handed on in fourteen found the flushes late, and the cold
/// commands kept 0.73 – 0.76 of their speed; at 0.4 ms three in five did, and they kept 1.02. A
/// disk slower than that holds the hot boundary to a decision per flush, beside others only.
/// At 0.15 ms (under a flush's time there) commands waiting mostly for their flushes kept 0.87
/// of their speed against 0.78, but the hot course beside them fell to about a decision a flush
/// (docs/performance.md, "Disk-bound neighbours measured").
const FLUSH_LATE: Duration = Duration::from_micros(400);

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            limits: Limits::default(),
            segment_bytes: 64 << 20,
            index_cache_bytes: 64 << 20,
            checkpoint_min_bytes: 1 << 20,
            checkpoint_every_bytes: 8 << 20,
            checkpoint_interval: Duration::from_secs(2),
            group_commit_window: DEFAULT_GROUP_COMMIT_WINDOW,
        }
    }
}

/// See [`EmbeddedStore::index_memory`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexMemory {
    pub events_in_memory: u64,
    pub sealed_segments: u64,
    pub cache_bytes: u64,
    /// The index files a search of a tenant's sealed segments goes through (the most of any
    /// tenant): runs, and the segments no run covers yet.
    pub search_parts: u64,
    /// The index files whose bloom filters are held in memory (runs, and the segments no run
    /// covers yet), and those filters' bytes.
    pub bloom_files: u64,
    pub bloom_bytes: u64,
    /// Whether the sealer still has work: a sealed segment to index, or parts to merge.
    pub indexing: bool,
}

/// The durable event store in one data directory. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// The writer's queue; its lock is the accept lock (see writer.rs).
    queue: Mutex<Option<mpsc::Sender<Accepted>>>,
    writer: Option<JoinHandle<u64>>,
    sealer: Option<JoinHandle<Chain>>,
    merger: Option<JoinHandle<()>>,
    checkpoint_min_bytes: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has answered what is queued, then the
        // sealer once it has indexed what the writer sealed, then the merger; joining them
        // releases the directory lock before the store is gone, so it can be reopened at once.
        self.queue.lock().expect("append queue lock").take();
        // A merge in progress is given up (its temporary file is removed at the next open).
        self.shared.closing.store(true, Ordering::Relaxed);
        let frames_end = self.writer.take().and_then(|thread| thread.join().ok());
        let chain = self.sealer.take().and_then(|thread| thread.join().ok());
        if let Some(thread) = self.merger.take() {
            let _ = thread.join();
        }
        if let (Some(len), Some(chain)) = (frames_end, chain) {
            chain.close(&self.shared, self.checkpoint_min_bytes, len);
        }
    }
}

pub(super) struct Shared {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    limits: Limits,
    tenants: RwLock<HashMap<Tenant, Arc<TenantState>>>,
    /// Every segment, by number.
    segments: RwLock<Vec<Arc<dyn DiskFile>>>,
    /// Blocks of the sealed segments' index files.
    cache: Arc<BlockCache>,
    /// What searches of the sealed segments go through, kept by the sealer.
    layout: Mutex<Layout>,
    /// Set when the store closes: the sealer gives up a merge.
    closing: AtomicBool,
    poisoned: Mutex<Option<String>>,
    /// Successful flushes (`write` + `fdatasync` of a batch) since the store opened.
    flushes: AtomicU64,
    /// Appends accepted and not yet answered.
    pending: AtomicU64,
    /// When an append was last answered, or accepted with none pending.
    progress: LastNoted,
    /// How long appends may wait for an answer before flushes are late: [`FLUSH_LATE`] past
    /// the group commit window, which the writer waits on purpose.
    late_after: Duration,
    _lock: Box<dyn Any + Send + Sync>,
}

/// The index files that cover the sealed segments, in order: runs, and segments no run covers.
pub(super) struct Layout {
    parts: Vec<Arc<SegmentIndex>>,
    /// The segments indexed (a sealed one waits for its file meanwhile).
    indexed: u32,
    /// Indexing failed: later segments' events stay in memory until the store reopens.
    indexing_stopped: bool,
    /// A merge failed: searches go through the parts there are until the store reopens.
    merging_stopped: bool,
}

pub(super) struct TenantState {
    log: RwLock<TenantLog>,
    heads: watch::Sender<Position>,
}

impl Shared {
    fn tenant(&self, tenant: &Tenant) -> Option<Arc<TenantState>> {
        self.tenants.read().expect("tenants lock").get(tenant).cloned()
    }

    fn tenant_by_name(&self, tenant: &str) -> Option<Arc<TenantState>> {
        self.tenant(&Tenant::new(tenant).ok()?)
    }

    fn tenant_or_create(&self, tenant: &Tenant) -> Arc<TenantState> {
        if let Some(state) = self.tenant(tenant) {
            return state;
        }
        self.tenants
            .write()
            .expect("tenants lock")
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(TenantState { log: RwLock::default(), heads: watch::Sender::new(Position::ZERO) })
            })
            .clone()
    }

    /// An append is queued for the writer.
    /// (Noted before counted: one who sees it pending sees it as new.)
    fn queued(&self) {
        if self.pending.load(Ordering::Acquire) == 0 {
            self.progress.note();
        }
        self.pending.fetch_add(1, Ordering::Release);
    }

    /// An append was answered (flushed, failed, or dropped by a writer that stopped).
    fn answered(&self) {
        self.progress.note();
        self.pending.fetch_sub(1, Ordering::Release);
    }

    /// Whether appends wait and the writer has answered none for [`Shared::late_after`].
    fn flushes_late(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0 && !self.progress.within(self.late_after)
    }

    fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().expect("poison lock").clone()
    }

    fn poison(&self, reason: String) -> String {
        tracing::error!(dir = %self.dir.display(), "{reason}; appends are refused until the store is reopened");
        // (Also called while a panicking writer unwinds: a poisoned lock still holds a reason.)
        self.poisoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(reason).clone()
    }

    /// The events at `positions`, found at `at`: those an index run holds copies of are decoded
    /// from them, the others read from the log ([`Shared::read_log`]).
    fn fetch(&self, positions: &[u64], at: &EventsAt) -> Result<Vec<SequencedEvent>, StoreError> {
        if at.copies.is_empty() {
            return self.read_log(positions, &at.locs);
        }
        let is_copy = |i: usize| at.copies.binary_search_by_key(&i, |&(index, ..)| index).is_ok();
        let (in_log, locs): (Vec<u64>, Vec<EventLoc>) =
            positions.iter().zip(&at.locs).enumerate().filter(|&(i, _)| !is_copy(i)).map(|(_, (&p, &loc))| (p, loc)).unzip();
        let mut from_log = self.read_log(&in_log, &locs)?.into_iter();
        let mut copies = at.copies.iter().peekable();
        let mut out = Vec::with_capacity(positions.len());
        for (i, (&position, loc)) in positions.iter().zip(&at.locs).enumerate() {
            let Some((_, bucket, start)) = copies.next_if(|&&(index, ..)| index == i) else {
                out.push(from_log.next().expect("one event read for each in the log"));
                continue;
            };
            let record = bucket.get(*start as usize..*start as usize + loc.len as usize);
            let record = record.ok_or_else(|| self.corrupt(format!("the copy of the event at position {position} lies outside its key bucket")))?;
            let damaged = |e| self.corrupt(format!("an index run's copy of the event at position {position} (not the log's): {e}"));
            out.push(decode_at(record, position, loc).map_err(damaged)?);
        }
        Ok(out)
    }

    /// Reads the events at `locs` with as few positioned reads as possible. The reads go one
    /// after another while their bytes are in memory; at the first that is not, every read left
    /// is asked of the disk at once ([`DiskFile::prefetch`]), so that a read of events spread
    /// over a log bigger than memory waits for the disk about once, not once for each. The block
    /// cache counts the batch as one read of the store, which waited or not.
    fn read_log(&self, positions: &[u64], locs: &[EventLoc]) -> Result<Vec<SequencedEvent>, StoreError> {
        if locs.is_empty() {
            return Ok(Vec::new());
        }
        let segments = self.segments.read().expect("segments lock");
        let reads = coalesce(locs);
        let mut out = Vec::with_capacity(positions.len());
        let mut buf = Vec::new();
        let mut prefetched = false;
        for (i, read) in reads.iter().enumerate() {
            let file = segments.get(read.segment as usize).ok_or_else(|| self.corrupt(format!("segment {} is missing", read.segment)))?;
            buf.resize((read.hi - read.lo) as usize, 0);
            let io_error = |e| StoreError::io("reading the log", e);
            if prefetched || !file.read_cached_at(&mut buf, read.lo).map_err(io_error)? {
                if !prefetched {
                    for later in &reads[i..] {
                        if let Some(file) = segments.get(later.segment as usize) {
                            file.prefetch(later.lo, later.hi - later.lo);
                        }
                    }
                    prefetched = true;
                }
                file.read_exact_at(&mut buf, read.lo).map_err(io_error)?;
            }
            let events = read.events.clone();
            decode_run(&buf, read.lo as u32, &positions[events.clone()], &locs[events], &mut out).map_err(|e| self.corrupt(e))?;
        }
        self.cache.note_read(prefetched);
        Ok(out)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt { dir: self.dir.clone(), detail }
    }
}

/// One positioned read of a segment: bytes `lo..hi`, holding the events `events` of a fetch.
struct LogRead {
    segment: u32,
    lo: u64,
    hi: u64,
    events: std::ops::Range<usize>,
}

/// Groups `locs` (in log order) into reads: neighbouring events of one segment share a read
/// while it stays under [`MAX_RUN_BYTES`] and wastes at most [`MAX_RUN_SLACK`] on bytes between them.
fn coalesce(locs: &[EventLoc]) -> Vec<LogRead> {
    let mut reads = Vec::new();
    let mut start = 0;
    while start < locs.len() {
        let segment = locs[start].segment;
        let (mut lo, mut hi) = (locs[start].offset as u64, (locs[start].offset + locs[start].len) as u64);
        let mut wanted = locs[start].len as u64;
        let mut end = start + 1;
        while let Some(loc) = locs.get(end).filter(|l| l.segment == segment) {
            let (l, h) = (lo.min(loc.offset as u64), hi.max((loc.offset + loc.len) as u64));
            if h - l > MAX_RUN_BYTES || h - l > wanted + loc.len as u64 + MAX_RUN_SLACK {
                break;
            }
            (lo, hi, wanted, end) = (l, h, wanted + loc.len as u64, end + 1);
        }
        reads.push(LogRead { segment, lo, hi, events: start..end });
        start = end;
    }
    reads
}

impl EmbeddedStore {
    fn read_from(
        &self,
        tenant: &Tenant,
        query: Query,
        options: ReadOptions,
        cursor: fn(&TenantIndex, Query, u64, Option<u64>, bool) -> ReadCursor,
    ) -> Result<ReadStream, StoreError> {
        let shared = &self.inner.shared;
        shared.limits.check_read(&query, &options)?;
        let state = shared.tenant(tenant);
        let after = options.after.map_or(0, Position::dense);
        let cursor = match &state {
            Some(state) => cursor(&state.log.read().expect("tenant log lock").index, query, after, options.limit, options.backwards),
            None => cursor(&TenantIndex::default(), query, after, options.limit, options.backwards),
        };
        Ok(ReadStream::new(Box::new(EmbeddedBatches { shared: shared.clone(), tenant: tenant.clone(), state, cursor })))
    }

    /// Opens (or creates) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        Self::open_on(Arc::new(RealDisk), dir, options)
    }

    /// Opens the store in `dir` on `disk` (a simulated disk in fault-injection tests).
    pub fn open_on(disk: Arc<dyn Disk>, dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        check_options(&options)?;
        disk.create_dir_all(dir).map_err(|e| StoreError::io(&format!("creating {}", dir.display()), e))?;
        let dir = disk.canonicalize(dir).map_err(|e| StoreError::io(&format!("opening {}", dir.display()), e))?;
        let lock = disk.lock(&dir)?;
        let mut segment_numbers = list_segments(&*disk, &dir).map_err(|e| StoreError::io("listing the log", e))?;
        let format = check_format(&*disk, &dir, !segment_numbers.is_empty())?;
        if segment_numbers.is_empty() {
            disk.open(&segment_path(&dir, 0), OpenMode::CreateNew).map_err(|e| StoreError::io("creating the log", e))?;
            sync_dir(&*disk, &dir)?;
            segment_numbers.push(0);
        }

        // Each segment and its index file, the runs (one per 8 segments at most), and room for
        // the rest of the process.
        let segments_held = segment_numbers.len() as u64;
        disk.reserve_open_files(2 * segments_held + segments_held / 8 + 256)?;
        let corrupt = |detail: String| StoreError::Corrupt { dir: dir.clone(), detail };
        let cache = Arc::new(BlockCache::new(options.index_cache_bytes));
        let mut tenants: HashMap<Tenant, TenantLog> = HashMap::new();
        let mut segments = Vec::new();
        let mut sealed = Vec::new();
        for (expected, &number) in segment_numbers.iter().enumerate() {
            if number as usize != expected {
                return Err(corrupt(format!("log segment {expected} is missing")));
            }
        }
        let (last_number, sealed_numbers) = segment_numbers.split_last().expect("at least one segment");

        // Sealed segments: their index files, built first where they are missing or unusable.
        let covered = index_run::named_coverage(&*disk, &dir, sealed_numbers.len() as u32);
        for &number in sealed_numbers {
            let path = segment_path(&dir, number);
            let file = disk.open(&path, OpenMode::Read).map_err(|e| StoreError::io(&format!("opening {}", path.display()), e))?;
            let len = file.len().map_err(|e| StoreError::io(&format!("reading {}", path.display()), e))?;
            let mut index = open_segment_index(&*disk, &dir, number, len, &cache)?;
            if covered.contains(&number) {
                // Searches go through the run that covers it: its file serves the locations of
                // its events, and holds no bloom filters in memory.
                index = index.without_blooms();
            }
            let index = Arc::new(index);
            add_part(&mut tenants, &index).map_err(|detail| corrupt(format!("{}: {detail}", path.display())))?;
            sealed.push(index);
            segments.push(file);
        }
        let mut parts = index_run::open_runs(&*disk, &dir, &sealed, &cache);
        // A segment whose run was removed (damaged, stale) is searched itself: its filters again.
        for part in parts.iter_mut().filter(|part| matches!(part.covers(), Covers::Segment(_)) && covered.contains(&part.segment())) {
            let (number, len) = part.segment_lengths()[0];
            match open_segment_index(&*disk, &dir, number, len, &cache) {
                Ok(index) => *part = Arc::new(index),
                Err(err) => {
                    // Searched without filters: every key is a "maybe", slower, never wrong.
                    tracing::warn!(%err, segment = number, "cannot open a segment's index file again for its bloom filters");
                    continue;
                }
            }
            for (name, first, last) in part.tenants() {
                if let Some(log) = Tenant::new(name).ok().and_then(|tenant| tenants.get_mut(&tenant)) {
                    log.replace_segment(&SealedPart { index: part.clone(), first, last });
                }
            }
        }
        for run in parts.iter().filter(|part| matches!(part.covers(), Covers::Run { .. })) {
            for (name, first, last) in run.tenants() {
                // open_runs keeps only runs whose tenants' ranges are their segments'.
                let log = Tenant::new(name).ok().and_then(|tenant| tenants.get_mut(&tenant));
                let installed = log.is_some_and(|log| log.install_run(SealedPart { index: run.clone(), first, last }));
                debug_assert!(installed, "a run lines up with its segments");
            }
        }
        let layout = Layout { parts, indexed: sealed.len() as u32, indexing_stopped: false, merging_stopped: false };

        // The open segment: its first events from the index file a clean close wrote, if there
        // is one (checkpoint.rs), the rest scanned, their index held in memory.
        let number = *last_number;
        let path = segment_path(&dir, number);
        let file = disk.open(&path, OpenMode::ReadWrite).map_err(|e| StoreError::io(&format!("opening {}", path.display()), e))?;
        let len = file.len().map_err(|e| StoreError::io(&format!("reading {}", path.display()), e))?;
        checkpoint::remove_leftovers(&*disk, &dir, number);
        let mut chain = Chain::new(number);
        for (index, end) in checkpoint::load(&*disk, &dir, number, &file, len, &cache) {
            let index = Arc::new(index);
            if let Err(detail) = add_part(&mut tenants, &index) {
                tracing::warn!(path = %index.path().display(), "not using the open segment's index file: {detail}");
                checkpoint::remove_from(&*disk, &dir, number, chain.end);
                break;
            }
            chain.loaded(end);
        }
        let scan_from = chain.end;
        for (tenant, log) in &mut tenants {
            let base = log.base();
            log.index = TenantIndex::starting_after(base);
            let part = log.sealed.last().expect("a tenant found in a sealed segment");
            let loc = part.index.locs(tenant.as_str(), &[base]).map_err(|e| index_error(&dir, e))?[0];
            log.end = Some((part.index.segment(), u64::from(loc.offset) + u64::from(loc.len)));
        }

        let scan = scan_segment_from(file.reader_from(scan_from, len), scan_from, len, number, SegmentKind::Open, |_, frame| {
            let tenant = Tenant::new(frame.tenant).map_err(|e| e.to_string())?;
            let log = tenants.entry(tenant).or_default();
            if frame.first != log.index.head() + 1 {
                return Err(format!("positions jump from {} to {}", log.index.head(), frame.first));
            }
            for ((event, loc), position) in frame.events.into_iter().zip(frame.first..) {
                log.index.insert(position, &event);
                log.locs.push(loc);
                log.end = Some((loc.segment, u64::from(loc.offset) + u64::from(loc.len)));
            }
            Ok(())
        })
        .map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        if let Some(damage) = &scan.damage {
            // Only the very end of the log can be a flush cut short by a crash: a bad frame
            // with valid frames after it further than one flush reaches is damage, and cutting
            // it off would silently drop acknowledged appends.
            if !damage.is_torn_flush() {
                return Err(corrupt(damage_report(&path, damage)));
            }
            tracing::warn!(
                segment = %path.display(),
                offset = damage.offset,
                bytes = damage.rest.len(),
                "cutting off a flush torn by a crash (never acknowledged)"
            );
        }
        let last_len = scan.valid_len;
        if last_len < len {
            // A torn flush, or zeros the writer wrote ahead before a crash: the segment ends with
            // its last frame again, so that no flush writes over more than the window.
            file.set_len(last_len)
                .and_then(|()| file.sync_data())
                .map_err(|e| StoreError::io("cutting the open segment to its last frame", e))?;
        }
        segments.push(file);
        if format < FORMAT_VERSION {
            // Every sealed segment has its index file now.
            write_format(&*disk, &dir)?;
            tracing::info!(dir = %dir.display(), "upgraded the store from format {format} to {FORMAT_VERSION}");
        }

        let tenants = tenants
            .into_iter()
            .map(|(tenant, mut log)| {
                let head = log.index.head();
                log.index.publish(head);
                let state = TenantState { log: RwLock::new(log), heads: watch::Sender::new(Position::new(head)) };
                (tenant, Arc::new(state))
            })
            .collect();
        let file = segments.last().expect("at least one segment").clone();
        let segment = (segments.len() - 1) as u32;
        let shared = Arc::new(Shared {
            disk,
            dir,
            limits: options.limits,
            tenants: RwLock::new(tenants),
            segments: RwLock::new(segments),
            cache,
            layout: Mutex::new(layout),
            closing: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            flushes: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            progress: LastNoted::default(),
            late_after: FLUSH_LATE + options.group_commit_window,
            _lock: lock,
        });
        let (sealer, sealed) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            segment,
            file,
            len: last_len,
            zeroed: last_len,
            segment_bytes: options.segment_bytes as u64,
            buf: Vec::with_capacity(1 << 20),
            sealer,
            checkpoints: Checkpoints::after(scan_from, options.checkpoint_every_bytes, options.checkpoint_interval),
            window: options.group_commit_window,
            last_batch: 0,
        };
        let (added, merges) = mpsc::channel();
        let merger = {
            let shared = shared.clone();
            threads::spawn("cp-store-merger", move || sealer::merge_loop(shared, merges))?
        };
        let sealer = {
            let shared = shared.clone();
            threads::spawn("cp-store-sealer", move || sealer::run(shared, sealed, added, chain))?
        };
        let (queue, accepted) = mpsc::channel();
        let writer = threads::spawn("cp-store-writer", move || writer.run(accepted))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                shared,
                queue: Mutex::new(Some(queue)),
                writer: Some(writer),
                sealer: Some(sealer),
                merger: Some(merger),
                checkpoint_min_bytes: options.checkpoint_min_bytes,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// How many batches the writer has flushed since the store opened: appends per flush is
    /// what group commit and accepted reads buy.
    pub fn flushes(&self) -> u64 {
        self.inner.shared.flushes.load(Ordering::Relaxed)
    }

    /// What the indexes hold in memory: the events indexed in memory (the open segment's, and a
    /// sealed one's while its index file is written), the sealed segments, and
    /// the bytes of index-file blocks cached.
    pub fn index_memory(&self) -> IndexMemory {
        let shared = &self.inner.shared;
        let tenants: Vec<_> = shared.tenants.read().expect("tenants lock").values().cloned().collect();
        let (mut events_in_memory, mut search_parts) = (0, 0);
        let mut files: HashMap<*const SegmentIndex, usize> = HashMap::new();
        for state in &tenants {
            let log = state.log.read().expect("tenant log lock");
            events_in_memory += log.index.head() - log.base();
            search_parts = search_parts.max(log.searched.len() as u64);
            for part in log.sealed.iter().chain(&log.searched) {
                files.entry(Arc::as_ptr(&part.index)).or_insert_with(|| part.index.bloom_bytes());
            }
        }
        let blooms: Vec<usize> = files.into_values().filter(|&bytes| bytes > 0).collect();
        let sealed_segments = shared.segments.read().expect("segments lock").len() as u64 - 1;
        let layout = shared.layout.lock().expect("layout lock");
        let indexing = (!layout.indexing_stopped && u64::from(layout.indexed) < sealed_segments)
            || (!layout.merging_stopped && index_run::next_merge(&layout.parts).is_some());
        IndexMemory {
            events_in_memory,
            sealed_segments,
            cache_bytes: shared.cache.bytes() as u64,
            search_parts,
            bloom_files: blooms.len() as u64,
            bloom_bytes: blooms.iter().sum::<usize>() as u64,
            indexing,
        }
    }

    /// A consistent cut of the log at this instant, for an online backup: the last segment
    /// holding published frames and its length up to which every frame is complete, synced and
    /// published (earlier segments are sealed, whole), and each tenant's head at that length.
    /// Appends go on meanwhile and land after the cut.
    pub fn published_cut(&self) -> (u32, u64, Vec<(Tenant, Position)>) {
        let tenants = self.inner.shared.tenants.read().expect("tenants lock");
        // Every tenant's lock at once: the writer publishes one frame at a time, in log order,
        // so what is published at this instant is a prefix of the log.
        let logs: Vec<_> = tenants.iter().map(|(tenant, state)| (tenant, state.log.read().expect("tenant log lock"))).collect();
        let mut end = (0, 0);
        let mut heads = Vec::with_capacity(logs.len());
        for (tenant, log) in &logs {
            if let Some(tenant_end) = log.end {
                end = end.max(tenant_end);
                heads.push(((*tenant).clone(), Position::new(log.index.published())));
            }
        }
        (end.0, end.1, heads)
    }
}

fn check_options(options: &EmbeddedOptions) -> Result<(), StoreError> {
    let limits = &options.limits;
    // The log format stores names with 16-bit lengths and offsets within a segment in 32 bits.
    let fits = limits.max_type_len <= u16::MAX as usize
        && limits.max_tag_len <= u16::MAX as usize
        && limits.max_tags_per_event <= u16::MAX as usize
        && limits.max_metadata_entries <= u16::MAX as usize
        && limits.max_append_bytes <= 1 << 30
        && options.segment_bytes <= 1 << 30;
    if !fits {
        return Err(StoreError::InvalidInput(
            "the embedded store takes names up to 65535 bytes, appends and segments up to 1 GiB".into(),
        ));
    }
    if options.group_commit_window > MAX_GROUP_COMMIT_WINDOW {
        return Err(StoreError::InvalidInput(format!(
            "the group commit window is at most {} ms, not {} µs",
            MAX_GROUP_COMMIT_WINDOW.as_millis(),
            options.group_commit_window.as_micros()
        )));
    }
    Ok(())
}

/// The format of the store in `dir` (written for a new store): this build's, or the one before,
/// which the open upgrades.
fn check_format(disk: &dyn Disk, dir: &Path, has_log: bool) -> Result<u32, StoreError> {
    let path = dir.join("FORMAT");
    match disk.open(&path, OpenMode::Read).and_then(|file| file.read_all()) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let found = text.trim().strip_prefix(FORMAT_PREFIX).unwrap_or(text.trim());
            match readable_format(&text) {
                Some(version) => Ok(version),
                None => Err(StoreError::UnsupportedFormat { dir: dir.to_path_buf(), found: found.to_string(), supported: FORMAT_VERSION }),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound && !has_log => write_format(disk, dir).map(|()| FORMAT_VERSION),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::Corrupt {
            dir: dir.to_path_buf(),
            detail: "the log exists but the FORMAT file is missing".into(),
        }),
        Err(e) => Err(StoreError::io("reading FORMAT", e)),
    }
}

/// The version a FORMAT file's text names, if this build reads it: its own, or the one before,
/// which opening upgrades.
pub(super) fn readable_format(text: &str) -> Option<u32> {
    let found = text.trim().strip_prefix(FORMAT_PREFIX).unwrap_or(text.trim());
    found.parse().ok().filter(|&version| version == FORMAT_VERSION || version == FORMAT_VERSION - 1)
}

/// Writes this build's FORMAT, atomically.
fn write_format(disk: &dyn Disk, dir: &Path) -> Result<(), StoreError> {
    let (tmp, path) = (dir.join("FORMAT.tmp"), dir.join("FORMAT"));
    disk.open(&tmp, OpenMode::CreateTruncate)
        .and_then(|file| {
            file.write_all_at(format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n").as_bytes(), 0)?;
            file.sync_data()
        })
        .and_then(|()| disk.rename(&tmp, &path))
        .map_err(|e| StoreError::io("writing FORMAT", e))?;
    sync_dir(disk, dir)
}

/// Adds each tenant's part of `index` (a sealed segment's, or the open one's from a clean close)
/// after the parts the tenant has; an error, and nothing added, if its positions do not follow
/// theirs.
fn add_part(tenants: &mut HashMap<Tenant, TenantLog>, index: &Arc<SegmentIndex>) -> Result<(), String> {
    for (name, first, _) in index.tenants() {
        let tenant = Tenant::new(name).map_err(|e| e.to_string())?;
        let base = tenants.get(&tenant).map_or(0, TenantLog::base);
        if first != base + 1 {
            return Err(format!("positions of tenant {name} jump from {base} to {first}"));
        }
    }
    for (name, first, last) in index.tenants() {
        let log = tenants.entry(Tenant::new(name).map_err(|e| e.to_string())?).or_default();
        log.sealed.push(SealedPart { index: index.clone(), first, last });
        log.searched.push(SealedPart { index: index.clone(), first, last });
    }
    Ok(())
}

/// Opens a sealed segment's index file, building it from the segment when it is missing (a
/// store of format 1, or a crash before it was written), damaged or stale (a repair cut the
/// segment).
fn open_segment_index(disk: &dyn Disk, dir: &Path, segment: u32, len: u64, cache: &Arc<BlockCache>) -> Result<SegmentIndex, StoreError> {
    SegmentIndex::open_or_rebuild(disk, dir, segment, len, cache.clone()).map_err(|err| index_error(dir, err))
}

fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<(), StoreError> {
    disk.sync_dir(dir).map_err(|e| StoreError::io("syncing the data directory", e))
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.read_from(tenant, query, options, ReadCursor::new)
    }

    async fn read_accepted(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.read_from(tenant, query, options, ReadCursor::including_accepted)
    }

    async fn append(&self, tenant: &Tenant, events: Vec<Event>, conditions: Vec<AppendCondition>) -> Result<Vec<Position>, StoreError> {
        self.append_accepted(tenant, events, &conditions).await?.durable().await
    }

    async fn append_accepted(
        &self,
        tenant: &Tenant,
        mut events: Vec<Event>,
        conditions: &[AppendCondition],
    ) -> Result<AcceptedAppend, StoreError> {
        let shared = &self.inner.shared;
        shared.limits.check_append(&mut events, conditions)?;
        writer::accept(shared, &self.inner.queue, tenant, events, conditions)
    }

    async fn settle(&self, tenant: &Tenant) -> Result<(), StoreError> {
        // After a failed flush, what the caller read may have been forgotten: nothing settles
        // any more. Checked first, since once the accepted events are rolled back the head no
        // longer shows anything to wait for.
        self.health()?;
        let Some(state) = self.inner.shared.tenant(tenant) else { return Ok(()) };
        let target = Position::new(state.log.read().expect("tenant log lock").index.head());
        let mut heads = state.heads.subscribe();
        loop {
            if *heads.borrow_and_update() >= target {
                return Ok(());
            }
            // Poisoned before the writer wakes this watch: checked after `borrow_and_update`,
            // a failure is either seen here or wakes the wait below.
            self.health()?;
            heads.changed().await.map_err(|_| StoreError::Unavailable("the store has closed".into()))?;
        }
    }

    async fn head(&self, tenant: &Tenant) -> Result<Position, StoreError> {
        Ok(self.inner.shared.tenant(tenant).map_or(Position::ZERO, |state| *state.heads.borrow()))
    }

    fn flushes_late(&self) -> bool {
        self.inner.shared.flushes_late()
    }

    fn health(&self) -> Result<(), StoreError> {
        match self.inner.shared.poisoned() {
            Some(reason) => Err(StoreError::Unavailable(reason)),
            None => Ok(()),
        }
    }

    async fn event_count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        // Positions are dense here: the n-th event is at position n.
        Ok(self.head(tenant).await?.dense())
    }

    async fn subscribe(&self, tenant: &Tenant, query: Query, after: Option<Position>) -> Result<Subscription, StoreError> {
        self.inner.shared.limits.check_query(&query)?;
        let heads = self.inner.shared.tenant_or_create(tenant).heads.subscribe();
        Ok(Subscription::new(Arc::new(self.clone()), tenant.clone(), query, after, heads))
    }

    fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }
}

struct EmbeddedBatches {
    shared: Arc<Shared>,
    tenant: Tenant,
    state: Option<Arc<TenantState>>,
    cursor: ReadCursor,
}

#[async_trait]
impl EventBatches for EmbeddedBatches {
    async fn next_batch(&mut self) -> Result<Option<Vec<SequencedEvent>>, StoreError> {
        let Some(state) = &self.state else { return Ok(None) };
        if self.cursor.is_done() {
            return Ok(None);
        }
        let (positions, published, on_disk, locs, mut accepted) = {
            let log = state.log.read().expect("tenant log lock");
            let index_error = |e| index_error(&self.shared.dir, e);
            let query = Arc::clone(self.cursor.query());
            let mut search = log.search(self.tenant.as_str(), &query);
            let positions = self.cursor.next_positions_with(READ_BATCH, |step| search.step(step)).map_err(index_error)?;
            if positions.iter().any(|&p| p > log.index.head()) {
                // Accepted when the read began, forgotten since: a flush failed.
                return Err(StoreError::Unavailable("the store failed to write events this read saw".into()));
            }
            let published = log.index.published();
            let on_disk: Vec<u64> = positions.iter().copied().filter(|&p| p <= published).collect();
            let locs = search.locs(&on_disk).map_err(index_error)?;
            let accepted: Vec<SequencedEvent> = positions
                .iter()
                .filter(|&&p| p > published)
                .map(|&p| SequencedEvent { position: Position::new(p), event: log.accepted[(p - published - 1) as usize].clone() })
                .collect();
            (positions, published, on_disk, locs, accepted.into_iter())
        };
        if positions.is_empty() {
            return Ok(None);
        }
        let fetched = self.shared.fetch(&on_disk, &locs)?;
        if fetched.len() == positions.len() {
            return Ok(Some(fetched));
        }
        let mut fetched = fetched.into_iter();
        // Back in the read's order (accepted events are all newer than published ones).
        let batch = positions.iter().map(|&p| if p <= published { fetched.next() } else { accepted.next() }).collect::<Option<Vec<_>>>();
        Ok(Some(batch.expect("one event per position")))
    }

    fn consistency_position(&self) -> Position {
        Position::new(self.cursor.consistency_position())
    }

    fn into_query(self: Box<Self>) -> Query {
        self.cursor.into_query()
    }
}
