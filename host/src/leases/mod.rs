//! Leases: when several hosts share one cluster, exactly one of them runs each background
//! worker (an automation, a read model).
//!
//! A lease is a value in a shared [`LeaseStore`]: the holder's id and a nonce. The holder renews
//! it every third of the lease's time to live (TTL) by swapping in a new nonce, and gives it up by
//! clearing it. A host that wants it watches the value: when it has not changed for a whole TTL
//! (measured on the watcher's own clock, so hosts need no synchronized clocks), its holder is
//! taken to be dead and the watcher swaps in its own value. Every change is a compare-and-swap,
//! so two hosts can never both take a lease.
//!
//! **When a holder must give up.** A value written by a swap that *started* at instant `s` (on the
//! holder's clock) was committed after `s`, so every watcher first saw it after `s` and cannot take
//! the lease before `s + TTL`. The holder therefore counts its lease as good until `s + 2/3 TTL`
//! only: it renews from `s + TTL/3` on, every call to the store bounded to a third of the TTL
//! (and to what is left of that window), and if no renewal has succeeded by `s + 2/3 TTL` — the
//! store hangs, fails, or answers that another host holds the lease — it is told it has lost the
//! lease and stops its worker, a third of the TTL before anyone else can start one.
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
///
/// Every call gets `within`: the store should give up (with an error) once that much time has
/// passed, as an answer that comes later is of no use to the lease protocol. [`Leases`] also
/// drops a call that overruns it, so a store that cannot bound its own calls is still safe.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    async fn get(&self, name: &str, within: Duration) -> Result<Option<LeaseValue>, StoreError>;

    /// Sets the lease to `new` (`None` clears it) if it is `expected` now, atomically; says
    /// whether it did.
    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, within: Duration) -> Result<bool, StoreError>;
}

/// Leases in memory: for tests, and for several workers sets in one process.
#[derive(Default)]
pub struct MemoryLeases {
    values: Mutex<HashMap<String, LeaseValue>>,
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    async fn get(&self, name: &str, _within: Duration) -> Result<Option<LeaseValue>, StoreError> {
        Ok(self.values.lock().expect("leases lock").get(name).cloned())
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, _within: Duration) -> Result<bool, StoreError> {
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

    /// The longest any one call to the store may take: a third of the time to live.
    fn call_limit(&self) -> Duration {
        self.ttl / 3
    }

    async fn get(&self, name: &str, within: Duration) -> Result<Option<LeaseValue>, StoreError> {
        bounded(within, self.store.get(name, within)).await
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, within: Duration) -> Result<bool, StoreError> {
        bounded(within, self.store.swap(name, expected, new, within)).await
    }

    /// Waits until this host holds lease `name`, then keeps renewing it until the [`Lease`] is
    /// dropped (which gives it up) or lost. A store that fails or does not answer is asked again
    /// (it is logged): this waits for as long as it takes.
    pub async fn acquire(&self, name: &str) -> Result<Lease, StoreError> {
        let within = self.call_limit();
        // The value being watched, and since when (on this host's clock).
        let mut watching: Option<(LeaseValue, Instant)> = None;
        // A swap of ours whose outcome is unknown (it failed or overran): the value it wrote
        // and when it started.
        let mut unsure: Option<(LeaseValue, Instant)> = None;
        loop {
            let current = match self.get(name, within).await {
                Ok(current) => current,
                Err(err) => {
                    tracing::warn!(lease = name, "cannot read the lease: {err}");
                    tokio::time::sleep(self.ttl / 4).await;
                    continue;
                }
            };
            if let Some((mine, started)) = unsure.take()
                && current.as_ref() == Some(&mine)
            {
                // That swap went through after all: the lease is ours since it started.
                tracing::info!(lease = name, holder = self.holder, "lease taken");
                return Ok(Lease::start(self.clone(), name.to_string(), mine, started));
            }
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
                let started = Instant::now();
                match self.swap(name, current.as_ref(), Some(&mine), within).await {
                    Ok(true) => {
                        tracing::info!(lease = name, holder = self.holder, "lease taken");
                        return Ok(Lease::start(self.clone(), name.to_string(), mine, started));
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(lease = name, "cannot take the lease: {err}");
                        unsure = Some((mine, started));
                    }
                }
            }
            tokio::time::sleep(self.ttl / 4).await;
        }
    }
}

/// `call`, or a `StoreError::Unavailable` once `within` has passed.
async fn bounded<T>(within: Duration, call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(within, call).await {
        Ok(answer) => answer,
        Err(_) => Err(StoreError::Unavailable(format!("the lease store did not answer within {} ms", within.as_millis()))),
    }
}

/// A lease this host holds. Dropping it gives the lease up.
pub struct Lease {
    lost: watch::Receiver<bool>,
    renewal: JoinHandle<()>,
    release: Option<(Leases, String, Arc<Mutex<LeaseValue>>)>,
}

impl Lease {
    /// Starts renewing `value`, which a swap that started at `written` put in the store.
    fn start(leases: Leases, name: String, value: LeaseValue, written: Instant) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let current = Arc::new(Mutex::new(value));
        let (task_leases, task_name, task_current) = (leases.clone(), name.clone(), current.clone());
        let renewal = tokio::spawn(async move {
            let (ttl, name) = (task_leases.ttl, task_name.as_str());
            let mut written = written;
            'held: loop {
                tokio::time::sleep_until((written + ttl / 3).into()).await;
                // Others can take the lease from `written + ttl` on: stop well before that.
                let deadline = written + ttl * 2 / 3;
                let held = task_current.lock().expect("lease lock").clone();
                let next = LeaseValue { holder: held.holder.clone(), nonce: held.nonce.wrapping_add(1) };
                // When the first attempt whose outcome is unknown started.
                let mut unsure: Option<Instant> = None;
                loop {
                    let started = Instant::now();
                    let Some(left) = deadline.checked_duration_since(started).filter(|left| !left.is_zero()) else {
                        tracing::warn!(lease = name, "lease lost: no renewal succeeded within two thirds of its time to live");
                        break 'held;
                    };
                    let within = left.min(task_leases.call_limit());
                    let renewed = match task_leases.swap(name, Some(&held), Some(&next), within).await {
                        Ok(true) => Some(started),
                        // An earlier attempt may have made this very swap.
                        Ok(false) if unsure.is_some() => match task_leases.get(name, within.min(deadline.saturating_duration_since(Instant::now()))).await {
                            Ok(Some(value)) if value == next => unsure,
                            Ok(_) => {
                                tracing::warn!(lease = name, "lease lost: another host holds it");
                                break 'held;
                            }
                            Err(err) => {
                                tracing::warn!(lease = name, "cannot renew the lease yet: {err}");
                                None
                            }
                        },
                        Ok(false) => {
                            tracing::warn!(lease = name, "lease lost: another host holds it");
                            break 'held;
                        }
                        Err(err) => {
                            tracing::warn!(lease = name, "cannot renew the lease yet: {err}");
                            unsure.get_or_insert(started);
                            None
                        }
                    };
                    if let Some(at) = renewed {
                        *task_current.lock().expect("lease lock") = next;
                        written = at;
                        continue 'held;
                    }
                    // A short pause before trying again, never past the deadline.
                    tokio::time::sleep((ttl / 12).min(deadline.saturating_duration_since(Instant::now()))).await;
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
                    let _ = leases.swap(&name, Some(&held), None, leases.call_limit()).await;
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
