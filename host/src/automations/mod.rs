//! Automations: background workers that follow the log and react.
//!
//! Every automation a deployed slice declares (a name and a query) gets one worker per tenant.
//! The worker follows the log for its query from a **durable checkpoint** kept in the store, in
//! position order, and asks the slice's `react` what to do about each event: commands to run,
//! which the CommandRunner runs like any other. The checkpoint moves only after an event's work
//! is done (at least once: after a crash the events since the last checkpoint are seen again,
//! so reactions and the commands they run must tolerate that). A failing event is retried with
//! exponential backoff; after `max_failures` it goes on the automation's **dead-letter list**
//! and the worker goes on. Dead letters can be listed, retried and skipped.
//!
//! Checkpoints, dead letters and their resolutions are events in the tenant's own log (types
//! `counterpoint.*`, tagged `automation:<slice>/<name>`), so they are as durable as the log and
//! work on every backend. A checkpoint is appended under the condition that no other checkpoint
//! of the automation landed since the one the worker read: two workers can never both advance it.
//!
//! On redeploy a worker picks up the new version at its next event; if the automation's query
//! changed, it restarts from its checkpoint; if the automation is gone, it stops. With
//! [`Leases`] (several hosts on one cluster), a worker follows the log only while its host holds
//! the automation's lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::delivery::Feed;
use crate::deploy::Registry;
use crate::leases::{while_holding, Leases};
use crate::runner::CommandRunner;
use crate::runtime::{Access, InvokeError, ReadAppender};
use crate::store::{AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SequencedEvent, SharedStore, StoreError, Tenant};

pub const CHECKPOINT_EVENT: &str = "counterpoint.checkpoint";
pub const DEAD_LETTER_EVENT: &str = "counterpoint.dead-letter";
pub const RESOLVED_EVENT: &str = "counterpoint.dead-letter-resolved";

/// Checkpoint at least this often while events keep coming.
const CHECKPOINT_EVERY: u64 = 256;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Failures of one event before it becomes a dead letter.
    pub max_failures: u32,
    /// The first retry waits this long, each further one twice as long (at most 30 s).
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_failures: 5, backoff: Duration::from_millis(100) }
    }
}

/// One automation of one slice of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AutomationId {
    pub tenant: Tenant,
    pub slice: String,
    pub name: String,
}

impl AutomationId {
    fn tag(&self) -> String {
        format!("automation:{}/{}", self.slice, self.name)
    }

    fn query(&self, event_type: &str) -> Query {
        Query::item(QueryItem::types([event_type]).with_tag(self.tag()))
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointRecord {
    /// Decimal: MessagePack has no 128-bit integers.
    position: String,
}

#[derive(Serialize, Deserialize)]
struct DeadLetterRecord {
    position: String,
    error: String,
    attempts: u32,
}

#[derive(Serialize, Deserialize)]
struct ResolvedRecord {
    dead_letter: String,
    how: String,
}

/// What a worker reports about itself.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    pub checkpoint: Position,
    pub failures: u64,
    /// Dead letters not yet retried or skipped.
    pub dead_letters: u64,
    pub last_error: Option<String>,
    pub running: bool,
    /// Following the log now: on a cluster, this host holds the automation's lease.
    pub active: bool,
}

/// An automation's state, for `counterpoint automations` and the API.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub id: AutomationId,
    pub checkpoint: Position,
    pub head: Position,
    /// Events of the automation's query after its checkpoint (counted up to
    /// [`LAG_COUNTED_UP_TO`](crate::store::LAG_COUNTED_UP_TO)).
    pub lag: u64,
    #[serde(flatten)]
    pub progress: Progress,
}

/// An event an automation gave up on.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// The position of the dead-letter record; retry and skip name it.
    pub id: Position,
    /// The event that failed.
    pub position: Position,
    pub error: String,
    pub attempts: u32,
}

