//! Online backup and restore of a data directory on the embedded store
//! (`counterpoint backup` / `restore`, `POST /v1/admin/backup`).
//!
//! ```text
//! <backup>/MANIFEST.json             written last, atomically: format, heads, every file's length and SHA-256
//! <backup>/events/0000000000.log     the log's segments, up to one cut
//! <backup>/state-<generation>/       the store's FORMAT, readmodels.redb, tenants/… (new with each backup)
//! <backup>/components/<sha256>.wasm  deployed components (by content: only new ones are copied)
//! <backup>/LOCK                      held while a backup writes here
//! ```
//!
//! Order is what makes the copy consistent while appends go on: first a snapshot of the
//! read-model state (one redb read transaction), then a cut of the log (the store's published
//! frames at one instant, [`EmbeddedStore::published_cut`]). Read models only ever see
//! published events, so every checkpoint in the snapshot is at or before its tenant's head in
//! the cut; after a restore they catch up from there. Automations keep their checkpoints in the
//! log itself, so they are exactly as of the cut.

pub mod manifest;
mod restore;
mod segments;
mod state;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

pub use self::manifest::{FileEntry, Manifest};
pub use self::restore::{restore, Restored};
use self::manifest::{copy_file, entry_of, sync_dir, FORMAT};
use crate::readmodels::EmbeddedState;
use crate::store::{EmbeddedStore, Position, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// A file of a backup is not what its manifest says.
    #[error("{}: {detail}", file.display())]
    Damaged { file: PathBuf, detail: String },
    #[error("{0}")]
    NotABackup(String),
    /// The destination holds a backup of another log.
    #[error("the destination holds a backup of another log (or of this one before a repair): {0}; back up into an empty directory")]
    OtherStore(String),
    #[error("{} is not empty: restore into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("a backup is already running{0}")]
    Busy(String),
    #[error("read-model state: {0}")]
    State(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    fn io(context: &str, source: std::io::Error) -> Self {
        BackupError::Io { context: context.to_string(), source }
    }
}

/// What a backup copies from: the open store and read-model state, and the data directory
/// (deployed slices and tenant files).
pub struct Source {
    pub store: EmbeddedStore,
    pub state: Arc<EmbeddedState>,
    pub data_dir: PathBuf,
    /// One backup at a time from this process.
    running: Mutex<()>,
}

/// What a backup did (the API's answer, the CLI's output).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupReport {
    pub dest: String,
    /// 1 for a first backup, one more for each backup added to the same directory.
    pub generation: u64,
    /// Whether it added to an earlier backup in the same directory.
    pub incremental: bool,
    /// Each tenant's head: the backup holds its events 1 to head.
    #[schema(value_type = BTreeMap<String, String>)]
    pub heads: BTreeMap<String, Position>,
    /// The log's size in the backup.
    pub log_bytes: u64,
    /// Log bytes this backup copied (the rest was in the earlier backup).
    pub log_bytes_copied: u64,
    /// Bytes of read-model state, slices and tenant files this backup wrote.
    pub other_bytes_copied: u64,
    pub seconds: f64,
}

impl Source {
    pub fn new(store: EmbeddedStore, state: Arc<EmbeddedState>, data_dir: &Path) -> Source {
        Source { store, state, data_dir: data_dir.to_path_buf(), running: Mutex::new(()) }
    }

    /// Backs up into `dest` (created if missing), adding to the backup it holds if any. Blocks
    /// on file I/O: call it off the async threads.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, BackupError> {
        let _running = self.running.try_lock().map_err(|_| BackupError::Busy(String::new()))?;
        let started = Instant::now();
        std::fs::create_dir_all(dest).map_err(|e| BackupError::io(&format!("creating {}", dest.display()), e))?;
        let _lock = lock(dest)?;
        let previous = Manifest::read(dest)?;
        let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
        let state_dir = format!("state-{generation}");
        // Left by a backup of this generation that did not finish.
        remove_dir(&dest.join(&state_dir))?;
        std::fs::create_dir_all(dest.join(&state_dir)).map_err(|e| BackupError::io("creating the state directory", e))?;

        // The read-model snapshot first, then the cut: every checkpoint is at or before the cut.
        let redb = format!("{state_dir}/readmodels.redb");
        let read_models = state::snapshot(self.state.database(), &dest.join(&redb))?;
        let (last, last_len, heads) = self.store.published_cut();
        let heads: BTreeMap<String, Position> = heads.into_iter().map(|(t, p)| (t.as_str().to_string(), p)).collect();
        for (id, checkpoint) in &read_models {
            let tenant = id.split('/').next().unwrap_or_default();
            let head = heads.get(tenant).copied().unwrap_or(Position::ZERO);
            if *checkpoint > head {
                return Err(BackupError::State(format!("read model {id} is at {checkpoint}, past its tenant's head {head}")));
            }
        }

