//! Read models' state on the embedded default: one redb database in the data directory
//! (`readmodels.redb`), a table per read model and one table of checkpoints. A redb write
//! transaction is atomic and durable when `commit` returns (copy-on-write B-trees, a checksummed
//! commit slot), so a state and its checkpoint always change together, even across `kill -9`.
//!
//! redb checks its checksums only when it recovers from a crash, not on reads: so every open
//! checks the whole file. A file that fails (a bit flipped, cut short, not a database) is set
//! aside as `readmodels.redb.damaged-<n>`, never deleted, and a fresh one takes its place: the
//! state is derived from the log, so every read model rebuilds from it, with an error logged
//! that names both files. Damage met while running fails every later access with
//! [`StoreError::Corrupt`] (never an answer from a file known to be damaged) until a restart
//! sets the file aside.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError, TableDefinition, TableError};

use super::state::{scan_start, Checkpoint, ReadModelId, StateStore, Writes};
use crate::durable;
use crate::store::{Position, StoreError};

const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");

/// A redb database of read-model state.
pub struct EmbeddedState {
    db: Arc<Database>,
    path: PathBuf,
    /// Set once damage was met while running: nothing more is read from or written to the file.
    damaged: Arc<AtomicBool>,
    set_aside: Option<SetAside>,
}

/// A damaged state file that [`EmbeddedState::open`] set aside.
#[derive(Clone, Debug)]
pub struct SetAside {
    /// Where the damaged file is now.
    pub path: PathBuf,
    /// What was wrong with it.
    pub damage: String,
}

fn unavailable(path: &Path, what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("read-model state {}: {what}: {err}", path.display()))
}

/// What the operator reads when the state file is found damaged while running.
fn damaged_while_running(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        dir: path.to_path_buf(),
        detail: format!(
            "the read-model state file is damaged ({detail}); it is derived from the log: restart the host, which sets the file aside as {}.damaged-<n> and rebuilds every read model from the log",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
    }
}

/// A redb error of an access: damage (redb found the file corrupt) stops every later access.
fn access_error(path: &Path, damaged: &AtomicBool, what: &str, err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Corrupted(detail) => {
            damaged.store(true, Ordering::SeqCst);
            tracing::error!(file = %path.display(), "the read-model state is damaged ({what}): {detail}");
            damaged_while_running(path, format!("{what}: {detail}"))
        }
        other => unavailable(path, what, other),
    }
}

/// Why a state file could not be opened: damaged (to be set aside), or something else.
enum OpenError {
    Damaged(String),
    Other(StoreError),
}

/// Opens (creating it if need be) and checks the whole file; a panic of redb on a damaged file
/// counts as damage.
fn open_checked(path: &Path) -> Result<Database, OpenError> {
    let created = !path.exists();
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(Database, bool), DatabaseError> {
        let mut db = Database::create(path)?;
        let clean = db.check_integrity()?;
        Ok((db, clean))
    }));
    match opened {
        Ok(Ok((db, clean))) => {
            if !clean {
                // redb rolled back to its last intact commit: state and checkpoints together,
                // so the workers go on from there.
                tracing::warn!(file = %path.display(), "the read-model state was repaired back to its last intact commit");
            }
            if created {
                let dir = path.parent().unwrap_or(Path::new("."));
                durable::sync_dir(dir).map_err(|e| OpenError::Other(StoreError::io(&format!("syncing {}", dir.display()), e)))?;
            }
            Ok(db)
        }
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(detail)))) => Err(OpenError::Damaged(detail)),
        Ok(Err(DatabaseError::Storage(StorageError::Io(err)))) if err.kind() == std::io::ErrorKind::InvalidData => {
            Err(OpenError::Damaged(format!("not a redb database: {err}")))
        }
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => {
            Err(OpenError::Other(unavailable(path, "opening", "the file is in use by another process (or another handle in this one)")))
        }
        Ok(Err(err)) => Err(OpenError::Other(unavailable(path, "opening", err))),
        Err(panic) => {
            let message = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(OpenError::Damaged(format!("redb failed reading it: {}", message.unwrap_or_default())))
        }
    }
}

fn table_name(id: &ReadModelId) -> String {
    format!("state/{}/{}/{}", id.tenant, id.slice, id.name)
}

fn checkpoint_key(id: &ReadModelId) -> String {
    format!("{}/{}/{}", id.tenant, id.slice, id.name)
}

/// A checkpoint on disk: the position (16 bytes, big-endian), then the source query's text.
fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut bytes = checkpoint.position.get().to_be_bytes().to_vec();
    bytes.extend_from_slice(checkpoint.source.as_bytes());
    bytes
}

fn decode_checkpoint(path: &Path, id: &ReadModelId, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let corrupt = || damaged_while_running(path, format!("the checkpoint of read model {id} does not decode"));
    let (position, source) = bytes.split_at_checked(16).ok_or_else(corrupt)?;
    Ok(Checkpoint {
        position: Position::from_u128(u128::from_be_bytes(position.try_into().map_err(|_| corrupt())?)),
        source: String::from_utf8(source.to_vec()).map_err(|_| corrupt())?,
    })
}