fn position_of(text: &str) -> Result<Position, StoreError> {
    text.parse::<u128>().map(Position::from_u128).map_err(|_| StoreError::Corrupt {
        dir: Default::default(),
        detail: format!("an automation record holds {text:?}, not a position"),
    })
}

fn record<T: Serialize>(event_type: &str, id: &AutomationId, value: &T) -> Event {
    let mut event = Event::new(event_type).tag(id.tag());
    event.data = rmp_serde::to_vec_named(value).expect("records encode");
    event
}

fn decode<T: for<'de> Deserialize<'de>>(event: &SequencedEvent) -> Result<T, StoreError> {
    rmp_serde::from_slice(&event.event.data).map_err(|e| StoreError::Corrupt {
        dir: Default::default(),
        detail: format!("{} at {} does not decode: {e}", event.event.event_type, event.position),
    })
}

/// Rewrites the positions an automation's record holds (checkpoints, dead letters and their
/// resolutions) with `map`, for `counterpoint import`: positions are the backend's own, so a record
/// moved to another log must name the moved events. Other events are left as they are.
pub fn translate_record(event: &mut SequencedEvent, map: impl Fn(Position) -> Position) -> Result<(), StoreError> {
    let moved = |text: &str| position_of(text).map(|p| map(p).get().to_string());
    let data = match event.event.event_type.as_str() {
        CHECKPOINT_EVENT => {
            let record: CheckpointRecord = decode(event)?;
            rmp_serde::to_vec_named(&CheckpointRecord { position: moved(&record.position)? })
        }
        DEAD_LETTER_EVENT => {
            let record: DeadLetterRecord = decode(event)?;
            rmp_serde::to_vec_named(&DeadLetterRecord { position: moved(&record.position)?, ..record })
        }
        RESOLVED_EVENT => {
            let record: ResolvedRecord = decode(event)?;
            rmp_serde::to_vec_named(&ResolvedRecord { dead_letter: moved(&record.dead_letter)?, ..record })
        }
        _ => return Ok(()),
    };
    event.event.data = data.expect("records encode");
    Ok(())
}

struct Worker {
    query: Query,
    handle: JoinHandle<()>,
    progress: Arc<Mutex<Progress>>,
}

/// Runs every deployed automation.
pub struct Automations {
    store: SharedStore,
    registry: Arc<Registry>,
    runner: CommandRunner,
    policy: RetryPolicy,
    workers: Mutex<HashMap<AutomationId, Worker>>,
    /// Set by `stop`: no worker starts until `start` again.
    stopped: std::sync::atomic::AtomicBool,
    /// On a cluster, each worker runs only while this host holds its lease.
    leases: std::sync::OnceLock<Leases>,
}

impl Drop for Automations {
    fn drop(&mut self) {
        for worker in self.workers.get_mut().expect("workers lock").values() {
            worker.handle.abort();
        }
    }
}

impl Automations {
    pub fn new(store: SharedStore, registry: Arc<Registry>, runner: CommandRunner, policy: RetryPolicy) -> Arc<Self> {
        Arc::new(Automations { store, registry, runner, policy, workers: Mutex::default(), stopped: Default::default(), leases: Default::default() })
    }

    /// Runs each worker only while this host holds its lease (several hosts on one cluster).
    pub fn use_leases(&self, leases: Leases) {
        let _ = self.leases.set(leases);
    }

    /// Starts a worker for every deployed automation, and keeps the set in step with deploys.
    pub fn start(self: &Arc<Self>) {
        self.stopped.store(false, std::sync::atomic::Ordering::SeqCst);
        self.registry.follow(self, |this| {
            if this.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            this.reconcile();
            true
        });
    }

    /// Stops every worker and waits until they are gone (their checkpoints stay where they are).
    pub async fn stop(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        let workers: Vec<Worker> = self.workers.lock().expect("workers lock").drain().map(|(_, w)| w).collect();
        for worker in workers {
            worker.handle.abort();
            let _ = worker.handle.await;
        }
    }

