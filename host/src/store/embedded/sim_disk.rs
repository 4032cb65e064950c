//! A simulated disk for fault injection, driven by a seed.
//!
//! It keeps, for each file, what is durable (as of its last successful `fdatasync`) apart from
//! what is only in the page cache, and for each directory the entries made durable by its last
//! sync. [`SimDisk::power_cut`] gives the disk as a machine finds it after losing power: every
//! unsynced write is lost, except that a prefix of them may have reached the platter and the
//! last of those may be torn at any byte (the rest of its range left as it was, zeroed or
//! garbage) or, when it writes over bytes the file had, kept in any of its 4 KiB pages and not
//! the others, with nothing past the file's end; files whose directory entry was never synced
//! are gone. [`Faults`] make writes and
//! syncs fail before the cut, and cut the power after a given number of operations (every later
//! operation fails, as the process would have died). [`SimDisk::flip_bit`] damages durable data.
//!
//! Thread scheduling is not simulated: the faults are chosen by the seed, the interleaving of
//! the store's threads is the machine's. A failing seed names the faults it injected
//! ([`SimDisk::journal`]).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::disk::{Disk, DiskFile, OpenMode};
use crate::store::StoreError;

/// Faults injected before the power cut.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The power is cut after this many write-side operations (writes, syncs, truncations,
    /// creations, renames): that operation and every later one fail and change nothing.
    pub power_cut_after: Option<u64>,
    /// The chance that a write fails (after writing a random prefix to the page cache).
    pub write_error: f64,
    /// The chance that an `fdatasync` fails. A random part of what it should have flushed (the
    /// oldest changes) reached the disk before the error, as writeback had begun; the rest never
    /// will, though still readable until the power goes (as Linux does).
    pub sync_error: f64,
    /// The next this many `fdatasync`s fail (as `sync_error` has them fail), whatever its chance.
    pub failing_syncs: u64,
    /// The chance that a read finds its bytes out of memory (the page cache), so that a read
    /// that must not wait for the disk reads nothing.
    pub uncached_reads: f64,
}

/// An in-memory file system with durable and volatile state. Cloning gives another handle.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    /// While true, every `fdatasync` waits (see [`SimDisk::hold_syncs`]).
    held: Arc<(Mutex<bool>, Condvar)>,
}

struct State {
    rng: fastrand::Rng,
    faults: Faults,
    ops: u64,
    /// Path to file, as processes see it, and as it would be found after a power cut.
    live: BTreeMap<PathBuf, usize>,
    durable: BTreeMap<PathBuf, usize>,
    files: Vec<FileData>,
    dirs: BTreeSet<PathBuf>,
    locked: BTreeSet<PathBuf>,
    journal: Vec<String>,
    /// Ranges asked for ahead of reads ([`DiskFile::prefetch`]), and how many of them in index
    /// files (`.idx`, `.run`).
    prefetches: u64,
    index_prefetches: u64,
    log_reads: u64,
}

#[derive(Clone, Default)]
struct FileData {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<Change>,
}

#[derive(Clone)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Change::Write { offset, bytes } => write_into(data, *offset, bytes),
            Change::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

/// The unit a disk writes whole (or not at all) when it persists an overwrite.
const PAGE: usize = 4096;

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset as usize..end].copy_from_slice(bytes);
}