impl EmbeddedState {
    /// Opens (or creates) the database at `path` and checks it whole. A damaged file is set
    /// aside and replaced with an empty one (see [`set_aside`](Self::set_aside)): every read
    /// model then rebuilds from the log.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            durable::create_dir(dir).map_err(|e| StoreError::io(&format!("creating {}", dir.display()), e))?;
        }
        let (db, set_aside) = match open_checked(&path) {
            Ok(db) => (db, None),
            Err(OpenError::Other(err)) => return Err(err),
            Err(OpenError::Damaged(damage)) => {
                let aside = durable::set_aside(&path).map_err(|e| StoreError::io(&format!("setting the damaged {} aside", path.display()), e))?;
                tracing::error!(
                    file = %path.display(),
                    set_aside = %aside.display(),
                    "the read-model state is damaged ({damage}): set aside; every read model of every tenant rebuilds from the log"
                );
                let db = open_checked(&path).map_err(|err| match err {
                    OpenError::Other(err) => err,
                    OpenError::Damaged(detail) => unavailable(&path, "creating a fresh state", detail),
                })?;
                (db, Some(SetAside { path: aside, damage }))
            }
        };
        Ok(EmbeddedState { db: Arc::new(db), path, damaged: Arc::default(), set_aside })
    }

    /// The damaged file this open set aside, if it found one: the read models rebuild from the
    /// log.
    pub fn set_aside(&self) -> Option<&SetAside> {
        self.set_aside.as_ref()
    }

    /// Fails once damage was met while running.
    fn usable(&self) -> Result<(), StoreError> {
        if self.damaged.load(Ordering::SeqCst) {
            return Err(damaged_while_running(&self.path, "damage was met earlier"));
        }
        Ok(())
    }

    /// Reads with `f` on the read model's table; `None` when it does not exist yet.
    fn read<T>(&self, id: &ReadModelId, f: impl FnOnce(&redb::ReadOnlyTable<&[u8], &[u8]>) -> Result<T, redb::StorageError>) -> Result<Option<T>, StoreError> {
        self.usable()?;
        let name = table_name(id);
        let fail = |e: redb::Error| access_error(&self.path, &self.damaged, &format!("reading read model {id}"), e);
        let txn = self.db.begin_read().map_err(|e| fail(e.into()))?;
        match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(table) => f(&table).map(Some).map_err(|e| fail(e.into())),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(fail(e.into())),
        }
    }

    /// The database, for an online backup: one read transaction is a consistent snapshot of
    /// every read model's state and checkpoint.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[async_trait]
impl StateStore for EmbeddedState {
    async fn get(&self, id: &ReadModelId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read(id, |table| Ok(table.get(key)?.map(|v| v.value().to_vec())))?.flatten())
    }

    async fn scan(&self, id: &ReadModelId, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let found = self.read(id, |table| {
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>((scan_start(prefix, after), Bound::Unbounded))? {
                let (key, value) = entry?;
                if !key.value().starts_with(prefix) || out.len() >= limit {
                    break;
                }
                out.push((key.value().to_vec(), value.value().to_vec()));
            }
            Ok(out)
        })?;
        Ok(found.unwrap_or_default())
    }

    async fn checkpoint(&self, id: &ReadModelId) -> Result<Option<Checkpoint>, StoreError> {
        self.usable()?;
        let fail = |e: redb::Error| access_error(&self.path, &self.damaged, &format!("reading the checkpoint of read model {id}"), e);
        let txn = self.db.begin_read().map_err(|e| fail(e.into()))?;
        let table = match txn.open_table(CHECKPOINTS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(fail(e.into())),
        };
        let found = table.get(checkpoint_key(id).as_str()).map_err(|e| fail(e.into()))?;
        found.map(|bytes| decode_checkpoint(&self.path, id, bytes.value())).transpose()
    }

    async fn commit(&self, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: Checkpoint) -> Result<bool, StoreError> {
        self.usable()?;
        let (db, path, id, from, damaged) = (self.db.clone(), self.path.clone(), id.clone(), from.cloned(), self.damaged.clone());
        // The commit waits for the disk: off the async threads.
        tokio::task::spawn_blocking(move || {
            let fail = |e: redb::Error| access_error(&path, &damaged, &format!("committing read model {id}"), e);
            let txn = db.begin_write().map_err(|e| fail(e.into()))?;
            {
                let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| fail(e.into()))?;
                let key = checkpoint_key(&id);
                let current = checkpoints.get(key.as_str()).map_err(|e| fail(e.into()))?.map(|v| decode_checkpoint(&path, &id, v.value())).transpose()?;
                if current != from {
                    return Ok(false);
                }
                checkpoints.insert(key.as_str(), encode_checkpoint(&to).as_slice()).map_err(|e| fail(e.into()))?;
                let name = table_name(&id);
                let mut table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)).map_err(|e| fail(e.into()))?;
                for (key, value) in &writes {
                    match value {
                        Some(value) => table.insert(key.as_slice(), value.as_slice()).map(drop),
                        None => table.remove(key.as_slice()).map(drop),
                    }
                    .map_err(|e| fail(e.into()))?;
                }
            }
            txn.commit().map_err(|e| fail(e.into()))?;
            Ok(true)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the read-model commit task failed: {e}")))?
    }

    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError> {
        self.usable()?;
        let (db, path, id, damaged) = (self.db.clone(), self.path.clone(), id.clone(), self.damaged.clone());
        tokio::task::spawn_blocking(move || {
            let fail = |e: redb::Error| access_error(&path, &damaged, &format!("clearing read model {id}"), e);
            let txn = db.begin_write().map_err(|e| fail(e.into()))?;
            {
                let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| fail(e.into()))?;
                checkpoints.remove(checkpoint_key(&id).as_str()).map_err(|e| fail(e.into()))?;
                let name = table_name(&id);
                txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&name)).map_err(|e| fail(e.into()))?;
            }
            txn.commit().map_err(|e| fail(e.into()))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the read-model clear task failed: {e}")))?
    }

    async fn len(&self, id: &ReadModelId) -> Result<u64, StoreError> {
        Ok(self.read(id, |table| table.len())?.unwrap_or(0))
    }
}
