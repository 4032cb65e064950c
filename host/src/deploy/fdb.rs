//! The slice catalog on FoundationDB (cargo feature `fdb`): every host of a deployment loads
//! its slices from the cluster and follows its changes, so a deploy on one host reaches all.
//!
//! Layout, under `("counterpoint", <deployment prefix>, "@catalog")` (no tenant name holds `@`):
//!
//! ```text
//! ("component", <sha256>, <chunk>)   a component's bytes, in chunks of at most 90,000 bytes
//! ("size", <sha256>)                 its length (8 bytes, big-endian): written last, so a
//!                                    component is visible only once every chunk is there
//! ("slice", <tenant>, <name>)        what the tenant runs under that name (JSON: name, hash, deployed_at)
//! ("version",)                       a counter every manifest change adds to; hosts watch it
//! ```
//!
//! Components are content-addressed and never change, so one is written and read over several
//! transactions (a 64 MiB component is far over FDB's 10 MB per transaction). A manifest entry
//! is one key per slice: two hosts deploying different slices of a tenant at once do not
//! overwrite each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use foundationdb::options::MutationType;
use foundationdb::tuple::Subspace;
use foundationdb::{Database, RangeOption};
use tokio::sync::watch;

use super::catalog::{Catalog, ManifestEntry};
use super::DeployError;
use crate::store::{fdb_binding, fdb_read_range, fdb_strinc, StoreError, Tenant};

const CHUNK: usize = 90_000;
/// Chunks written or read per transaction (about 4.5 MB, well inside FDB's limits).
const CHUNKS_PER_TRANSACTION: usize = 50;

pub struct FdbCatalog {
    db: Arc<Database>,
    catalog: Subspace,
    version: watch::Sender<u64>,
    /// Whether a task follows the version key now: it runs while someone holds a
    /// [`Catalog::changes`] receiver, and a later `changes` starts a new one.
    following: Arc<Mutex<bool>>,
}

fn failed(err: StoreError) -> DeployError {
    DeployError::Io(err.to_string())
}

impl FdbCatalog {
    /// The catalog of the deployment `prefix` on `db` (shared with the event store and the rest).
    pub fn new(db: Arc<Database>, prefix: &str) -> Self {
        FdbCatalog { db, catalog: Subspace::from(("counterpoint", prefix, "@catalog")), version: watch::Sender::new(0), following: Arc::default() }
    }

    fn version_key(&self) -> Vec<u8> {
        self.catalog.pack(&("version",))
    }

    /// Changes a manifest entry and the version in one transaction.
    async fn change(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), DeployError> {
        let (key, value, version) = (&key, &value, &self.version_key());
        self.db
            .run(|trx, _| async move {
                match value {
                    Some(value) => trx.set(key, value),
                    None => trx.clear(key),
                }
                trx.atomic_op(version, &1i64.to_le_bytes(), MutationType::Add);
                Ok(())
            })
            .await
            .map_err(|e| failed(fdb_binding("cannot change the slice catalog", e)))
    }

