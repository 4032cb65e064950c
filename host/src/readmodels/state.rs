//! Where read models' state lives: one key-value namespace per read model, and its checkpoint,
//! changed together in one transaction. That single transaction is what makes updates
//! exactly-once: after a crash, the state and the checkpoint are both from before a batch or
//! both from after it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;

use crate::store::{Position, StoreError, Tenant};

/// One read model of one slice of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ReadModelId {
    pub tenant: Tenant,
    pub slice: String,
    pub name: String,
}

impl std::fmt::Display for ReadModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.slice, self.name)
    }
}

/// How far a read model's state has come, and the source query it was built from (so that a
/// new version with another query rebuilds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub source: String,
}

/// A batch's changes: a value to put, or `None` to delete.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Limits that hold on every backend (FoundationDB's are the tightest: 100 kB values, 10 MB
/// transactions).
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_VALUE_BYTES: usize = 90_000;
pub const MAX_BATCH_WRITE_BYTES: usize = 8 << 20;
pub const MAX_SCAN: u32 = 10_000;

/// The interface every state backend implements.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    async fn get(&self, id: &ReadModelId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries with `prefix` after `after` (exclusive), in key order, at most `limit`.
    async fn scan(&self, id: &ReadModelId, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    async fn checkpoint(&self, id: &ReadModelId) -> Result<Option<Checkpoint>, StoreError>;

    /// Applies `writes` and sets the checkpoint to `to`, atomically, if the checkpoint is still
    /// `from`; returns `false` (writing nothing) if another worker moved it.
    async fn commit(&self, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: Checkpoint) -> Result<bool, StoreError>;

    /// Drops the state and the checkpoint, atomically.
    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError>;

    /// How many keys the state holds.
    async fn len(&self, id: &ReadModelId) -> Result<u64, StoreError>;
}

pub type SharedState = Arc<dyn StateStore>;

/// Whether `key` is in the scan's range: `prefix`, after `after`.
pub(crate) fn in_scan(key: &[u8], prefix: &[u8], after: Option<&[u8]>) -> bool {
    key.starts_with(prefix) && after.is_none_or(|after| key > after)
}

/// The lower bound of a scan over sorted keys.
pub(crate) fn scan_start<'a>(prefix: &'a [u8], after: Option<&'a [u8]>) -> Bound<&'a [u8]> {
    match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    }
}

/// One read model's entries and checkpoint, in memory.
type MemoryModel = (BTreeMap<Vec<u8>, Vec<u8>>, Option<Checkpoint>);

/// State in memory: for tests, and for hosts on the in-memory event store.
#[derive(Default)]
pub struct MemoryState {
    models: Mutex<HashMap<ReadModelId, MemoryModel>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn get(&self, id: &ReadModelId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.models.lock().expect("state lock").get(id).and_then(|(kv, _)| kv.get(key).cloned()))
    }

    async fn scan(&self, id: &ReadModelId, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let models = self.models.lock().expect("state lock");
        let Some((kv, _)) = models.get(id) else { return Ok(Vec::new()) };
        Ok(kv
            .range::<[u8], _>((scan_start(prefix, after), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn checkpoint(&self, id: &ReadModelId) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.models.lock().expect("state lock").get(id).and_then(|(_, checkpoint)| checkpoint.clone()))
    }

    async fn commit(&self, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: Checkpoint) -> Result<bool, StoreError> {
        let mut models = self.models.lock().expect("state lock");
        let (kv, checkpoint) = models.entry(id.clone()).or_default();
        if checkpoint.as_ref() != from {
            return Ok(false);
        }
        for (key, value) in writes {
            match value {
                Some(value) => kv.insert(key, value),
                None => kv.remove(&key),
            };
        }
        *checkpoint = Some(to);
        Ok(true)
    }

    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError> {
        self.models.lock().expect("state lock").remove(id);
        Ok(())
    }

    async fn len(&self, id: &ReadModelId) -> Result<u64, StoreError> {
        Ok(self.models.lock().expect("state lock").get(id).map_or(0, |(kv, _)| kv.len() as u64))
    }
}