impl SimDisk {
    pub fn new(seed: u64, faults: Faults) -> Self {
        let state = State {
            rng: fastrand::Rng::with_seed(seed),
            faults,
            ops: 0,
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            files: Vec::new(),
            dirs: BTreeSet::from([PathBuf::from("/")]),
            locked: BTreeSet::new(),
            journal: Vec::new(),
            prefetches: 0,
            index_prefetches: 0,
            log_reads: 0,
        };
        SimDisk { state: Arc::new(Mutex::new(state)), held: Arc::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("simulated disk lock")
    }

    /// The disk as found after the power goes now, with no faults of its own (`seed` chooses
    /// how much of the unsynced writes made it).
    pub fn power_cut(&self, seed: u64) -> SimDisk {
        let state = self.state();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut journal = state.journal.clone();
        let mut live = BTreeMap::new();
        let mut files = Vec::new();
        for (path, &id) in &state.durable {
            let file = &state.files[id];
            let mut data = file.durable.clone();
            let reached = rng.usize(0..=file.pending.len());
            for change in &file.pending[..reached] {
                change.apply(&mut data);
            }
            if let Some(Change::Write { offset, bytes }) = file.pending.get(reached)
                && (*offset as usize) < data.len()
                && rng.u8(0..4) == 0
            {
                // An overwrite in flight: the disk may hold any of its pages and not others
                // (nothing orders them), and none of what grows the file (its size never got there).
                let (start, end) = (*offset as usize, (*offset as usize + bytes.len()).min(data.len()));
                let mut kept_pages = 0;
                for page in (start / PAGE..end.div_ceil(PAGE)).map(|page| page * PAGE) {
                    let range = page.max(start)..(page + PAGE).min(end);
                    if rng.bool() {
                        data[range.clone()].copy_from_slice(&bytes[range.start - start..range.end - start]);
                        kept_pages += 1;
                    }
                }
                journal.push(format!(
                    "power cut: {} kept {reached} of {} unsynced changes, then {kept_pages} pages of the {} bytes at {offset} (an overwrite: any of its pages, nothing past the end of the file)",
                    path.display(),
                    file.pending.len(),
                    bytes.len()
                ));
            } else if let Some(Change::Write { offset, bytes }) = file.pending.get(reached) {
                let kept = rng.usize(0..=bytes.len());
                write_into(&mut data, *offset, &bytes[..kept]);
                let rest = *offset as usize + kept..*offset as usize + bytes.len();
                let how = match rng.u8(0..3) {
                    0 => "lost",
                    1 => {
                        write_into(&mut data, rest.start as u64, &vec![0; rest.len()]);
                        "zeroed"
                    }
                    _ => {
                        let garbage: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(rest.len()).collect();
                        write_into(&mut data, rest.start as u64, &garbage);
                        "garbage"
                    }
                };
                journal.push(format!(
                    "power cut: {} kept {reached} of {} unsynced changes, then {kept} of {} bytes at {offset} (rest {how})",
                    path.display(),
                    file.pending.len(),
                    bytes.len()
                ));
            } else if !file.pending.is_empty() {
                journal.push(format!("power cut: {} kept {reached} of {} unsynced changes", path.display(), file.pending.len()));
            }
            live.insert(path.clone(), files.len());
            files.push(FileData { live: data.clone(), durable: data, pending: Vec::new() });
        }
        for path in state.live.keys().filter(|p| !state.durable.contains_key(*p)) {
            journal.push(format!("power cut: {} lost (its directory entry was never synced)", path.display()));
        }
        let state = State {
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            faults: Faults::default(),
            ops: 0,
            durable: live.clone(),
            live,
            files,
            dirs: state.dirs.clone(),
            locked: BTreeSet::new(),
            journal,
            prefetches: 0,
            index_prefetches: 0,
            log_reads: 0,
        };
        SimDisk { state: Arc::new(Mutex::new(state)), held: Arc::default() }
    }

    /// The write-side operations so far: what [`Faults::power_cut_after`] counts.
    pub fn operations(&self) -> u64 {
        self.state().ops
    }

    /// How many ranges the store asked for ahead of its reads ([`DiskFile::prefetch`]).
    pub fn prefetches(&self) -> u64 {
        self.state().prefetches
    }

    /// How many of [`prefetches`](Self::prefetches) were of index files: a search's key buckets.
    pub fn index_prefetches(&self) -> u64 {
        self.state().index_prefetches
    }

    /// How many reads of log segments (`.log` files) there were, whether they found their bytes.
    pub fn log_reads(&self) -> u64 {
        self.state().log_reads
    }

    /// Replaces the faults to inject from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Makes every `fdatasync` wait until [`release_syncs`](Self::release_syncs): a test can
    /// then act while writes are accepted but not yet durable.
    pub fn hold_syncs(&self) {
        *self.held.0.lock().expect("sync gate lock") = true;
    }

    pub fn release_syncs(&self) {
        *self.held.0.lock().expect("sync gate lock") = false;
        self.held.1.notify_all();
    }

    /// Flips one bit of durable data in a file whose name ends with `suffix`; returns where.
    pub fn flip_bit(&self, suffix: &str) -> Option<(PathBuf, u64)> {
        let mut state = self.state();
        let candidates: Vec<(PathBuf, usize)> = state
            .durable
            .iter()
            .filter(|(path, id)| path.to_string_lossy().ends_with(suffix) && !state.files[**id].durable.is_empty())
            .map(|(path, id)| (path.clone(), *id))
            .collect();
        let (path, id) = candidates.get(state.rng.usize(..candidates.len().max(1)))?.clone();
        let len = state.files[id].durable.len();
        let offset = state.rng.usize(..len);
        let bit = 1u8 << state.rng.u8(0..8);
        let file = &mut state.files[id];
        file.durable[offset] ^= bit;
        if let Some(byte) = file.live.get_mut(offset) {
            *byte ^= bit;
        }
        state.journal.push(format!("flipped bit {bit:#04x} of {} at byte {offset}", path.display()));
        Some((path, offset as u64))
    }

    /// The faults injected so far, in order.
    pub fn journal(&self) -> Vec<String> {
        self.state().journal.clone()
    }

    /// The live bytes of a file.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        state.live.get(path).map(|&id| state.files[id].live.clone())
    }

