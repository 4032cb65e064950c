//! Persistent read models: state the host keeps for a slice, so queries answer without
//! replaying the log.
//!
//! A slice declares read models (a name and a source query) and exports `update` (fold a batch
//! of events into the state, through the `read-model-state` import) and `answer` (query the
//! state). Each read model has a key-value namespace of its own in a [`StateStore`] and a
//! checkpoint beside it. One worker per read model and tenant follows the log for the source
//! query, calls `update` with batches of events in a fresh instance, and commits the batch's
//! writes **and** the checkpoint in one transaction: after a crash both are from before the
//! batch or both from after it, so every event is applied exactly once. A commit names the
//! checkpoint it started from, so two workers (two hosts, say) can never both apply a batch.
//!
//! A batch that fails (a trap, an error from the slice) is retried with backoff; the read model
//! stays where it is (skipping an event would leave it wrong) and says why in its status until
//! a fixed version is deployed. A version whose source query differs rebuilds the state from
//! the start of the log; [`ReadModels::rebuild`] does so on request. With [`Leases`] (several
//! hosts on one cluster), a worker follows the log only while its host holds the read model's
//! lease.

mod embedded;
#[cfg(feature = "fdb")]
mod fdb;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::embedded::EmbeddedState;
#[cfg(feature = "fdb")]
pub use self::fdb::FdbState;
pub use self::state::{Checkpoint, MemoryState, ReadModelId, SharedState, StateStore};
use crate::delivery::{Delivery, Feed};
use crate::deploy::Registry;
use crate::leases::Leases;
use crate::runtime::{InvokeError, KvSession};
use crate::store::{Position, Query, ReadOptions, SharedStore, StoreError};

/// Events per `update` call, at most.
const BATCH: usize = 512;
/// The first retry of a failed batch waits this long, each further one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping worker may take to finish the batch it is on.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting query looks at the checkpoint, for commits made by other hosts.
const POLL: Duration = Duration::from_millis(20);
/// How long a query that asks for a position waits for the read model to get there.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("slice {slice} has no read model {name:?}")]
    Unknown { slice: String, name: String },
    #[error("read model {id} has not reached position {wanted} after {waited_ms} ms (it is at {at})")]
    NotCaughtUp { id: String, wanted: Position, at: Position, waited_ms: u128 },
    /// Another worker committed first: this one starts again from the stored checkpoint.
    #[error("read model {0}'s checkpoint moved under this worker")]
    Moved(String),
    #[error("the read model's worker was stopped")]
    Stopped,
}

/// What a worker reports about itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub checkpoint: Position,
    /// Batches that failed and were retried.
    pub failures: u64,
    pub last_error: Option<String>,
    pub running: bool,
    /// Following the log now: on a cluster, this host holds the worker's lease.
    pub active: bool,
}

/// A read model's state, for `counterpoint readmodels list` and the API.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub id: ReadModelId,
    pub checkpoint: Position,
    pub head: Position,
    /// Events of the read model's source after its checkpoint (counted up to
    /// [`LAG_COUNTED_UP_TO`](crate::store::LAG_COUNTED_UP_TO)).
    pub lag: u64,
    /// Keys in its state.
    pub keys: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub running: bool,
    /// Whether this host's worker follows the log now (on a cluster, another host's may).
    pub active: bool,
}

struct Worker {
    source: Query,
    handle: JoinHandle<()>,
    progress: Arc<Mutex<Progress>>,
    /// Asks the worker to stop between batches, never in the middle of a commit.
    stop: watch::Sender<bool>,
}

