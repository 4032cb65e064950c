//! Read models' state on FoundationDB (cargo feature `fdb`): every host on a cluster sees the
//! same state, and a commit is one FDB transaction, so the state and its checkpoint always
//! change together.
//!
//! Layout, under the tenant's subspace `("counterpoint", <deployment prefix>, <tenant>)` that
//! the event store uses (`docs/fdb.md`, "Key layout"):
//!
//! ```text
//! r <pack((slice, name))> k <key>     an entry of a read model's state (the slice's key, raw)
//! r <pack((slice, name))> c           its checkpoint: position (16 bytes, big-endian), then the source text
//! ```
//!
//! The read model's name is tuple-packed (strings end in a terminator), so one read model's
//! range never contains another's; the slice's keys follow raw, so FDB's key order is the
//! order of the slice's keys and a prefix scan is one range read.
//!
//! A commit reads the checkpoint with a **non-snapshot** read, compares it with the one the
//! batch started from, writes the entries and the new checkpoint, all in one transaction in
//! the crate's retry loop (`Database::run`). Two hosts racing from one checkpoint both read it
//! and both write it: whichever commits second fails FDB's conflict check (its read of the
//! checkpoint overlaps the winner's write), runs again, finds the checkpoint moved and returns
//! `false`, writing nothing. "The checkpoint moved" is a value the closure returns, never an
//! error, so the retry loop does not spin on it.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use foundationdb::options::StreamingMode;
use foundationdb::tuple::{pack, Subspace};
use foundationdb::{Database, KeySelector, RangeOption};

use super::state::{scan_start, Checkpoint, ReadModelId, StateStore, Writes};
// The event store's helpers: `StoreError`s through `Database::run`, and FDB's `strinc`.
use crate::store::{fdb_read_range, fdb_abort as abort, fdb_binding as binding, fdb_strinc as strinc};
use crate::store::{FdbOptions, FdbStore, Position, StoreError};

/// FDB refuses transactions over 10,000,000 bytes (mutations and conflict ranges, keys
/// counted in full). A commit's estimated size stays below this.
const MAX_COMMIT_BYTES: usize = 9_000_000;
/// FDB's value size limit: a checkpoint (16 bytes and the source text) must fit.
const MAX_FDB_VALUE: usize = 100_000;
/// FDB's key size limit.
const MAX_FDB_KEY: usize = 10_000;
/// `len` reads at most this many bytes of entries per transaction (well inside FDB's 5 s).
const LEN_PAGE_BYTES: usize = 8 << 20;

/// Read models' state on a FoundationDB cluster. Cloning gives another handle to the same state.
#[derive(Clone)]
pub struct FdbState {
    db: Arc<Database>,
    prefix: String,
}

/// The keys of one read model.
struct ModelKeys {
    /// `r <pack((slice, name))>`: every key of the read model, entries and checkpoint.
    model: Vec<u8>,
}

impl ModelKeys {
    fn new(deployment: &str, id: &ReadModelId) -> Self {
        let mut model = Subspace::from(("counterpoint", deployment)).subspace(&id.tenant.as_str()).into_bytes();
        model.push(b'r');
        model.extend_from_slice(&pack(&(id.slice.as_str(), id.name.as_str())));
        ModelKeys { model }
    }

    /// The prefix of every entry.
    fn entries(&self) -> Vec<u8> {
        let mut key = self.model.clone();
        key.push(b'k');
        key
    }

    fn entry(&self, key: &[u8]) -> Vec<u8> {
        let mut full = self.entries();
        full.extend_from_slice(key);
        full
    }

    fn checkpoint(&self) -> Vec<u8> {
        let mut key = self.model.clone();
        key.push(b'c');
        key
    }
}

/// A checkpoint as stored: the position (16 bytes, big-endian), then the source text (the
/// embedded state's encoding).
fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut bytes = checkpoint.position.get().to_be_bytes().to_vec();
    bytes.extend_from_slice(checkpoint.source.as_bytes());
    bytes
}

fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    let corrupt = || StoreError::Unavailable("a read-model checkpoint in FoundationDB does not decode: the data is damaged".into());
    let (position, source) = bytes.split_at_checked(16).ok_or_else(corrupt)?;
    Ok(Checkpoint {
        position: Position::from_u128(u128::from_be_bytes(position.try_into().map_err(|_| corrupt())?)),
        source: String::from_utf8(source.to_vec()).map_err(|_| corrupt())?,
    })
}


impl FdbState {
    /// Read-model state on `db` under the deployment prefix `prefix` (the event store's, so a
    /// deployment's logs and read models live side by side). The caller has set `db`'s
    /// transaction timeout, as [`open`](Self::open) does.
    pub fn new(db: Arc<Database>, prefix: &str) -> Result<Self, StoreError> {
        if prefix.is_empty() {
            return Err(StoreError::InvalidInput("the FoundationDB key prefix must not be empty".into()));
        }
        Ok(FdbState { db, prefix: prefix.to_string() })
    }

