//! The `read-model-state` import: a read model's key-value namespace, bound to one invocation.
//! During `update` the slice reads the committed state through the batch's own writes, which
//! the host commits with the checkpoint once `update` returns; during `answer` it only reads.

use std::collections::BTreeMap;

use super::bindings::{read_model_state, types};
use super::invocation::{to_wit_error, InvocationState};
use crate::readmodels::state::{in_scan, ReadModelId, SharedState, Writes, MAX_BATCH_WRITE_BYTES, MAX_KEY_BYTES, MAX_SCAN, MAX_VALUE_BYTES};

/// One invocation's view of a read model's state.
pub struct KvSession {
    state: SharedState,
    id: ReadModelId,
    writable: bool,
    writes: Writes,
    bytes: usize,
}

impl KvSession {
    /// For `update`: reads and writes; the writes are the batch's changes.
    pub fn updating(state: SharedState, id: ReadModelId) -> Self {
        KvSession { state, id, writable: true, writes: BTreeMap::new(), bytes: 0 }
    }

    /// For `answer`: reads only.
    pub fn answering(state: SharedState, id: ReadModelId) -> Self {
        KvSession { state, id, writable: false, writes: BTreeMap::new(), bytes: 0 }
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, types::Error> {
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        self.state.get(&self.id, key).await.map_err(|e| to_wit_error(&e))
    }

    /// The committed entries merged with this batch's writes.
    async fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>, types::Error> {
        let limit = limit.min(MAX_SCAN) as usize;
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self.writes.iter().filter(|(k, _)| in_scan(k, prefix, after)).collect();
        // Deleted keys may hide committed ones: read enough to still fill `limit`.
        let committed = self.state.scan(&self.id, prefix, after, limit + pending.len()).await.map_err(|e| to_wit_error(&e))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
        for (key, value) in pending {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), types::Error> {
        if !self.writable {
            return Err(types::Error::InvalidInput("a read model's state is read-only while it answers a query".into()));
        }
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(types::Error::InvalidInput(format!("a read-model key is 1 to {MAX_KEY_BYTES} bytes, not {}", key.len())));
        }
        let size = key.len() + value.as_ref().map_or(0, Vec::len);
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(types::Error::InvalidInput(format!("a read-model value is at most {MAX_VALUE_BYTES} bytes")));
        }
        if self.bytes + size > MAX_BATCH_WRITE_BYTES {
            return Err(types::Error::InvalidInput(format!("one update writes at most {MAX_BATCH_WRITE_BYTES} bytes")));
        }
        self.bytes += size;
        self.writes.insert(key, value);
        Ok(())
    }
}

fn no_read_model() -> types::Error {
    types::Error::InvalidInput("read-model state is only available to a read model's update and answer".into())
}

impl read_model_state::Host for InvocationState {
    async fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<Option<Vec<u8>>, types::Error>> {
        Ok(match &self.kv {
            Some(kv) => kv.get(&key).await,
            None => Err(no_read_model()),
        })
    }

    async fn scan(&mut self, prefix: Vec<u8>, after: Option<Vec<u8>>, limit: u32) -> wasmtime::Result<Result<Vec<(Vec<u8>, Vec<u8>)>, types::Error>> {
        Ok(match &self.kv {
            Some(kv) => kv.scan(&prefix, after.as_deref(), limit).await,
            None => Err(no_read_model()),
        })
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(self.kv.as_mut().map_or_else(|| Err(no_read_model()), |kv| kv.write(key, Some(value))))
    }

    async fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(self.kv.as_mut().map_or_else(|| Err(no_read_model()), |kv| kv.write(key, None)))
    }
}