impl Worker {
    /// Stops the worker at its next safe point and waits for it (aborting it after `STOP_WAIT`).
    async fn end(self) {
        let _ = self.stop.send(true);
        let mut handle = self.handle;
        if tokio::time::timeout(STOP_WAIT, &mut handle).await.is_err() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

/// Runs every deployed read model, and answers their queries.
pub struct ReadModels {
    events: SharedStore,
    state: SharedState,
    registry: Arc<Registry>,
    workers: Mutex<HashMap<ReadModelId, Worker>>,
    /// Every checkpoint a worker commits, for queries waiting to read their writes.
    committed: watch::Sender<u64>,
    /// Per read model, the drops of its state this host has (started, finished): a query with
    /// `at_least` waits out a drop in progress and looks again if one overlapped it.
    clears: watch::Sender<HashMap<ReadModelId, (u64, u64)>>,
    stopped: AtomicBool,
    /// On a cluster, each worker runs only while this host holds its lease.
    leases: std::sync::OnceLock<Leases>,
}

impl Drop for ReadModels {
    fn drop(&mut self) {
        for worker in self.workers.get_mut().expect("workers lock").values() {
            worker.handle.abort();
        }
    }
}

/// The text a checkpoint keeps of the source it was built from.
fn fingerprint(source: &Query) -> String {
    serde_json::to_string(source).expect("queries serialize")
}

impl ReadModels {
    pub fn new(events: SharedStore, state: SharedState, registry: Arc<Registry>) -> Arc<Self> {
        Arc::new(ReadModels {
            events,
            state,
            registry,
            workers: Mutex::default(),
            committed: watch::Sender::new(0),
            clears: watch::Sender::new(HashMap::new()),
            stopped: AtomicBool::new(true),
            leases: std::sync::OnceLock::new(),
        })
    }

    /// Runs each worker only while this host holds its lease (several hosts on one cluster).
    pub fn use_leases(&self, leases: Leases) {
        let _ = self.leases.set(leases);
    }

    /// Starts a worker for every deployed read model, and keeps the set in step with deploys.
    pub fn start(self: &Arc<Self>) {
        self.stopped.store(false, Ordering::SeqCst);
        self.registry.follow(self, |this| {
            if this.stopped.load(Ordering::SeqCst) {
                return false;
            }
            this.reconcile();
            true
        });
    }

    /// Stops every worker and waits until they are gone.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let workers: Vec<Worker> = self.workers.lock().expect("workers lock").drain().map(|(_, w)| w).collect();
        for worker in workers {
            worker.end().await;
        }
    }

    /// Every read model the tenants' slices declare, with its source.
    fn declared(&self) -> Vec<(ReadModelId, Query)> {
        let mut out = Vec::new();
        for tenant in self.registry.tenants() {
            for deployed in self.registry.list(&tenant) {
                for model in &deployed.slice.description().read_models {
                    let id = ReadModelId { tenant: tenant.clone(), slice: deployed.slice.name().into(), name: model.name.clone() };
                    out.push((id, model.query.clone()));
                }
            }
        }
        out
    }

    /// The source query of a deployed read model.
    pub fn source(&self, id: &ReadModelId) -> Result<Query, ReadModelError> {
        let unknown = || ReadModelError::Unknown { slice: id.slice.clone(), name: id.name.clone() };
        let slice = self.registry.get(&id.tenant, &id.slice).ok_or_else(unknown)?;
        let model = slice.description().read_models.iter().find(|m| m.name == id.name).ok_or_else(unknown)?;
        Ok(model.query.clone())
    }

    fn reconcile(self: &Arc<Self>) {
        let wanted: HashMap<ReadModelId, Query> = self.declared().into_iter().collect();
        let mut workers = self.workers.lock().expect("workers lock");
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        workers.retain(|id, worker| {
            let keep = wanted.get(id) == Some(&worker.source) && !worker.handle.is_finished();
            if !keep {
                worker.handle.abort();
            }
            keep
        });
        for (id, source) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = workers.entry(id) {
                let worker = self.spawn(slot.key().clone(), source, None);
                slot.insert(worker);
            }
        }
    }