    fn reconcile(self: &Arc<Self>) {
        let mut wanted: HashMap<AutomationId, Query> = HashMap::new();
        for tenant in self.registry.tenants() {
            for deployed in self.registry.list(&tenant) {
                for automation in &deployed.slice.description().automations {
                    let id = AutomationId { tenant: tenant.clone(), slice: deployed.slice.name().into(), name: automation.name.clone() };
                    wanted.insert(id, automation.query.clone());
                }
            }
        }
        let mut workers = self.workers.lock().expect("workers lock");
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        workers.retain(|id, worker| {
            let keep = wanted.get(id) == Some(&worker.query) && !worker.handle.is_finished();
            if !keep {
                worker.handle.abort();
            }
            keep
        });
        for (id, query) in wanted {
            if workers.contains_key(&id) {
                continue;
            }
            let progress = Arc::new(Mutex::new(Progress { running: true, ..Default::default() }));
            let this = self.clone();
            let (task_id, task_query, task_progress) = (id.clone(), query.clone(), progress.clone());
            let handle = tokio::spawn(async move {
                let lease = format!("automation/{}/{}/{}", task_id.tenant, task_id.slice, task_id.name);
                let result = loop {
                    let followed = while_holding(this.leases.get(), &lease, this.follow(&task_id, task_query.clone(), &task_progress)).await;
                    task_progress.lock().expect("progress lock").active = false;
                    match followed {
                        // This host lost the lease: wait for it again, then go on from the checkpoint.
                        Ok(None) => continue,
                        Ok(Some(result)) => break result,
                        Err(err) => break Err(err),
                    }
                };
                if let Err(err) = result {
                    tracing::error!(tenant = %task_id.tenant, slice = task_id.slice, automation = task_id.name, "automation stopped: {err}");
                    task_progress.lock().expect("progress lock").last_error = Some(err.to_string());
                }
                task_progress.lock().expect("progress lock").running = false;
            });
            tracing::info!(tenant = %id.tenant, slice = id.slice, automation = id.name, "automation started");
            workers.insert(id, Worker { query, handle, progress });
        }
    }

    /// The latest checkpoint of an automation, and the position to guard the next one with.
    async fn checkpoint(&self, id: &AutomationId) -> Result<(Position, Position), StoreError> {
        let options = ReadOptions::default().backwards().limit(1);
        let (found, seen) = self.store.read(&id.tenant, id.query(CHECKPOINT_EVENT), options).await?.collect().await?;
        let checkpoint = match found.first() {
            Some(event) => position_of(&decode::<CheckpointRecord>(event)?.position)?,
            None => Position::ZERO,
        };
        Ok((checkpoint, seen))
    }

    async fn follow(&self, id: &AutomationId, query: Query, progress: &Mutex<Progress>) -> Result<(), StoreError> {
        progress.lock().expect("progress lock").active = true;
        let (mut checkpoint, mut guard) = self.checkpoint(id).await?;
        progress.lock().expect("progress lock").checkpoint = checkpoint;
        let mut events = Feed::new(self.store.subscribe(&id.tenant, query, Some(checkpoint)).await?);
        // Events reacted to since the last checkpoint written. Host records (this worker's own
        // checkpoints among them) are never delivered, so they never count: a checkpoint is
        // written only after real work, and cannot call for another one.
        let mut since_checkpoint = 0u64;
        loop {
            let delivery = events.next(CHECKPOINT_EVERY as usize).await?;
            for event in &delivery.events {
                self.handle(id, event, progress).await?;
            }
            since_checkpoint += delivery.events.len() as u64;
            if since_checkpoint > 0 && (since_checkpoint >= CHECKPOINT_EVERY || events.buffered() == 0) {
                checkpoint = delivery.reached;
                let record = record(CHECKPOINT_EVENT, id, &CheckpointRecord { position: checkpoint.get().to_string() });
                let condition = AppendCondition::new(id.query(CHECKPOINT_EVENT), Some(guard));
                let span = crate::telemetry::store_append(&id.tenant, 1);
                guard = crate::telemetry::store_call(span, self.store.append(&id.tenant, vec![record], vec![condition])).await?[0];
                since_checkpoint = 0;
                progress.lock().expect("progress lock").checkpoint = checkpoint;
            }
        }
    }

