//! Read models' state on the embedded default: one redb database in the data directory
//! (`readmodels.redb`), a table per read model and one table of checkpoints. A redb write
//! transaction is atomic and durable when `commit` returns (copy-on-write B-trees, a checksummed
//! commit slot), so a state and its checkpoint always change together, even across `kill -9`.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};

use super::state::{scan_start, Checkpoint, ReadModelId, StateStore, Writes};
use crate::store::{Position, StoreError};

const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");

/// A redb database of read-model state.
pub struct EmbeddedState {
    db: Arc<Database>,
    path: PathBuf,
}

fn unavailable(path: &Path, what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("read-model state {}: {what}: {err}", path.display()))
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

fn decode_checkpoint(path: &Path, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let corrupt = || StoreError::Corrupt { dir: path.to_path_buf(), detail: "a read-model checkpoint does not decode".into() };
    let (position, source) = bytes.split_at_checked(16).ok_or_else(corrupt)?;
    Ok(Checkpoint {
        position: Position::from_u128(u128::from_be_bytes(position.try_into().map_err(|_| corrupt())?)),
        source: String::from_utf8(source.to_vec()).map_err(|_| corrupt())?,
    })
}

impl EmbeddedState {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(&format!("creating {}", dir.display()), e))?;
        }
        let db = Database::create(&path).map_err(|e| unavailable(&path, "opening", e))?;
        Ok(EmbeddedState { db: Arc::new(db), path })
    }

    /// Reads with `f` on the read model's table; `None` when it does not exist yet.
    fn read<T>(&self, id: &ReadModelId, f: impl FnOnce(&redb::ReadOnlyTable<&[u8], &[u8]>) -> Result<T, redb::StorageError>) -> Result<Option<T>, StoreError> {
        let name = table_name(id);
        let txn = self.db.begin_read().map_err(|e| unavailable(&self.path, "reading", e))?;
        match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
            Ok(table) => f(&table).map(Some).map_err(|e| unavailable(&self.path, "reading", e)),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(unavailable(&self.path, "reading", e)),
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
        let txn = self.db.begin_read().map_err(|e| unavailable(&self.path, "reading", e))?;
        let table = match txn.open_table(CHECKPOINTS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(&self.path, "reading", e)),
        };
        let found = table.get(checkpoint_key(id).as_str()).map_err(|e| unavailable(&self.path, "reading", e))?;
        found.map(|bytes| decode_checkpoint(&self.path, bytes.value())).transpose()
    }

    async fn commit(&self, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: Checkpoint) -> Result<bool, StoreError> {
        let (db, path, id, from) = (self.db.clone(), self.path.clone(), id.clone(), from.cloned());
        // The commit waits for the disk: off the async threads.
        tokio::task::spawn_blocking(move || {
            let fail = |e: &dyn std::fmt::Display| unavailable(&path, "committing", e);
            let txn = db.begin_write().map_err(|e| fail(&e))?;
            {
                let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| fail(&e))?;
                let key = checkpoint_key(&id);
                let current = checkpoints.get(key.as_str()).map_err(|e| fail(&e))?.map(|v| decode_checkpoint(&path, v.value())).transpose()?;
                if current != from {
                    return Ok(false);
                }
                checkpoints.insert(key.as_str(), encode_checkpoint(&to).as_slice()).map_err(|e| fail(&e))?;
                let name = table_name(&id);
                let mut table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)).map_err(|e| fail(&e))?;
                for (key, value) in &writes {
                    match value {
                        Some(value) => table.insert(key.as_slice(), value.as_slice()).map(drop),
                        None => table.remove(key.as_slice()).map(drop),
                    }
                    .map_err(|e| fail(&e))?;
                }
            }
            txn.commit().map_err(|e| fail(&e))?;
            Ok(true)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the read-model commit task failed: {e}")))?
    }

    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError> {
        let (db, path, id) = (self.db.clone(), self.path.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let fail = |e: &dyn std::fmt::Display| unavailable(&path, "clearing", e);
            let txn = db.begin_write().map_err(|e| fail(&e))?;
            {
                let mut checkpoints = txn.open_table(CHECKPOINTS).map_err(|e| fail(&e))?;
                checkpoints.remove(checkpoint_key(&id).as_str()).map_err(|e| fail(&e))?;
                let name = table_name(&id);
                txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&name)).map_err(|e| fail(&e))?;
            }
            txn.commit().map_err(|e| fail(&e))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the read-model clear task failed: {e}")))?
    }

    async fn len(&self, id: &ReadModelId) -> Result<u64, StoreError> {
        Ok(self.read(id, |table| table.len())?.unwrap_or(0))
    }
}