    /// A worker for `id`. With `rebuild`, it first stops the worker it replaces (if any) and
    /// drops the state, then builds it again from the start of the log.
    fn spawn(self: &Arc<Self>, id: ReadModelId, source: Query, rebuild: Option<Option<Worker>>) -> Worker {
        let progress = Arc::new(Mutex::new(Progress { running: true, ..Default::default() }));
        let (stop, mut stopping) = watch::channel(false);
        let (this, task_id, task_source, task_progress) = (self.clone(), id.clone(), source.clone(), progress.clone());
        let handle = tokio::spawn(async move {
            if let Some(replaced) = rebuild {
                if let Some(old) = replaced {
                    old.end().await;
                }
                if let Err(err) = this.clear(&task_id).await {
                    tracing::error!(read_model = %task_id, "cannot drop the state to rebuild it: {err}");
                    task_progress.lock().expect("progress lock").last_error = Some(err.to_string());
                }
            }
            let mut failures = 0u32;
            let lease_name = format!("readmodel/{task_id}");
            loop {
                // On a cluster, wait for the lease (stopping is safe here), then follow the log
                // while it is held.
                let lease = match this.leases.get() {
                    Some(leases) => tokio::select! {
                        _ = stopping.wait_for(|s| *s) => break,
                        lease = leases.acquire(&lease_name) => Some(lease),
                    },
                    None => None,
                };
                let followed = match lease {
                    Some(Err(err)) => Err(ReadModelError::from(err)),
                    Some(Ok(mut lease)) => tokio::select! {
                        followed = this.follow(&task_id, &task_source, &task_progress, stopping.clone()) => followed,
                        () = lease.lost() => Err(ReadModelError::Moved(task_id.to_string())),
                    },
                    None => this.follow(&task_id, &task_source, &task_progress, stopping.clone()).await,
                };
                task_progress.lock().expect("progress lock").active = false;
                match followed {
                    // Another worker committed first, or this host lost the lease: go on from
                    // the stored checkpoint once the lease is back.
                    Err(ReadModelError::Moved(_)) => tokio::time::sleep(Duration::from_millis(fastrand::u64(1..20))).await,
                    Err(err) => {
                        tracing::error!(read_model = %task_id, "read model worker stopped: {err}");
                        task_progress.lock().expect("progress lock").last_error = Some(err.to_string());
                        // A store that is down: try again from the stored checkpoint, later.
                        failures += 1;
                        tokio::select! {
                            _ = stopping.wait_for(|s| *s) => break,
                            () = tokio::time::sleep(backoff(failures)) => {}
                        }
                    }
                    Ok(()) => break,
                }
            }
            task_progress.lock().expect("progress lock").running = false;
        });
        tracing::info!(read_model = %id, "read model started");
        Worker { source, handle, progress, stop }
    }