    /// Watches the version key and tells `changes` receivers, re-arming after every change.
    fn follow(&self) {
        let (db, key, version, following) = (self.db.clone(), self.version_key(), self.version.clone(), self.following.clone());
        tokio::spawn(async move {
            let key = &key;
            let mut seen: Option<Vec<u8>> = None;
            loop {
                // The value and the watch come from one transaction: a change between two
                // watches shows as a new value.
                let armed = db.run(|trx, _| async move { Ok((trx.get(key, false).await?.map(|v| v.to_vec()), trx.watch(key))) }).await;
                let fired = match armed {
                    Ok((value, watch)) => {
                        if value != seen {
                            seen = value;
                            version.send_modify(|n| *n += 1);
                        }
                        watch.await.is_ok()
                    }
                    Err(err) => {
                        tracing::warn!("cannot watch the slice catalog: {}", fdb_binding("watch", err));
                        false
                    }
                };
                {
                    // Decided under the lock `changes` takes: a receiver made meanwhile either
                    // keeps this task going or finds it gone and starts another.
                    let mut following = following.lock().expect("catalog lock");
                    if version.is_closed() {
                        *following = false;
                        return;
                    }
                }
                if !fired {
                    // A watch can end with an error (too many watches, a recovery): look again
                    // after a pause.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
}

#[async_trait]
impl Catalog for FdbCatalog {
    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, DeployError> {
        let size_key = &self.catalog.pack(&("size", hash));
        let size = self
            .db
            .run(|trx, _| async move { Ok(trx.get(size_key, true).await?.map(|v| v.to_vec())) })
            .await
            .map_err(|e| failed(fdb_binding("cannot read the slice catalog", e)))?;
        let Some(size) = size else { return Ok(None) };
        let size = u64::from_be_bytes(size.as_slice().try_into().map_err(|_| DeployError::Io(format!("component {hash}: a damaged size")))?);
        let mut wasm = Vec::with_capacity(size as usize);
        let chunks = (size as usize).div_ceil(CHUNK);
        for first in (0..chunks).step_by(CHUNKS_PER_TRANSACTION) {
            let last = (first + CHUNKS_PER_TRANSACTION).min(chunks);
            let range = &RangeOption::from((self.catalog.pack(&("component", hash, first as i64)), self.catalog.pack(&("component", hash, last as i64))));
            let part = self
                .db
                .run(|trx, _| async move { Ok(fdb_read_range(&trx, range.clone(), true).await?) })
                .await
                .map_err(|e| failed(fdb_binding("cannot read a component from the slice catalog", e)))?;
            for (_, chunk) in part {
                wasm.extend_from_slice(&chunk);
            }
        }
        if wasm.len() as u64 != size {
            return Err(DeployError::Io(format!("component {hash} in the slice catalog is incomplete ({} of {size} bytes)", wasm.len())));
        }
        Ok(Some(wasm))
    }

    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), DeployError> {
        if self.component(hash).await?.is_some() {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = wasm.chunks(CHUNK).collect();
        for (group, part) in chunks.chunks(CHUNKS_PER_TRANSACTION).enumerate() {
            let keyed: Vec<(Vec<u8>, &[u8])> = part
                .iter()
                .enumerate()
                .map(|(i, chunk)| (self.catalog.pack(&("component", hash, (group * CHUNKS_PER_TRANSACTION + i) as i64)), *chunk))
                .collect();
            let keyed = &keyed;
            self.db
                .run(|trx, _| async move {
                    for (key, chunk) in keyed {
                        trx.set(key, chunk);
                    }
                    Ok(())
                })
                .await
                .map_err(|e| failed(fdb_binding("cannot write a component to the slice catalog", e)))?;
        }
        let (size_key, size) = (&self.catalog.pack(&("size", hash)), &(wasm.len() as u64).to_be_bytes());
        self.db
            .run(|trx, _| async move {
                trx.set(size_key, size);
                Ok(())
            })
            .await
            .map_err(|e| failed(fdb_binding("cannot write a component to the slice catalog", e)))
    }

    async fn manifest(&self, tenant: &Tenant) -> Result<Vec<ManifestEntry>, DeployError> {
        let prefix = self.catalog.subspace(&("slice", tenant.as_str())).into_bytes();
        let range = &RangeOption::from((prefix.clone(), fdb_strinc(&prefix)));
        let values = self
            .db
            .run(|trx, _| async move { Ok(fdb_read_range(&trx, range.clone(), true).await?) })
            .await
            .map_err(|e| failed(fdb_binding("cannot read the slice catalog", e)))?;
        values
            .iter()
            .map(|(_, v)| serde_json::from_slice(v).map_err(|e| DeployError::Io(format!("a manifest entry of tenant {tenant} is damaged: {e}"))))
            .collect()
    }

    async fn put_slice(&self, tenant: &Tenant, entry: &ManifestEntry) -> Result<(), DeployError> {
        let key = self.catalog.pack(&("slice", tenant.as_str(), entry.name.as_str()));
        self.change(key, Some(serde_json::to_vec(entry).expect("entries encode"))).await
    }

    async fn remove_slice(&self, tenant: &Tenant, name: &str) -> Result<(), DeployError> {
        self.change(self.catalog.pack(&("slice", tenant.as_str(), name)), None).await
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        let mut following = self.following.lock().expect("catalog lock");
        let receiver = self.version.subscribe();
        if !*following {
            *following = true;
            self.follow();
        }
        Some(receiver)
    }
}