    /// Connects to the cluster the event store's `options` name, under the same prefix, on the
    /// event store's connection.
    pub fn open(options: &FdbOptions) -> Result<Self, StoreError> {
        Self::new(FdbStore::open(options.clone())?.database(), &options.prefix)
    }

    /// The database handle, to share with anything else of this deployment.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    fn keys(&self, id: &ReadModelId) -> ModelKeys {
        ModelKeys::new(&self.prefix, id)
    }

    /// A range of the read model's entries: `[begin, end)`, at most `limit` (`None`: all).
    fn range(begin: KeySelector<'static>, end: Vec<u8>, limit: Option<usize>) -> RangeOption<'static> {
        RangeOption {
            begin,
            end: KeySelector::first_greater_or_equal(end),
            limit,
            mode: StreamingMode::WantAll,
            ..RangeOption::default()
        }
    }
}

#[async_trait]
impl StateStore for FdbState {
    async fn get(&self, id: &ReadModelId, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = &self.keys(id).entry(key);
        self.db
            .run(|trx, _| async move { Ok(trx.get(key, true).await?.map(|v| v.to_vec())) })
            .await
            .map_err(|e| binding("cannot read a read model's state", e))
    }

    async fn scan(&self, id: &ReadModelId, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        // FDB reads a limit of 0 as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        // An `after` past every key with `prefix`: nothing (and no inverted range for FDB).
        if after.is_some_and(|after| after > prefix && !after.starts_with(prefix)) {
            return Ok(Vec::new());
        }
        let keys = self.keys(id);
        let at = keys.entries().len();
        let begin = match scan_start(prefix, after) {
            Bound::Excluded(after) => KeySelector::first_greater_than(keys.entry(after)),
            _ => KeySelector::first_greater_or_equal(keys.entry(prefix)),
        };
        let range = &Self::range(begin, strinc(&keys.entry(prefix)), Some(limit));
        // One transaction, so the scan sees one version of the state, paging through the
        // range until `limit` (`next_range` counts it down).
        self.db
            .run(|trx, _| async move {
                let mut out = fdb_read_range(&trx, range.clone(), true).await?;
                out.truncate(limit);
                Ok(out.into_iter().map(|(key, value)| (key[at..].to_vec(), value)).collect())
            })
            .await
            .map_err(|e| binding("cannot scan a read model's state", e))
    }

    async fn checkpoint(&self, id: &ReadModelId) -> Result<Option<Checkpoint>, StoreError> {
        let key = &self.keys(id).checkpoint();
        let value = self
            .db
            .run(|trx, _| async move { Ok(trx.get(key, true).await?.map(|v| v.to_vec())) })
            .await
            .map_err(|e| binding("cannot read a read model's checkpoint", e))?;
        value.map(|bytes| decode_checkpoint(&bytes)).transpose()
    }