    /// The stored checkpoint, or none if the state was built from another source (then the
    /// state is dropped, to be rebuilt from the start).
    async fn checkpoint_for(&self, id: &ReadModelId, source: &Query) -> Result<Option<Checkpoint>, StoreError> {
        let checkpoint = self.state.checkpoint(id).await?;
        match checkpoint {
            Some(c) if c.source != fingerprint(source) => {
                tracing::warn!(read_model = %id, "the source query changed: rebuilding the state");
                self.clear(id).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Follows the log from the checkpoint for good: catches up, then tails.
    /// Follows the log from the checkpoint until `stop` says otherwise: catches up, then tails.
    async fn follow(&self, id: &ReadModelId, source: &Query, progress: &Mutex<Progress>, mut stop: watch::Receiver<bool>) -> Result<(), ReadModelError> {
        progress.lock().expect("progress lock").active = true;
        let fingerprint = fingerprint(source);
        let mut checkpoint = self.checkpoint_for(id, source).await?;
        let after = checkpoint.as_ref().map(|c| c.position);
        progress.lock().expect("progress lock").checkpoint = after.unwrap_or(Position::ZERO);
        let mut events = Feed::new(self.events.subscribe(&id.tenant, source.clone(), after).await?);
        loop {
            let batch = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Ok(()),
                batch = events.next(BATCH) => batch?,
            };
            match self.apply_with_retries(id, &fingerprint, checkpoint.as_ref(), batch, progress, Some(&mut stop)).await {
                Ok(reached) => checkpoint = Some(reached),
                Err(ReadModelError::Stopped) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }

    /// Applies one batch, retrying with backoff while the slice fails.
    async fn apply_with_retries(
        &self,
        id: &ReadModelId,
        fingerprint: &str,
        from: Option<&Checkpoint>,
        batch: Delivery,
        progress: &Mutex<Progress>,
        mut stop: Option<&mut watch::Receiver<bool>>,
    ) -> Result<Checkpoint, ReadModelError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_traced(id, fingerprint, from, batch.clone()).await {
                Ok(checkpoint) => {
                    let mut progress = progress.lock().expect("progress lock");
                    progress.checkpoint = checkpoint.position;
                    progress.last_error = None;
                    return Ok(checkpoint);
                }
                Err(ReadModelError::Invoke(err)) => {
                    tracing::warn!(read_model = %id, attempt, "update failed: {err}");
                    {
                        let mut progress = progress.lock().expect("progress lock");
                        progress.failures += 1;
                        progress.last_error = Some(err.to_string());
                    }
                    match stop.as_deref_mut() {
                        Some(stop) => tokio::select! {
                            _ = stop.wait_for(|s| *s) => return Err(ReadModelError::Stopped),
                            () = tokio::time::sleep(backoff(attempt)) => {}
                        },
                        None => tokio::time::sleep(backoff(attempt)).await,
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// [`apply`](Self::apply) in a span: one read-model batch, with its events and outcome.
    async fn apply_traced(&self, id: &ReadModelId, fingerprint: &str, from: Option<&Checkpoint>, batch: Delivery) -> Result<Checkpoint, ReadModelError> {
        let empty = tracing::field::Empty;
        let span = tracing::info_span!("readmodel.batch", tenant = %id.tenant, slice = id.slice, read_model = id.name,
            events = batch.events.len(), outcome = empty, otel.status_code = empty);
        let applied = tracing::Instrument::instrument(self.apply(id, fingerprint, from, batch), span.clone()).await;
        crate::telemetry::record_outcome(&span, if applied.is_ok() { "ok" } else { "error" });
        applied
    }

    /// Folds `batch` into the state and commits it with the new checkpoint. A batch of host
    /// records only commits the checkpoint alone: a query waiting for a position past them sees
    /// the read model get there.
    async fn apply(&self, id: &ReadModelId, fingerprint: &str, from: Option<&Checkpoint>, batch: Delivery) -> Result<Checkpoint, ReadModelError> {
        let to = Checkpoint { position: batch.reached, source: fingerprint.to_string() };
        let events = batch.events;
        let writes = if events.is_empty() {
            Default::default()
        } else {
            let slice = self
                .registry
                .get(&id.tenant, &id.slice)
                .ok_or_else(|| InvokeError::NotFound(format!("slice {} is no longer deployed", id.slice)))?;
            let session = KvSession::updating(self.state.clone(), id.clone());
            slice.update_read_model(session, &id.name, events).await?.into_writes()
        };
        if !self.state.commit(id, from, writes, to.clone()).await? {
            return Err(ReadModelError::Moved(id.to_string()));
        }
        self.committed.send_modify(|n| *n += 1);
        Ok(to)
    }

    /// Drops the read model's state and builds it again from the start of the log, here and
    /// now; `progress` hears (events applied, events to apply) after every batch. For a host
    /// without running workers (the CLI); a server uses [`rebuild_in_background`](Self::rebuild_in_background).
    pub async fn rebuild(&self, id: &ReadModelId, progress: impl Fn(u64, u64)) -> Result<Position, ReadModelError> {
        let source = self.source(id)?;
        self.clear(id).await?;
        self.replay(id, &source, Some(&progress)).await
    }

    /// Drops the read model's state and checkpoint, counted as a drop in progress meanwhile
    /// (until the end, even if the task is cancelled half-way).
    async fn clear(&self, id: &ReadModelId) -> Result<(), StoreError> {
        struct Finished<'a>(&'a watch::Sender<HashMap<ReadModelId, (u64, u64)>>, &'a ReadModelId);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.send_modify(|clears| clears.entry(self.1.clone()).or_default().1 += 1);
            }
        }
        self.clears.send_modify(|clears| clears.entry(id.clone()).or_default().0 += 1);
        let _finished = Finished(&self.clears, id);
        self.state.clear(id).await
    }

    /// Replaces the read model's worker with one that drops the state and builds it again from
    /// the start of the log; its status shows the progress.
    pub fn rebuild_in_background(self: &Arc<Self>, id: &ReadModelId) -> Result<(), ReadModelError> {
        let source = self.source(id)?;
        let mut workers = self.workers.lock().expect("workers lock");
        let replaced = workers.remove(id);
        let worker = self.spawn(id.clone(), source, Some(replaced));
        workers.insert(id.clone(), worker);
        Ok(())
    }

    /// Applies every event of the read model's source up to the head of the log now (for a
    /// host without running workers) and returns the checkpoint reached.
    pub async fn catch_up(&self, id: &ReadModelId) -> Result<Position, ReadModelError> {
        let source = self.source(id)?;
        self.replay(id, &source, None).await
    }

    /// Applies the events of `source` after the checkpoint up to the head of the log now, in
    /// batches. With `progress`, counts them first and reports after every batch.
    async fn replay(&self, id: &ReadModelId, source: &Query, progress: Option<&dyn Fn(u64, u64)>) -> Result<Position, ReadModelError> {
        let fingerprint = fingerprint(source);
        let mut checkpoint = self.checkpoint_for(id, source).await?;
        let after = checkpoint.as_ref().map(|c| c.position);
        let total = match progress {
            Some(report) => {
                let total = self.count(id, source, after, u64::MAX).await?;
                report(0, total);
                total
            }
            None => 0,
        };
        let mut done = 0u64;
        let tracker = Mutex::new(Progress::default());
        let mut stream = self.events.read(&id.tenant, source.clone(), ReadOptions { after, limit: None, backwards: false }).await?;
        while let Some(batch) = stream.next_batch().await? {
            for chunk in batch.chunks(BATCH) {
                let Some(delivery) = Delivery::of(chunk.to_vec()) else { continue };
                checkpoint = Some(self.apply_with_retries(id, &fingerprint, checkpoint.as_ref(), delivery, &tracker, None).await?);
                done += chunk.len() as u64;
                if let Some(report) = progress {
                    report(done, total);
                }
            }
        }
        Ok(checkpoint.map_or(Position::ZERO, |c| c.position))
    }

    /// Events of `source` after `after`, counted without holding them, up to `cap`.
    async fn count(&self, id: &ReadModelId, source: &Query, after: Option<Position>, cap: u64) -> Result<u64, StoreError> {
        let options = ReadOptions { after, limit: None, backwards: false };
        self.events.read(&id.tenant, source.clone(), options).await?.count_slice_events(cap).await
    }

    /// Answers a query of a read model from its state. With `at_least`, first waits (up to
    /// `wait`) until the state includes every event of its source up to that position — what a
    /// client passes to read its own writes.
    pub async fn query(&self, id: &ReadModelId, params: &[u8], at_least: Option<Position>, wait: Duration) -> Result<Vec<u8>, ReadModelError> {
        let source = self.source(id)?;
        let slice = self.registry.get(&id.tenant, &id.slice).ok_or_else(|| ReadModelError::Unknown { slice: id.slice.clone(), name: id.name.clone() })?;
        let Some(wanted) = at_least else {
            // Without a position to reach, whatever the state holds now (documented: during a
            // rebuild, a part of it).
            let session = KvSession::answering(self.state.clone(), id.clone());
            return Ok(slice.answer_read_model(session, &id.name, params).await?);
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut clears = self.clears.subscribe();
        let drops = |clears: &HashMap<ReadModelId, (u64, u64)>| clears.get(id).copied().unwrap_or_default();
        loop {
            // A drop of this state in progress: wait until it is done, then ask.
            let before = match tokio::time::timeout_at(deadline, clears.wait_for(|c| drops(c).0 == drops(c).1)).await {
                Ok(Ok(idle)) => drops(&idle),
                _ => return Err(ReadModelError::NotCaughtUp { id: id.to_string(), wanted, at: Position::ZERO, waited_ms: wait.as_millis() }),
            };
            self.wait_for(id, &source, wanted, deadline.saturating_duration_since(tokio::time::Instant::now())).await?;
            let session = KvSession::answering(self.state.clone(), id.clone());
            let answer = slice.answer_read_model(session, &id.name, params).await?;
            // A drop that overlapped the answer may have shown a part of the state: look again.
            if drops(&self.clears.borrow()) == before {
                return Ok(answer);
            }
        }
    }

    async fn wait_for(&self, id: &ReadModelId, source: &Query, wanted: Position, wait: Duration) -> Result<(), ReadModelError> {
        let started = tokio::time::Instant::now();
        let mut commits = self.committed.subscribe();
        loop {
            commits.borrow_and_update();
            let at = self.state.checkpoint(id).await?.map_or(Position::ZERO, |c| c.position);
            if at >= wanted {
                return Ok(());
            }
            // Caught up if no event of the source lies between the checkpoint and `wanted`.
            let options = ReadOptions { after: Some(at), limit: Some(1), backwards: false };
            let (next, _) = self.events.read(&id.tenant, source.clone(), options).await?.collect().await?;
            if next.first().is_none_or(|e| e.position > wanted) {
                return Ok(());
            }
            let left = wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(ReadModelError::NotCaughtUp { id: id.to_string(), wanted, at, waited_ms: wait.as_millis() });
            }
            // Woken by this process's commits; another host's are seen by looking again.
            let _ = tokio::time::timeout(left.min(POLL), commits.changed()).await;
        }
    }

    /// Every worker of this process and what it reports (no store access: for metrics).
    pub fn workers(&self) -> Vec<(ReadModelId, Progress)> {
        let workers = self.workers.lock().expect("workers lock");
        workers.iter().map(|(id, w)| (id.clone(), w.progress.lock().expect("progress lock").clone())).collect()
    }

    /// Every read model the tenant's slices declare: checkpoint, lag, keys, and (when its
    /// worker runs in this process) failures.
    pub async fn status(&self, tenant: &crate::store::Tenant) -> Result<Vec<Status>, StoreError> {
        let head = self.events.head(tenant).await?;
        let mut out = Vec::new();
        for (id, source) in self.declared().into_iter().filter(|(id, _)| &id.tenant == tenant) {
            let progress = self.workers.lock().expect("workers lock").get(&id).map(|w| w.progress.lock().expect("progress lock").clone());
            let progress = progress.unwrap_or_default();
            let checkpoint = self.state.checkpoint(&id).await?.filter(|c| c.source == fingerprint(&source)).map(|c| c.position);
            let lag = self.count(&id, &source, checkpoint, crate::store::LAG_COUNTED_UP_TO).await?;
            let keys = self.state.len(&id).await?;
            out.push(Status {
                checkpoint: checkpoint.unwrap_or(Position::ZERO),
                head,
                lag,
                keys,
                failures: progress.failures,
                last_error: progress.last_error,
                running: progress.running,
                active: progress.active,
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}
