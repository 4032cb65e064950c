//! Leases on FoundationDB (cargo feature `fdb`): one key per lease (`@` keeps it apart from
//! every tenant, whose names cannot hold it),
//! `("counterpoint", <deployment prefix>, "@lease", <name>)`, whose value is the nonce (8 bytes,
//! big-endian) then the holder's id. A swap is one transaction that reads the key
//! **non-snapshot** and writes it only if it holds the expected value: of two hosts swapping
//! from the same value, FDB's conflict check lets exactly one commit; the other's retry reads
//! the winner's value and reports `false`.
//!
//! Every lease transaction carries FDB's `timeout` option set to the caller's `within` (a third of
//! the lease's time to live at most), not the database's default transaction timeout: a renewal
//! that cannot reach the cluster fails in time for its holder to stop its worker before another
//! host may take the lease over.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use foundationdb::options::TransactionOption;
use foundationdb::tuple::Subspace;
use foundationdb::Database;

use super::{LeaseStore, LeaseValue};
use crate::store::{fdb_binding, StoreError};

pub struct FdbLeases {
    db: Arc<Database>,
    leases: Subspace,
}

impl FdbLeases {
    /// Leases of the deployment `prefix` on `db` (shared with the event store and the rest).
    pub fn new(db: Arc<Database>, prefix: &str) -> Self {
        FdbLeases { db, leases: Subspace::from(("counterpoint", prefix, "@lease")) }
    }

    fn key(&self, name: &str) -> Vec<u8> {
        self.leases.pack(&name)
    }
}

/// FDB's `timeout` option for `within`: at least 1 ms (0 would mean no timeout at all).
fn timeout_ms(within: Duration) -> i32 {
    i32::try_from(within.as_millis()).unwrap_or(i32::MAX).max(1)
}

fn encode(value: &LeaseValue) -> Vec<u8> {
    let mut bytes = value.nonce.to_be_bytes().to_vec();
    bytes.extend_from_slice(value.holder.as_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<LeaseValue> {
    let (nonce, holder) = bytes.split_at_checked(8)?;
    Some(LeaseValue { nonce: u64::from_be_bytes(nonce.try_into().ok()?), holder: String::from_utf8(holder.to_vec()).ok()? })
}

#[async_trait]
impl LeaseStore for FdbLeases {
    async fn get(&self, name: &str, within: Duration) -> Result<Option<LeaseValue>, StoreError> {
        let (key, timeout) = (&self.key(name), timeout_ms(within));
        let value = self
            .db
            .run(|trx, _| async move {
                // Measured from the transaction's creation, across the retry loop's attempts.
                trx.set_option(TransactionOption::Timeout(timeout))?;
                Ok(trx.get(key, true).await?.map(|v| v.to_vec()))
            })
            .await
            .map_err(|e| fdb_binding("cannot read a lease", e))?;
        // A value that does not decode is no one's: it can be taken.
        Ok(value.and_then(|bytes| decode(&bytes)))
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, within: Duration) -> Result<bool, StoreError> {
        let (key, timeout) = (&self.key(name), timeout_ms(within));
        let new_bytes = &new.map(encode);
        self.db
            .run(|trx, maybe_committed| async move {
                trx.set_option(TransactionOption::Timeout(timeout))?;
                let current = trx.get(key, false).await?.and_then(|v| decode(&v));
                if current.as_ref() != expected {
                    // After an unknown result, an earlier attempt may have made the swap.
                    return Ok(bool::from(maybe_committed) && current.as_ref() == new);
                }
                match new_bytes {
                    Some(bytes) => trx.set(key, bytes),
                    None => trx.clear(key),
                }
                Ok(true)
            })
            .await
            .map_err(|e| fdb_binding("cannot change a lease", e))
    }
}