    /// Reacts to one event, retrying with backoff, and records a dead letter after too many
    /// failures. Only a store failure is an error: the worker stops and restarts later.
    async fn handle(&self, id: &AutomationId, event: &SequencedEvent, progress: &Mutex<Progress>) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.react(id, event).await {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            {
                let mut progress = progress.lock().expect("progress lock");
                progress.failures += 1;
                progress.last_error = Some(error.to_string());
            }
            tracing::warn!(tenant = %id.tenant, slice = id.slice, automation = id.name, position = %event.position, attempt, "reaction failed: {error}");
            if attempt >= self.policy.max_failures {
                let letter = DeadLetterRecord { position: event.position.get().to_string(), error: error.to_string(), attempts: attempt };
                self.store.append(&id.tenant, vec![record(DEAD_LETTER_EVENT, id, &letter)], vec![]).await?;
                progress.lock().expect("progress lock").dead_letters += 1;
                return Ok(());
            }
            let delay = self.policy.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(30));
            tokio::time::sleep(delay).await;
        }
    }

    /// The slice's reaction to `event`, and the commands it asks for. A command that is
    /// rejected has been decided: that is done, not a failure.
    async fn react(&self, id: &AutomationId, event: &SequencedEvent) -> Result<(), InvokeError> {
        let empty = tracing::field::Empty;
        let span = tracing::info_span!("automation.react", tenant = %id.tenant, slice = id.slice, automation = id.name,
            position = %event.position, event_type = event.event.event_type, outcome = empty, otel.status_code = empty);
        crate::telemetry::invoke(span, self.react_untraced(id, event)).await
    }

    async fn react_untraced(&self, id: &AutomationId, event: &SequencedEvent) -> Result<(), InvokeError> {
        let slice = self
            .registry
            .get(&id.tenant, &id.slice)
            .ok_or_else(|| InvokeError::NotFound(format!("slice {} is no longer deployed", id.slice)))?;
        let io = ReadAppender::new(self.store.clone(), id.tenant.clone(), Access::ReadOnly);
        let calls = slice.react(io, &id.name, event.clone()).await?;
        for call in calls {
            let target_name = if call.slice.is_empty() { id.slice.as_str() } else { call.slice.as_str() };
            let target = self
                .registry
                .get(&id.tenant, target_name)
                .ok_or_else(|| InvokeError::NotFound(format!("automation {} asks for slice {target_name}, which is not deployed", id.name)))?;
            match self.runner.run(&target, &self.store, &id.tenant, &call.command, &call.payload).await {
                Ok(_) | Err(InvokeError::Rejected(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The durable checkpoint of a running worker, as it last wrote it (no store access).
    pub fn progress(&self, id: &AutomationId) -> Option<Progress> {
        self.workers.lock().expect("workers lock").get(id).map(|w| w.progress.lock().expect("progress lock").clone())
    }

    /// Every worker of this process and what it reports (no store access: for metrics).
    pub fn workers(&self) -> Vec<(AutomationId, Progress)> {
        let workers = self.workers.lock().expect("workers lock");
        workers.iter().map(|(id, w)| (id.clone(), w.progress.lock().expect("progress lock").clone())).collect()
    }

    /// Every automation the tenant's slices declare: checkpoint, lag, and (when its worker runs
    /// in this process) failures.
    pub async fn status(&self, tenant: &Tenant) -> Result<Vec<Status>, StoreError> {
        let mut declared = Vec::new();
        for deployed in self.registry.list(tenant) {
            for automation in &deployed.slice.description().automations {
                let id = AutomationId { tenant: tenant.clone(), slice: deployed.slice.name().into(), name: automation.name.clone() };
                let progress = self
                    .workers
                    .lock()
                    .expect("workers lock")
                    .get(&id)
                    .map(|w| w.progress.lock().expect("progress lock").clone())
                    .unwrap_or_default();
                declared.push((id, automation.query.clone(), progress));
            }
        }
        let mut out = Vec::new();
        for (id, query, mut progress) in declared {
            let (checkpoint, _) = self.checkpoint(&id).await?;
            progress.checkpoint = checkpoint;
            progress.dead_letters = self.dead_letters(&id).await?.len() as u64;
            let head = self.store.head(tenant).await?;
            let pending = self.store.read(tenant, query, ReadOptions::default().after(checkpoint)).await?;
            let lag = pending.count_slice_events(crate::store::LAG_COUNTED_UP_TO).await?;
            out.push(Status { id, checkpoint, head, lag, progress });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The dead letters of an automation not yet retried or skipped, oldest first.
    pub async fn dead_letters(&self, id: &AutomationId) -> Result<Vec<DeadLetter>, StoreError> {
        let query = id.query(DEAD_LETTER_EVENT).or(QueryItem::types([RESOLVED_EVENT]).with_tag(id.tag()));
        let (events, _) = self.store.read(&id.tenant, query, ReadOptions::default()).await?.collect().await?;
        let mut letters = Vec::new();
        let mut resolved = std::collections::HashSet::new();
        for event in &events {
            if event.event.event_type == RESOLVED_EVENT {
                resolved.insert(position_of(&decode::<ResolvedRecord>(event)?.dead_letter)?);
            } else {
                let letter: DeadLetterRecord = decode(event)?;
                letters.push(DeadLetter {
                    id: event.position,
                    position: position_of(&letter.position)?,
                    error: letter.error,
                    attempts: letter.attempts,
                });
            }
        }
        letters.retain(|l| !resolved.contains(&l.id));
        Ok(letters)
    }

    /// Runs the reaction to a dead letter's event again, now; resolves it if that succeeds.
    pub async fn retry(&self, id: &AutomationId, dead_letter: Position) -> Result<(), InvokeError> {
        let letter = self.find(id, dead_letter).await?;
        let options = ReadOptions::default().after(Position::from_u128(letter.position.get() - 1)).limit(1);
        let (events, _) = self.store.read(&id.tenant, Query::all(), options).await?.collect().await?;
        let event = events.into_iter().find(|e| e.position == letter.position).ok_or_else(|| {
            InvokeError::NotFound(format!("the event at {} is not in the log", letter.position))
        })?;
        self.react(id, &event).await?;
        self.resolve(id, dead_letter, "retried").await?;
        Ok(())
    }

    /// Gives up on a dead letter for good.
    pub async fn skip(&self, id: &AutomationId, dead_letter: Position) -> Result<(), InvokeError> {
        self.find(id, dead_letter).await?;
        self.resolve(id, dead_letter, "skipped").await?;
        Ok(())
    }

    async fn find(&self, id: &AutomationId, dead_letter: Position) -> Result<DeadLetter, InvokeError> {
        self.dead_letters(id).await?.into_iter().find(|l| l.id == dead_letter).ok_or_else(|| {
            InvokeError::NotFound(format!("automation {}/{} has no open dead letter {dead_letter}", id.slice, id.name))
        })
    }

    async fn resolve(&self, id: &AutomationId, dead_letter: Position, how: &str) -> Result<(), StoreError> {
        let record = record(RESOLVED_EVENT, id, &ResolvedRecord { dead_letter: dead_letter.get().to_string(), how: how.into() });
        self.store.append(&id.tenant, vec![record], vec![]).await?;
        Ok(())
    }
}