    async fn commit(&self, id: &ReadModelId, from: Option<&Checkpoint>, writes: Writes, to: Checkpoint) -> Result<bool, StoreError> {
        let keys = self.keys(id);
        let checkpoint_key = keys.checkpoint();
        let checkpoint_value = encode_checkpoint(&to);
        if checkpoint_value.len() > MAX_FDB_VALUE {
            return Err(StoreError::LimitExceeded {
                what: "bytes of a read-model checkpoint on FoundationDB (the source query is too long)",
                limit: MAX_FDB_VALUE as u64,
                actual: checkpoint_value.len() as u64,
            });
        }
        // Checked before any transaction starts (FDB would refuse it, and never on retry).
        // A set costs its key and value plus a write conflict range (about the key twice); a
        // clear is a one-key range clear plus its conflict range (about the key four times).
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = writes.into_iter().map(|(key, value)| (keys.entry(&key), value)).collect();
        let mut bytes = 3 * checkpoint_key.len() + checkpoint_value.len();
        for (key, value) in &writes {
            if key.len() > MAX_FDB_KEY {
                return Err(StoreError::LimitExceeded { what: "FoundationDB key size in bytes (a read-model key is too long)", limit: MAX_FDB_KEY as u64, actual: key.len() as u64 });
            }
            if let Some(value) = value
                && value.len() > MAX_FDB_VALUE
            {
                return Err(StoreError::LimitExceeded { what: "FoundationDB value size in bytes (a read-model value)", limit: MAX_FDB_VALUE as u64, actual: value.len() as u64 });
            }
            bytes += value.as_ref().map_or(4 * key.len(), |value| 3 * key.len() + value.len());
        }
        if bytes > MAX_COMMIT_BYTES {
            return Err(StoreError::LimitExceeded {
                what: "bytes one read-model commit writes on FoundationDB (keys in full, values, conflict ranges)",
                limit: MAX_COMMIT_BYTES as u64,
                actual: bytes as u64,
            });
        }
        // Sticky: after a `commit_unknown_result` an attempt may have committed, and every
        // later attempt must know it.
        let maybe_committed = AtomicBool::new(false);
        let (writes, checkpoint_key, checkpoint_value, to, maybe_committed) = (&writes, &checkpoint_key, &checkpoint_value, &to, &maybe_committed);
        self.db
            .run(|trx, maybe| async move {
                if bool::from(maybe) {
                    maybe_committed.store(true, Ordering::Relaxed);
                }
                // Not a snapshot read: a commit by anyone else after this read version makes
                // this transaction conflict, and the next attempt sees their checkpoint.
                let current = trx.get(checkpoint_key, false).await?.map(|v| decode_checkpoint(&v)).transpose().map_err(abort)?;
                if current.as_ref() != from {
                    // An earlier attempt of this very commit may have gone through (the
                    // checkpoint is now exactly `to`): then the batch is applied.
                    let ours = maybe_committed.load(Ordering::Relaxed) && current.as_ref() == Some(to);
                    // The checkpoint moved: a result, not an error, so nothing is retried and
                    // the (read-only) transaction commits nothing.
                    return Ok(ours);
                }
                for (key, value) in writes {
                    match value {
                        Some(value) => trx.set(key, value),
                        None => trx.clear(key),
                    }
                }
                trx.set(checkpoint_key, checkpoint_value);
                Ok(true)
            })
            .await
            .map_err(|e| binding("cannot commit a read model's batch", e))
    }

    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError> {
        let model = self.keys(id).model;
        // Entries and checkpoint share the read model's prefix: one range clear drops both.
        let (begin, end) = (&model, &strinc(&model));
        self.db
            .run(|trx, _| async move {
                trx.clear_range(begin, end);
                Ok(())
            })
            .await
            .map_err(|e| binding("cannot clear a read model's state", e))
    }

    async fn len(&self, id: &ReadModelId) -> Result<u64, StoreError> {
        // FDB keeps no count of a range (there is no O(1) count): read the entries' range and
        // count the keys, a transaction per ~8 MiB of entries (so a large state never runs
        // into FDB's 5 s transaction limit). Not one snapshot: a figure for status displays.
        let entries = self.keys(id).entries();
        let end = strinc(&entries);
        let mut begin = KeySelector::first_greater_or_equal(entries);
        let mut total = 0u64;
        loop {
            let range = &Self::range(begin.clone(), end.clone(), None);
            let (counted, last) = self
                .db
                .run(|trx, _| async move {
                    let (mut counted, mut bytes) = (0u64, 0usize);
                    let mut range = range.clone();
                    let mut iteration = 1;
                    loop {
                        let page = trx.get_range(&range, iteration, true).await?;
                        counted += page.len() as u64;
                        bytes += page.iter().map(|kv| kv.key().len() + kv.value().len()).sum::<usize>();
                        let last = page.last().map(|kv| kv.key().to_vec());
                        match range.next_range(&page) {
                            // More, but this transaction has read enough: go on in the next.
                            Some(_) if bytes >= LEN_PAGE_BYTES => return Ok((counted, last)),
                            Some(next) => range = next,
                            None => return Ok((counted, None)),
                        }
                        iteration += 1;
                    }
                })
                .await
                .map_err(|e| binding("cannot count a read model's keys", e))?;
            total += counted;
            match last {
                Some(last) => begin = KeySelector::first_greater_than(last),
                None => return Ok(total),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Tenant;

    fn id(tenant: &str, slice: &str, name: &str) -> ReadModelId {
        ReadModelId { tenant: Tenant::new(tenant).unwrap(), slice: slice.into(), name: name.into() }
    }

    #[test]
    fn one_read_models_range_holds_no_other() {
        let a = ModelKeys::new("p", &id("t", "s", "n"));
        let b = ModelKeys::new("p", &id("t", "s", "n2"));
        let c = ModelKeys::new("p", &id("t", "sn", ""));
        for other in [&b, &c] {
            assert!(!other.model.starts_with(&a.model) && !a.model.starts_with(&other.model));
        }
        assert!(a.checkpoint().starts_with(&a.model) && !a.checkpoint().starts_with(&a.entries()));
        assert!(a.entry(b"x") < a.entry(b"y") && a.entry(&[0xff]) < strinc(&a.entries()));
        assert!(strinc(&a.entries()) <= strinc(&a.model));
    }

    #[test]
    fn checkpoints_round_trip() {
        let checkpoint = Checkpoint { position: Position::from_u128(1 << 90), source: "{\"items\":[]}".into() };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&checkpoint)).unwrap(), checkpoint);
        assert!(decode_checkpoint(&[0; 3]).is_err());
    }
}