    /// Replaces a file's contents, durably (to damage it on purpose).
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.state();
        let id = state.live.get(path).copied().unwrap_or_else(|| {
            state.files.push(FileData::default());
            state.files.len() - 1
        });
        state.live.insert(path.to_path_buf(), id);
        state.durable.insert(path.to_path_buf(), id);
        state.files[id] = FileData { live: bytes.clone(), durable: bytes, pending: Vec::new() };
    }
}

fn power_is_cut() -> io::Error {
    io::Error::other("simulated power cut")
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("simulated I/O error on {what}"))
}

impl State {
    /// Counts a write-side operation; an error once the power is cut.
    fn op(&mut self) -> io::Result<()> {
        self.ops += 1;
        match self.faults.power_cut_after {
            Some(after) if self.ops > after => {
                if self.ops == after + 1 {
                    self.journal.push(format!("power cut after {after} operations"));
                }
                Err(power_is_cut())
            }
            _ => Ok(()),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.f64() < p
    }

    fn new_file(&mut self, path: &Path) -> io::Result<usize> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !self.dirs.contains(parent) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no directory {}", parent.display())));
        }
        self.files.push(FileData::default());
        let id = self.files.len() - 1;
        self.live.insert(path.to_path_buf(), id);
        Ok(id)
    }
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Directories are created durably: the store's own files are what is under test.
        let mut state = self.state();
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let state = self.state();
        if path.is_absolute() && (state.dirs.contains(path) || state.live.contains_key(path)) {
            Ok(path.to_path_buf())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("no {}", path.display())))
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        let children = state.live.keys().chain(&state.dirs).filter(|p| p.parent() == Some(dir));
        Ok(children.filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = self.state();
        let existing = state.live.get(path).copied();
        let id = match (mode, existing) {
            (OpenMode::Read | OpenMode::ReadWrite, Some(id)) => id,
            (OpenMode::Read | OpenMode::ReadWrite, None) => {
                return Err(io::Error::new(io::ErrorKind::NotFound, format!("no file {}", path.display())));
            }
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
            }
            (OpenMode::CreateNew | OpenMode::CreateTruncate, None) => {
                state.op()?;
                state.new_file(path)?
            }
            (OpenMode::CreateTruncate, Some(id)) => {
                state.op()?;
                let file = &mut state.files[id];
                file.live.clear();
                file.pending.push(Change::SetLen(0));
                id
            }
        };
        let index = path.extension().is_some_and(|extension| extension == "idx" || extension == "run");
        let log = path.extension().is_some_and(|extension| extension == "log");
        Ok(Arc::new(SimFile { disk: self.clone(), id, writable: mode != OpenMode::Read, index, log }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.op()?;
        let id = state.live.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {}", from.display())))?;
        state.live.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.op()?;
        state.live.remove(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {}", path.display())))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.op()?;
        let state = &mut *state;
        state.durable.retain(|path, _| path.parent() != Some(dir));
        for (path, id) in state.live.iter().filter(|(path, _)| path.parent() == Some(dir)) {
            state.durable.insert(path.clone(), *id);
        }
        Ok(())
    }

    fn lock(&self, dir: &Path) -> Result<Box<dyn Any + Send + Sync>, StoreError> {
        if !self.state().locked.insert(dir.to_path_buf()) {
            return Err(StoreError::Locked { dir: dir.to_path_buf(), pid: std::process::id().to_string() });
        }
        Ok(Box::new(SimLock { disk: self.clone(), dir: dir.to_path_buf() }))
    }
}

struct SimLock {
    disk: SimDisk,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.state().locked.remove(&self.dir);
    }
}

