//! Leases: when several hosts share one cluster, exactly one of them runs each background
//! worker (an automation, a read model).
//!
//! A lease is a value in a shared [`LeaseStore`]: the holder's id and a nonce. The holder renews
//! it every third of the lease's time to live by swapping in a new nonce, and gives it up by
//! clearing it. A host that wants it watches the value: when it has not changed for a whole time
//! to live (measured on the watcher's own clock, so hosts need no synchronized clocks), its
//! holder is taken to be dead and the watcher swaps in its own value. Every change is a
//! compare-and-swap, so two hosts can never both take a lease. A holder that cannot renew (its
//! swap fails, or the store is unreachable for a time to live) is told it has lost the lease and
//! stops its worker.
//!
//! Leases bound *who runs* a worker; they are not what keeps results right. Checkpoints are
//! guarded by their own conditions (a checkpoint names the one it replaces), so even a holder
//! that has not yet noticed its loss cannot apply or advance anything twice.

#[cfg(feature = "fdb")]
mod fdb;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(feature = "fdb")]
pub use self::fdb::FdbLeases;
use crate::store::StoreError;

/// Who holds a lease, and the nonce of its last renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseValue {
    pub holder: String,
    pub nonce: u64,
}

/// Where leases live: the cluster's shared store.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    async fn get(&self, name: &str) -> Result<Option<LeaseValue>, StoreError>;

    /// Sets the lease to `new` (`None` clears it) if it is `expected` now, atomically; says
    /// whether it did.
    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>) -> Result<bool, StoreError>;
}

/// Leases in memory: for tests, and for several workers sets in one process.
#[derive(Default)]
pub struct MemoryLeases {
    values: Mutex<HashMap<String, LeaseValue>>,
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn get(&self, name: &str) -> Result<Option<LeaseValue>, StoreError> {
        Ok(self.values.lock().expect("leases lock").get(name).cloned())
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>) -> Result<bool, StoreError> {
        let mut values = self.values.lock().expect("leases lock");
        if values.get(name) != expected {
            return Ok(false);
        }
        match new {
            Some(value) => values.insert(name.to_string(), value.clone()),
            None => values.remove(name),
        };
        Ok(true)
    }
}

/// This host's side of the leases: its id, and how long a silent holder keeps a lease.
#[derive(Clone)]
pub struct Leases {
    store: Arc<dyn LeaseStore>,
    holder: String,
    ttl: Duration,
}

impl Leases {
    /// `holder` must be unique per running host (the default: hostname, pid and a random part).
    pub fn new(store: Arc<dyn LeaseStore>, holder: impl Into<String>, ttl: Duration) -> Self {
        Leases { store, holder: holder.into(), ttl }
    }

    /// A holder id for this process: unique across hosts and restarts.
    pub fn holder_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}:{:016x}", host.trim(), std::process::id(), fastrand::u64(..))
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Waits until this host holds lease `name`, then keeps renewing it until the [`Lease`] is
    /// dropped (which gives it up) or lost.
    pub async fn acquire(&self, name: &str) -> Result<Lease, StoreError> {
        let mut watching: Option<(LeaseValue, Instant)> = None;
        loop {
            let current = self.store.get(name).await?;
            let free = match &current {
                None => true,
                Some(value) => match &watching {
                    Some((seen, since)) if seen == value => since.elapsed() >= self.ttl,
                    _ => {
                        watching = Some((value.clone(), Instant::now()));
                        false
                    }
                },
            };
            if free {
                let mine = LeaseValue { holder: self.holder.clone(), nonce: fastrand::u64(..) };
                if self.store.swap(name, current.as_ref(), Some(&mine)).await? {
                    tracing::info!(lease = name, holder = self.holder, "lease taken");
                    return Ok(Lease::start(self.clone(), name.to_string(), mine));
                }
            }
            tokio::time::sleep(self.ttl / 4).await;
        }
    }
}

/// A lease this host holds. Dropping it gives the lease up.
pub struct Lease {
    lost: watch::Receiver<bool>,
    renewal: JoinHandle<()>,
    release: Option<(Leases, String, Arc<Mutex<LeaseValue>>)>,
}

impl Lease {
    fn start(leases: Leases, name: String, value: LeaseValue) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let current = Arc::new(Mutex::new(value));
        let (task_leases, task_name, task_current) = (leases.clone(), name.clone(), current.clone());
        let renewal = tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::time::sleep(task_leases.ttl / 3).await;
                let held = task_current.lock().expect("lease lock").clone();
                let next = LeaseValue { holder: held.holder.clone(), nonce: held.nonce.wrapping_add(1) };
                match task_leases.store.swap(&task_name, Some(&held), Some(&next)).await {
                    Ok(true) => {
                        *task_current.lock().expect("lease lock") = next;
                        renewed = Instant::now();
                    }
                    Ok(false) => {
                        tracing::warn!(lease = task_name, "lease lost: another host holds it");
                        break;
                    }
                    // Others take the lease once it has been silent for a time to live.
                    Err(err) if renewed.elapsed() >= task_leases.ttl => {
                        tracing::warn!(lease = task_name, "lease lost: cannot renew it: {err}");
                        break;
                    }
                    Err(err) => tracing::warn!(lease = task_name, "cannot renew the lease yet: {err}"),
                }
            }
            let _ = lost_tx.send(true);
        });
        Lease { lost, renewal, release: Some((leases, name, current)) }
    }

    /// Resolves when the lease is lost (never, while it is held).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Stops renewing without giving the lease up, as a host that dies does (for tests).
    pub fn abandon(mut self) {
        self.renewal.abort();
        self.release = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
        if let Some((leases, name, current)) = self.release.take() {
            let held = current.lock().expect("lease lock").clone();
            // Give it up at once, so another host need not wait a time to live.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = leases.store.swap(&name, Some(&held), None).await;
                });
            }
        }
    }
}

/// Runs `work` while holding lease `name` (or freely, without leases): waits for the lease,
/// then runs until `work` ends or the lease is lost; in the second case, says so with `None`.
pub async fn while_holding<T>(leases: Option<&Leases>, name: &str, work: impl std::future::Future<Output = T>) -> Result<Option<T>, StoreError> {
    let Some(leases) = leases else { return Ok(Some(work.await)) };
    let mut lease = leases.acquire(name).await?;
    tokio::select! {
        out = work => Ok(Some(out)),
        () = lease.lost() => Ok(None),
    }
}
