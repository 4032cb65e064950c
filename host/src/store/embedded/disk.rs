//! The embedded store's file I/O, behind an interface a simulator can drive.
//!
//! The store touches its data directory only through [`Disk`] and [`DiskFile`]: the real file
//! system ([`RealDisk`]) in production, or [`SimDisk`](super::sim_disk::SimDisk), which loses
//! what was not synced, tears writes and flips bits by seed, so power loss is tested rather
//! than hoped away (a `kill -9` keeps the page cache and cannot tell whether the store syncs).
//!
//! The interface is what a log-structured store needs and no more: positioned reads and
//! writes, `fdatasync`, truncation, directory listing, rename and directory sync.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::store::StoreError;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    Read,
    ReadWrite,
    /// Read and write; the file must not exist yet.
    CreateNew,
    /// Read and write; created if missing, emptied if present.
    CreateTruncate,
}

/// A data directory's file system.
pub trait Disk: Send + Sync + 'static {
    /// Creates `dir` and any missing parents; the new entries are synced.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The absolute, symlink-free form of an existing path.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// The names of the entries in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;
    /// Renames a file; durable once its directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; durable once its directory is synced.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (created, renamed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the directory's exclusive lock for this process, held until the guard drops.
    fn lock(&self, dir: &Path) -> Result<Box<dyn Any + Send + Sync>, StoreError>;
    /// Makes room for `files` files held open at once (the store holds every segment and index
    /// file open); an error when the process may not open that many.
    fn reserve_open_files(&self, files: u64) -> Result<(), StoreError> {
        let _ = files;
        Ok(())
    }
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // the length is an I/O result, not a collection's size
pub trait DiskFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset` if its bytes are in memory (the page cache), without waiting
    /// for the disk: `Ok(false)` when the first of them is not (`buf` is left in any state).
    /// A file system that cannot tell reads them.
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        self.read_exact_at(buf, offset).map(|()| true)
    }
    /// Asks for `len` bytes from `offset` to be read from the disk in the background, so that a
    /// read of many places waits for the disk about once, not once for each. A hint only.
    fn prefetch(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the written bytes (and the length) survive a power cut once this returns.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// How often the store's reads have waited for the disk lately: a moving average, over its
/// reads (an index block, or a batch of events), of those whose bytes were not in memory.
///
/// A search asks the disk ahead for what it will read only when reads wait often
/// ([`often`](Self::often)): with the log in memory an occasional read still waits (a page the
/// kernel let go), and asking ahead at every search then would cost more system calls than the
/// rare wait it spares. One atomic word, written only when it changes (it stops changing soon
/// after reads find their bytes in memory again), so readers on many threads do not contend for it.
#[derive(Debug, Default)]
pub(crate) struct DiskWaits(AtomicU32);

/// The average in units of 1/65,536.
const ONE: u32 = 1 << 16;
/// Each read weighs 1/64 of the average: about 130 reads from memory forget a run of waits.
const WEIGHT_SHIFT: u32 = 6;
/// "Often": more than one read in eight waits.
const OFTEN: u32 = ONE / 8;

impl DiskWaits {
    /// Notes one read, and whether it waited for the disk.
    pub fn note(&self, waited: bool) {
        let old = self.0.load(Ordering::Relaxed);
        if old == 0 && !waited {
            return;
        }
        let new = old - (old >> WEIGHT_SHIFT) + if waited { ONE >> WEIGHT_SHIFT } else { 0 };
        if new != old {
            // Racing notes may lose one another's update: the average is a hint.
            self.0.store(new, Ordering::Relaxed);
        }
    }

    /// Whether more than one read in eight waited for the disk lately.
    pub fn often(&self) -> bool {
        self.0.load(Ordering::Relaxed) > OFTEN
    }
}

impl dyn DiskFile {
    /// A sequential reader over the first `len` bytes, for scanning.
    pub fn reader(self: &Arc<Self>, len: u64) -> impl Read + '_ {
        self.reader_from(0, len)
    }

    /// A sequential reader over bytes `start..len`.
    pub fn reader_from(self: &Arc<Self>, start: u64, len: u64) -> impl Read + '_ {
        io::BufReader::with_capacity(1 << 20, FileReader { file: self.as_ref(), at: start, len })
    }

    /// The whole file.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; self.len()? as usize];
        self.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }
}

struct FileReader<'a> {
    file: &'a dyn DiskFile,
    at: u64,
    len: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.at) as usize);
        self.file.read_exact_at(&mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        crate::durable::create_dir(dir)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        path.canonicalize()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(dir)?.map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned())).collect()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                options.write(true);
            }
            OpenMode::CreateNew => {
                options.write(true).create_new(true);
            }
            OpenMode::CreateTruncate => {
                options.write(true).create(true).truncate(true);
            }
        }
        // No access times: every read of a file would otherwise ask whether its atime is due
        // (with relatime) and sometimes write it (about 7 % of a tag read's time in `perf`).
        // Only the file's owner may ask for that; anyone else opens it the usual way.
        let mut quiet = options.clone();
        quiet.custom_flags(libc::O_NOATIME);
        match quiet.open(path) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(Arc::new(options.open(path)?)),
            opened => Ok(Arc::new(opened?)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, dir: &Path) -> Result<Box<dyn Any + Send + Sync>, StoreError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&format!("opening {}", path.display()), e))?;
        match try_lock_patiently(&file, File::try_lock) {
            Ok(None) => {}
            Ok(Some(pid)) => return Err(StoreError::Locked { dir: dir.to_path_buf(), pid }),
            Err(e) => return Err(StoreError::io(&format!("locking {}", path.display()), e)),
        }
        file.set_len(0)
            .and_then(|()| FileExt::write_all_at(&file, std::process::id().to_string().as_bytes(), 0))
            .map_err(|e| StoreError::io(&format!("writing {}", path.display()), e))?;
        Ok(Box::new(file))
    }

    /// Raises the process's soft limit to its hard one (as Go's runtime does at start), so that
    /// a growing log does not run out of files later either; the common soft default of 1,024
    /// is about 8 GB of log.
    fn reserve_open_files(&self, files: u64) -> Result<(), StoreError> {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        // Linux refuses a soft limit above `fs.nr_open`, 2^20 by default.
        const MOST: u64 = 1 << 20;
        let limit = getrlimit(Resource::Nofile);
        let (soft, hard) = (limit.current.unwrap_or(u64::MAX), limit.maximum.unwrap_or(u64::MAX));
        if hard < files {
            return Err(StoreError::Unavailable(format!(
                "the store holds its log segments and their index files open, about {files} files, and this process \
                 may open at most {hard}: raise the open-files limit (`ulimit -n`, or `LimitNOFILE=` in a systemd unit)"
            )));
        }
        let target = hard.min(MOST).max(files);
        if soft >= target {
            return Ok(());
        }
        setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum })
            .map_err(|e| StoreError::io("raising the open-files limit", e.into()))?;
        tracing::debug!(from = soft, to = target, "raised the soft open-files limit for the store's files");
        Ok(())
    }
}

/// Takes a lock on a store's LOCK `file` with `try_lock`: `None` when taken, else the pid of the
/// process that holds it. A child this process forks (any thread's `Command::spawn`) shares the
/// lock until it execs: when the holder is this process, a store just closed may look held for
/// that moment, so the lock is asked for again for a while before it counts as held.
pub(super) fn try_lock_patiently(file: &File, try_lock: fn(&File) -> Result<(), std::fs::TryLockError>) -> io::Result<Option<String>> {
    let patience = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match try_lock(file) {
            Ok(()) => return Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = [0u8; 20];
                let n = FileExt::read_at(file, &mut pid, 0).unwrap_or(0);
                let pid = String::from_utf8_lossy(&pid[..n]).trim().to_string();
                if pid == std::process::id().to_string() && std::time::Instant::now() < patience {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                }
                return Ok(Some(if pid.is_empty() { "unknown".to_string() } else { pid }));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

impl DiskFile for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    /// `preadv2` with `RWF_NOWAIT` (Linux 4.14 or later); a kernel or file system without it
    /// reads and waits.
    fn read_cached_at(&self, buf: &mut [u8], offset: u64) -> io::Result<bool> {
        use rustix::io::{preadv2, Errno, ReadWriteFlags};
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            match preadv2(self, &mut [io::IoSliceMut::new(&mut buf[done..])], at, ReadWriteFlags::NOWAIT) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer")),
                Ok(n) => done += n,
                Err(Errno::AGAIN) if done == 0 => return Ok(false),
                Err(Errno::INTR) => {}
                // The rest is not in memory, or the kernel cannot tell: read it, waiting.
                Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                    FileExt::read_exact_at(self, &mut buf[done..], at)?;
                    done = buf.len();
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// `posix_fadvise(WILLNEED)`: the kernel starts reading the range. An error changes nothing
    /// a read relies on, so it is ignored.
    fn prefetch(&self, offset: u64, len: u64) {
        let _ = rustix::fs::fadvise(self, offset, std::num::NonZeroU64::new(len), rustix::fs::Advice::WillNeed);
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

#[cfg(test)]
mod tests {
    use super::{Disk, DiskWaits, OpenMode, RealDisk};

    #[test]
    fn reading_a_store_file_leaves_its_access_time() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000.log");
        std::fs::write(&path, b"an event or two").unwrap();
        // Older than its change: relatime would set it at the next read.
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let times = std::fs::FileTimes::new().set_accessed(old);
        std::fs::File::options().write(true).open(&path).unwrap().set_times(times).unwrap();
        for mode in [OpenMode::Read, OpenMode::ReadWrite] {
            let file = RealDisk.open(&path, mode).unwrap();
            let mut buf = [0u8; 5];
            file.read_exact_at(&mut buf, 3).unwrap();
            assert_eq!(&buf, b"event");
            assert_eq!(std::fs::metadata(&path).unwrap().accessed().unwrap(), old, "{mode:?}");
        }
    }

    fn note_pattern(waits: &DiskWaits, reads: usize, one_in: usize) {
        for i in 0..reads {
            waits.note(i % one_in == 0);
        }
    }

    #[test]
    fn reads_wait_often_only_while_many_of_them_wait() {
        let waits = DiskWaits::default();
        assert!(!waits.often(), "no read yet");

        // The log in memory, with the odd page the kernel let go.
        note_pattern(&waits, 10_000, 500);
        assert!(!waits.often(), "one read in 500 waiting is not often");

        // Out of memory: a handful of reads in a row that wait are enough.
        for _ in 0..12 {
            waits.note(true);
        }
        assert!(waits.often(), "a dozen reads that waited in a row");

        // Back in memory: soon forgotten.
        note_pattern(&waits, 300, usize::MAX);
        assert!(!waits.often(), "300 reads from memory since");

        note_pattern(&waits, 2_000, 4);
        assert!(waits.often(), "one read in four waits");
        note_pattern(&waits, 2_000, 16);
        assert!(!waits.often(), "one read in sixteen waits");
    }
}