struct SimFile {
    disk: SimDisk,
    id: usize,
    writable: bool,
    /// An index file's (see [`SimDisk::index_prefetches`]).
    index: bool,
    /// A log segment's (see [`SimDisk::log_reads`]).
    log: bool,
}

impl SimFile {
    fn writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "opened read-only"))
        }
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.state().files[self.id].live.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut state = self.disk.state();
        state.log_reads += self.log as u64;
        let data = &state.files[self.id].live;
        let bytes = data
            .get(offset as usize..offset as usize + buf.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the file"))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        let uncached = {
            let mut state = self.disk.state();
            let chance = state.faults.uncached_reads;
            state.chance(chance)
        };
        if uncached {
            self.disk.state().log_reads += self.log as u64;
            return Ok(false);
        }
        self.read_exact_at(buf, offset).map(|()| true)
    }

    fn prefetch(&self, _offset: u64, _len: u64) {
        let mut state = self.disk.state();
        state.prefetches += 1;
        state.index_prefetches += self.index as u64;
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.writable()?;
        let mut state = self.disk.state();
        state.op()?;
        let write_error = state.faults.write_error;
        let fails = state.chance(write_error);
        let written = if fails { state.rng.usize(0..buf.len().max(1)) } else { buf.len() };
        let file = &mut state.files[self.id];
        write_into(&mut file.live, offset, &buf[..written]);
        file.pending.push(Change::Write { offset, bytes: buf[..written].to_vec() });
        if fails {
            state.journal.push(format!("write error after {written} of {} bytes", buf.len()));
            return Err(injected("write"));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let (held, released) = &*self.disk.held;
        drop(released.wait_while(held.lock().expect("sync gate lock"), |held| *held).expect("sync gate lock"));
        let mut state = self.disk.state();
        state.op()?;
        let sync_error = state.faults.sync_error;
        let fails = state.faults.failing_syncs > 0 || state.chance(sync_error);
        state.faults.failing_syncs = state.faults.failing_syncs.saturating_sub(1);
        let unsynced = state.files[self.id].pending.len();
        let reached = if fails { state.rng.usize(0..=unsynced) } else { 0 };
        let file = &mut state.files[self.id];
        let pending = std::mem::take(&mut file.pending);
        if fails {
            // What this sync should have flushed stays in the page cache; some of it reached the
            // disk before the error, the rest never will: a later sync does not retry it (Linux
            // marks the pages clean).
            for change in &pending[..reached] {
                change.apply(&mut file.durable);
            }
            state.journal.push(format!("sync error: {reached} of {} unsynced changes reached the disk, the rest dropped", pending.len()));
            return Err(injected("fdatasync"));
        }
        for change in &pending {
            change.apply(&mut file.durable);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?;
        let mut state = self.disk.state();
        state.op()?;
        let file = &mut state.files[self.id];
        file.live.resize(len as usize, 0);
        file.pending.push(Change::SetLen(len));
        Ok(())
    }
}