        let log = segments::copy_log(self.store.dir(), dest, last, last_len, previous.as_ref())?;
        let mut files = vec![entry_of(&dest.join(&redb), &redb, "readmodels.redb")?];
        // Into this generation's directory: rewriting the earlier backup's copy in place would
        // damage it if this backup stopped half-way.
        let format = format!("{state_dir}/FORMAT");
        files.push(copy_file(&self.store.dir().join("FORMAT"), &dest.join(&format), &format, "events/FORMAT")?);
        files.extend(self.copy_tenant_files(dest, &state_dir)?);
        let components = self.copy_components(dest, previous.as_ref())?;
        let other_bytes_copied =
            files.iter().map(|f| f.len).sum::<u64>() + components.iter().filter(|(_, copied)| *copied).map(|(f, _)| f.len).sum::<u64>();
        files.extend(components.into_iter().map(|(entry, _)| entry));
        sync_dir(&dest.join(&state_dir)).map_err(|e| BackupError::io("syncing the state directory", e))?;

        let manifest = Manifest {
            format: FORMAT.into(),
            generation,
            created_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            heads: heads.clone(),
            log: log.entries,
            files,
            read_models,
        };
        manifest.write(dest)?;
        // The earlier generation's state is no longer named by the manifest.
        if let Some(previous) = previous.filter(|p| p.generation != generation) {
            remove_dir(&dest.join(format!("state-{}", previous.generation)))?;
        }
        Ok(BackupReport {
            dest: dest.display().to_string(),
            generation,
            incremental: generation > 1,
            heads,
            log_bytes: manifest.log.iter().map(|f| f.len).sum(),
            log_bytes_copied: log.bytes_copied,
            other_bytes_copied,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// `tenants/…` (what each tenant runs, tenants created through the API), into this
    /// generation's state directory. Each file is replaced whole by its writer (a rename), so
    /// each copy is one version of it.
    fn copy_tenant_files(&self, dest: &Path, state_dir: &str) -> Result<Vec<FileEntry>, BackupError> {
        let mut out = Vec::new();
        for relative in files_under(&self.data_dir, "tenants")? {
            let path = format!("{state_dir}/{relative}");
            out.push(copy_file(&self.data_dir.join(&relative), &dest.join(&path), &path, &relative)?);
        }
        Ok(out)
    }

    /// Every deployed component; those the backup holds already (same name, same content: the
    /// name is its SHA-256) are not copied again. Says for each whether it was copied.
    fn copy_components(&self, dest: &Path, previous: Option<&Manifest>) -> Result<Vec<(FileEntry, bool)>, BackupError> {
        let mut out = Vec::new();
        for relative in files_under(&self.data_dir, "components")? {
            if !relative.ends_with(".wasm") {
                continue;
            }
            let kept = previous.and_then(|p| p.entry(&relative)).filter(|entry| entry_of(&dest.join(&relative), &relative, &relative).ok().as_ref() == Some(*entry));
            match kept {
                Some(entry) => out.push((entry.clone(), false)),
                // Removed meanwhile (no tenant runs it any more): nothing to keep.
                None if !self.data_dir.join(&relative).exists() => {}
                None => out.push((copy_file(&self.data_dir.join(&relative), &dest.join(&relative), &relative, &relative)?, true)),
            }
        }
        Ok(out)
    }
}

/// The regular files under `root/dir`, as paths relative to `root`, sorted; temporary files
/// (a write in progress) and damaged files set aside left out.
fn files_under(root: &Path, dir: &str) -> Result<Vec<String>, BackupError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_string()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(root.join(&dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::io(&format!("listing {}", root.join(&dir).display()), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| BackupError::io(&format!("listing {}", root.join(&dir).display()), e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let relative = format!("{dir}/{name}");
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(relative),
                Ok(kind) if kind.is_file() && !name.contains(".tmp") && !name.contains(".damaged") => out.push(relative),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

fn remove_dir(dir: &Path) -> Result<(), BackupError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(BackupError::io(&format!("removing {}", dir.display()), e)),
        _ => Ok(()),
    }
}

/// Holds `dest/LOCK` while a backup writes there: two backups into one directory would mix.
fn lock(dest: &Path) -> Result<File, BackupError> {
    let path = dest.join("LOCK");
    let file = File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| BackupError::io(&format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Busy(format!(" into {}", dest.display()))),
        Err(std::fs::TryLockError::Error(e)) => Err(BackupError::io(&format!("locking {}", path.display()), e)),
    }
}
