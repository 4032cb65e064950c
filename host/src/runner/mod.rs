//! The CommandRunner: runs a command in a fresh instance, and runs it again from scratch when
//! its append condition failed, until it is decided or its deadline passes.
//!
//! A command is *decided* when it succeeds or the slice refuses it (`rejected`, invalid input,
//! `not-found`); those and store errors come back at once: running again would not change
//! them. A failed condition is never the command's fault, so it is not an answer: the command
//! takes its turn where it lost ([`contention`]) and runs again: commands that raced
//! re-run one after another, in arrival order, rather than invalidating each other again. Only
//! a command still undecided at its deadline (`CommandRunner::deadline`) ends in `conflict`.
//!
//! A command reads the events the store has *accepted*, durable or not
//! ([`EventStore::read_accepted`](crate::store::EventStore::read_accepted)), and hands its
//! turn on to the next in line as soon as its own append is accepted: a hot boundary decides
//! commands one after another without waiting for a disk flush in between. Nothing is answered
//! before what it was decided on is durable: an append's own flush comes after the events it
//! read, and a decision without an append waits for the store to settle.

mod contention;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument;

use serde::{Deserialize, Serialize};

use crate::runtime::{Access, InvokeError, ReadAppender, ReadGate, Slice, SpentInstance, WaitSlots};
use crate::store::{AcceptedAppend, AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SharedStore, StoreError, Tenant};

/// The type of the event that records a command's result under an idempotency key, appended
/// atomically with (just before) the command's own events.
pub const IDEMPOTENCY_EVENT: &str = "counterpoint.idempotency";

/// How a command run under an idempotency key is asked for.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub key: String,
    /// An earlier result older than this is forgotten: the command runs again.
    pub retention: Duration,
}

#[derive(Serialize, Deserialize)]
struct IdempotencyRecord {
    slice: String,
    command: String,
    output: Vec<u8>,
    /// How many events the command appended (they follow this record).
    events: u64,
    /// Seconds since the Unix epoch.
    at: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Clone, Debug)]
pub struct CommandRunner {
    /// How long a command may go on re-running after failed conditions before it ends in
    /// `conflict` (each tenant has its own: `command_deadline_ms`).
    pub deadline: Duration,
}

/// The process's queues: every runner of this process (the API's, the automations') takes its
/// turns in one place, so they queue behind each other rather than race.
static CONTENTION: std::sync::LazyLock<Arc<contention::Contention>> = std::sync::LazyLock::new(Arc::default);

pub use contention::HotBoundary;

/// The boundaries of `tenant`'s log in `store` that commands queue on now, in this process,
/// the longest queue first: where its commands decide one after another.
pub fn hot_boundaries(store: &SharedStore, tenant: &Tenant) -> Vec<HotBoundary> {
    CONTENTION.hot_boundaries(store, tenant)
}

/// In this process, across every tenant: the hot boundaries now, and the turns held or waited
/// for on them.
pub fn hot_totals() -> (usize, usize) {
    CONTENTION.totals()
}

impl Default for CommandRunner {
    fn default() -> Self {
        CommandRunner { deadline: Duration::from_secs(10) }
    }
}

/// What a first attempt's reads met on hot boundaries.
#[derive(Default)]
struct Gated {
    /// It waited in a read and has its turn since.
    turn: Option<contention::Turn>,
    /// It was stopped at a read of these (too many waiting already).
    stopped_at: Option<Vec<contention::Boundary>>,
    /// Its deadline passed while it waited.
    timed_out: bool,
    /// What its reads so far name, while anything queued when it read.
    named: contention::Named,
}

/// One command's way to a decision: its deadline, its attempts, its turn on a hot boundary.
struct Retries<'a> {
    runner: &'a CommandRunner,
    store: &'a SharedStore,
    tenant: &'a Tenant,
    command: &'a str,
    deadline: Instant,
    attempt: u32,
    turn: Option<contention::Turn>,
    /// What the last run's reads name, as far as its gate named them.
    named: contention::Named,
    /// The last run's instance, whose slot is given back before the command waits for a turn or
    /// runs again, or once its turn is handed on and the next in line has gone on: the slot's
    /// reset (some microseconds) is then off the turn, which the next in line waits for.
    spent: Option<SpentInstance>,
}

impl<'a> Retries<'a> {
    fn new(runner: &'a CommandRunner, store: &'a SharedStore, tenant: &'a Tenant, command: &'a str) -> Self {
        Retries { runner, store, tenant, command, deadline: Instant::now() + runner.deadline, attempt: 1, turn: None, named: Default::default(), spent: None }
    }

    /// Whether a run that read `reads` may append now ([`contention::Contention::may_append`]).
    /// If not, it takes its turn on the hot boundaries it read, and runs again. A run without a
    /// turn that may append is noted as work beside the queues ([`contention::Contention::ran_elsewhere`]).
    async fn may_append(&mut self, reads: &[AppendCondition]) -> Result<bool, InvokeError> {
        // While nothing queues anywhere, a run without a turn may append: no boundary needs
        // naming (a string for each query item it read).
        if self.turn.is_none() && CONTENTION.is_quiet() {
            return Ok(true);
        }
        let mut named = std::mem::take(&mut self.named);
        let boundaries = named.complete(self.store, self.tenant, reads);
        let go = CONTENTION.may_append(self.turn.as_ref(), boundaries);
        if !go {
            let hot = CONTENTION.hot_among(boundaries, &[]);
            self.turn = None; // a new turn is taken whole, in order
            self.take_turn(hot).await?;
            self.attempt += 1;
        } else if self.turn.is_none() {
            // Decided where nobody queues, while others queue: their turns give way a while.
            CONTENTION.ran_elsewhere();
        }
        Ok(go)
    }

    /// After a failed condition (`failed`: the index in `reads` of the first that failed; the
    /// event that broke it is accepted, so the next run reads it): takes a turn on that read's
    /// boundaries and the hot ones among the rest, unless its turn covers them already (a run
    /// that lost on an item beyond its turn would otherwise go on racing there), and counts the
    /// next attempt; `conflict` once the deadline has passed. What it read that nobody contends
    /// for stays out of its turn, and so stays cold for everyone else.
    async fn after_conflict(&mut self, reads: &[AppendCondition], failed: usize) -> Result<(), InvokeError> {
        let boundaries = contention::boundaries(self.store, self.tenant, reads);
        let lost = reads.get(failed).map(|read| contention::boundaries(self.store, self.tenant, std::slice::from_ref(read)));
        // A read of every event names no boundary: it lost to anything, so it queues on all
        // the rest it read (as it does when the store names no read).
        let lost = lost.filter(|lost| !lost.is_empty()).unwrap_or_else(|| boundaries.clone());
        let wanted = CONTENTION.hot_among(&boundaries, &lost);
        if !self.turn.as_ref().is_some_and(|turn| turn.covers(&wanted)) {
            self.turn = None; // a new turn is taken whole, in order
            self.take_turn(wanted).await?;
        }
        self.check_deadline()?;
        tracing::debug!(attempt = self.attempt, "append condition failed; running the command again");
        self.attempt += 1;
        Ok(())
    }

    /// The io of the next run. A first attempt waits at its first read of a hot boundary until
    /// its turn comes there (it could not append before those queued anyway), then reads and
    /// goes on, in its turn: one run decides it. What it read before that nobody queues on stays
    /// out of its turn. When as many runs as the runtime allows wait so already (each holds an
    /// instance: [`Slice::wait_slots`]), it is stopped there instead, naming the hot boundaries
    /// it read, and runs again in its turn.
    ///
    /// The wait happens inside the call into the guest, whose wall time is limited
    /// (`call_deadline`): it lasts at most half of that, then the attempt is stopped as when too
    /// many wait, and waits for its turn outside the guest, until the command's deadline.
    fn io(&self, slice: &Slice) -> (ReadAppender, Arc<Mutex<Gated>>) {
        let io = ReadAppender::new(self.store.clone(), self.tenant.clone(), Access::ReadAppend);
        let gated = Arc::new(Mutex::new(Gated::default()));
        if self.turn.is_some() {
            return (io, gated);
        }
        let gate = read_gate(self.store.clone(), self.tenant.clone(), self.deadline, slice.wait_slots(), slice.call_deadline(), gated.clone());
        (io.refuse_reads_when(gate), gated)
    }

    /// Runs the command once. `Err` when the run was stopped at a hot boundary: it runs again
    /// in its turn (or, when no turn could be had, is decided).
    async fn execute(&mut self, slice: &Slice, command: &str, payload: &[u8]) -> Result<Result<(Vec<u8>, ReadAppender), InvokeError>, Step<CommandOutput>> {
        self.spent = None;
        let (io, gated) = self.io(slice);
        let run = slice.execute(io, command, payload).await.map(|(output, io, spent)| {
            self.spent = Some(spent);
            (output, io)
        });
        let gated = std::mem::take(&mut *gated.lock().expect("gate lock"));
        self.named = gated.named;
        if gated.timed_out {
            return Err(Step::Decided(Err(self.conflict())));
        }
        if let Some(turn) = gated.turn {
            // It waited in its read and went on in its turn.
            self.turn = Some(turn);
        }
        if let Some(boundaries) = gated.stopped_at {
            if let Err(err) = self.take_turn(boundaries).await {
                return Err(Step::Decided(Err(err)));
            }
            self.attempt += 1;
            return Err(Step::Again("queued"));
        }
        Ok(run)
    }

    /// A decision made without an append of its own is answered only once everything it
    /// may have read is durable.
    async fn settled<T>(&self, decision: Result<T, InvokeError>) -> Result<T, InvokeError> {
        self.store.settle(self.tenant).await?;
        decision
    }

    /// The append was accepted: the next in line may decide on it now, while it is flushed.
    async fn durable(&mut self, accepted: AcceptedAppend) -> Result<Vec<Position>, InvokeError> {
        if self.turn.take().is_some() {
            // The next in line, woken as the turn was handed on, runs before this task goes on
            // to reset its spent instance's slot.
            behind_the_woken().await;
        }
        self.spent = None;
        let span = tracing::info_span!("store.durable", outcome = tracing::field::Empty, otel.status_code = tracing::field::Empty);
        Ok(crate::telemetry::store_call(span, accepted.durable()).await?)
    }

    async fn take_turn(&mut self, boundaries: Vec<contention::Boundary>) -> Result<(), InvokeError> {
        // Nobody waits for a turn holding a slot it no longer needs.
        self.spent = None;
        let turn = CONTENTION.turn(boundaries, self.deadline).await.ok_or_else(|| self.conflict())?;
        behind_late_flushes(&turn, self.store, self.tenant, self.deadline).await;
        self.turn = Some(turn);
        Ok(())
    }

    fn check_deadline(&self) -> Result<(), InvokeError> {
        if Instant::now() >= self.deadline { Err(self.conflict()) } else { Ok(()) }
    }

    fn conflict(&self) -> InvokeError {
        InvokeError::Conflict(format!(
            "{}: the events it read kept changing; still undecided after {} attempts in {} ms (the deadline)",
            self.command,
            self.attempt,
            self.runner.deadline.as_millis()
        ))
    }
}

/// The gate of a first attempt's reads ([`Retries::io`]): whether a read is refused (the run is
/// stopped there), after waiting inside it for a turn on a hot boundary.
fn read_gate(store: SharedStore, tenant: Tenant, deadline: Instant, waits: WaitSlots, call_deadline: Duration, slot: Arc<Mutex<Gated>>) -> ReadGate {
    Box::new(move |reads, query| {
        // Asked at every read of every first attempt: nothing is named (or locked) while
        // nothing queues.
        if CONTENTION.is_quiet() {
            return Box::pin(std::future::ready(false));
        }
        let boundaries = {
            let mut gated = slot.lock().expect("gate lock");
            // Stopped once, the run is moot: it must not take a turn inside the guest now,
            // since the runner takes one on what it read when the run ends.
            if gated.stopped_at.is_some() {
                return Box::pin(std::future::ready(true));
            }
            // A run that has its turn reads on.
            if gated.turn.is_some() {
                return Box::pin(std::future::ready(false));
            }
            CONTENTION.hot_among(gated.named.add(&store, &tenant, reads, query), &[])
        };
        if boundaries.is_empty() {
            return Box::pin(std::future::ready(false));
        }
        let Some(waiting) = waits.reserve() else {
            slot.lock().expect("gate lock").stopped_at = Some(boundaries);
            return Box::pin(std::future::ready(true));
        };
        let (slot, store, tenant) = (slot.clone(), store.clone(), tenant.clone());
        let wait_until = deadline.min(Instant::now() + call_deadline / 2);
        Box::pin(async move {
            let turn = CONTENTION.turn(boundaries.clone(), wait_until).await;
            if let Some(turn) = &turn {
                behind_late_flushes(turn, &store, &tenant, wait_until).await;
            }
            drop(waiting);
            let mut gated = slot.lock().expect("gate lock");
            match turn {
                Some(turn) => {
                    gated.turn = Some(turn);
                    false
                }
                None if wait_until < deadline => {
                    gated.stopped_at = Some(boundaries);
                    true
                }
                None => {
                    gated.timed_out = true;
                    true
                }
            }
        })
    })
}

/// A turn handed on beside commands on other boundaries waits, before it goes on, for the
/// store's writer if it is late. A hot boundary's chain decides on accepted events and never
/// waits for a flush, while the commands beside it do: on workers kept busy by the chain, a
/// writer below their priority (the store's threads run at nice 10) is kept from a processor,
/// every flush comes later, and the commands beside lose their speed to the hot boundary. Waiting
/// here leaves the writer a processor and holds the chain to the flushes, only then. It waits
/// [`LATE_FLUSH_WAIT`] at most, and no later than `until`, as its wait for the turn: a stalled
/// disk or writer must not hold the turn. (A failed flush is the next read's or append's to
/// report.)
async fn behind_late_flushes(turn: &contention::Turn, store: &SharedStore, tenant: &Tenant, until: Instant) {
    if turn.beside_others() && store.flushes_late() {
        let until = until.min(Instant::now() + LATE_FLUSH_WAIT);
        let _ = tokio::time::timeout_at(until.into(), store.settle(tenant)).await;
    }
}

/// The longest a turn waits for a late flush: a writer kept from a processor answers within a
/// few milliseconds; a disk stalled longer makes the commands beside wait too, and the hot
/// boundary goes on.
const LATE_FLUSH_WAIT: Duration = Duration::from_millis(20);

/// Waits once, behind the task this one has just woken and the others ready on its worker: it
/// wakes itself before it waits, which tokio takes for a yield (to the back of the worker's
/// queue, where `tokio::task::yield_now` would wait until the worker has nothing else to do).
async fn behind_the_woken() {
    let mut waited = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut waited, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Where one attempt left the command: run again (and why), or decided.
enum Step<T> {
    Again(&'static str),
    Decided(Result<T, InvokeError>),
}

/// The span of one command, from its first attempt to its decision.
fn command_span(tenant: &Tenant, slice: &Slice, command: &str) -> tracing::Span {
    let empty = tracing::field::Empty;
    tracing::info_span!("command", tenant = %tenant, slice = slice.name(), command, attempts = empty, outcome = empty, otel.status_code = empty)
}

/// The span of one run of a command (and its append): `outcome` is `queued` or
/// `condition_failed` when it runs again.
fn attempt_span(attempt: u32) -> tracing::Span {
    let empty = tracing::field::Empty;
    tracing::info_span!("attempt", attempt, outcome = empty, otel.status_code = empty)
}

/// A command that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// The command's result, MessagePack.
    pub output: Vec<u8>,
    /// Positions of the events it appended (none if it appended nothing).
    pub positions: Vec<Position>,
    /// How many times it ran.
    pub attempts: u32,
}

impl CommandRunner {
    pub async fn run(
        &self,
        slice: &Slice,
        store: &SharedStore,
        tenant: &Tenant,
        command: &str,
        payload: &[u8],
    ) -> Result<CommandOutput, InvokeError> {
        self.run_counted(slice, store, tenant, command, payload).await.0
    }

    /// Runs a command at most once per `key` within its retention: a repeated request gets the
    /// first result (`attempts` 0) without the command running again. The record of the result
    /// is appended atomically with the command's events, guarded like them, so two racing
    /// requests with one key cannot both run.
    pub async fn run_once(
        &self,
        slice: &Slice,
        store: &SharedStore,
        tenant: &Tenant,
        command: &str,
        payload: &[u8],
        key: &IdempotencyKey,
    ) -> Result<CommandOutput, InvokeError> {
        if key.key.is_empty() || key.key.len() > 200 || key.key.chars().any(char::is_control) {
            return Err(InvokeError::InvalidInput("an Idempotency-Key is 1 to 200 printable characters".into()));
        }
        let span = command_span(tenant, slice, command);
        let mut retries = Retries::new(self, store, tenant, command);
        let result = Self::decide(&mut retries, slice, command, payload, Some(key)).instrument(span.clone()).await;
        span.record("attempts", retries.attempt);
        crate::telemetry::record_outcome(&span, crate::telemetry::outcome(&result));
        result
    }

    /// One run of a command under an idempotency key: the earlier result if there is one, else
    /// the command and its append with the record of its result.
    async fn attempt_with_key(retries: &mut Retries<'_>, slice: &Slice, command: &str, payload: &[u8], key: &IdempotencyKey) -> Step<CommandOutput> {
        let (store, tenant) = (retries.store, retries.tenant);
        let record_query = Query::item(QueryItem::types([IDEMPOTENCY_EVENT]).with_tag(format!("idempotency:{}", key.key)));
        // An earlier result under this key?
        let seen = match recorded(store, tenant, &record_query, slice, command, key).await {
            Ok((Some(out), _)) => return Step::Decided(Ok(out)),
            Ok((None, seen)) => seen,
            Err(err) => return Step::Decided(Err(err)),
        };
        let run = match retries.execute(slice, command, payload).await {
            Ok(run) => run,
            Err(step) => return step,
        };
        let (output, mut io) = match run {
            Ok(done) => done,
            Err(err) => {
                // A racing request with this key may have run the command meanwhile (this run
                // then saw its events: "already placed"): its result is the answer.
                return Step::Decided(match recorded(store, tenant, &record_query, slice, command, key).await {
                    Ok((Some(out), _)) => Ok(out),
                    Ok((None, _)) => retries.settled(Err(err)).await,
                    Err(err) => Err(err),
                });
            }
        };
        // The record's guard, last: a failed condition is named by its index among the reads.
        io.reads.push(AppendCondition::new(record_query.clone(), Some(seen)));
        match retries.may_append(&io.reads).await {
            Ok(true) => {}
            Ok(false) => return Step::Again("queued"),
            Err(err) => return Step::Decided(Err(err)),
        }
        let record = IdempotencyRecord {
            slice: slice.name().into(),
            command: command.into(),
            output: output.clone(),
            events: io.staged.as_ref().map_or(0, |e| e.len() as u64),
            at: unix_now(),
        };
        let mut event = Event::new(IDEMPOTENCY_EVENT).tag(format!("idempotency:{}", key.key));
        event.data = rmp_serde::to_vec_named(&record).expect("the record encodes");
        match io.accept(vec![event]).await {
            Ok(accepted) => {
                let done = retries.durable(accepted).await;
                Step::Decided(done.map(|positions| CommandOutput { output, positions, attempts: retries.attempt }))
            }
            Err(StoreError::ConditionFailed { condition, .. }) => match retries.after_conflict(&io.reads, condition).await {
                Ok(()) => Step::Again("condition_failed"),
                // Lost to a request with this key: its result is the answer.
                Err(conflict) => Step::Decided(match recorded(store, tenant, &record_query, slice, command, key).await {
                    Ok((Some(out), _)) => Ok(out),
                    Ok((None, _)) => Err(conflict),
                    Err(err) => Err(err),
                }),
            },
            Err(err) => Step::Decided(Err(InvokeError::StoreFailed(err))),
        }
    }

    /// Like [`run`](Self::run), and says how many times the command ran, failed or not.
    pub async fn run_counted(
        &self,
        slice: &Slice,
        store: &SharedStore,
        tenant: &Tenant,
        command: &str,
        payload: &[u8],
    ) -> (Result<CommandOutput, InvokeError>, u32) {
        let span = command_span(tenant, slice, command);
        let started = Instant::now();
        let (result, attempts) = self.attempts(slice, store, tenant, command, payload).instrument(span.clone()).await;
        let _entered = span.enter();
        span.record("attempts", attempts);
        crate::telemetry::record_outcome(&span, crate::telemetry::outcome(&result));
        let elapsed_us = started.elapsed().as_micros() as u64;
        match &result {
            Ok(out) => tracing::debug!(elapsed_us, appended = out.positions.len(), "command succeeded"),
            Err(err) => tracing::debug!(elapsed_us, "command failed: {err}"),
        }
        (result, attempts)
    }

    async fn attempts(
        &self,
        slice: &Slice,
        store: &SharedStore,
        tenant: &Tenant,
        command: &str,
        payload: &[u8],
    ) -> (Result<CommandOutput, InvokeError>, u32) {
        let mut retries = Retries::new(self, store, tenant, command);
        let result = Self::decide(&mut retries, slice, command, payload, None).await;
        (result, retries.attempt)
    }

    /// Runs attempts, each in its span, until one decides (under `key`, if any).
    async fn decide(
        retries: &mut Retries<'_>,
        slice: &Slice,
        command: &str,
        payload: &[u8],
        key: Option<&IdempotencyKey>,
    ) -> Result<CommandOutput, InvokeError> {
        loop {
            let span = attempt_span(retries.attempt);
            // Boxed: an attempt's future is about 7 KiB (the instance's call nests in it), and
            // every `await` that wraps it (the span, the caller's) would copy it whole.
            let step = match key {
                Some(key) => Box::pin(Self::attempt_with_key(retries, slice, command, payload, key)).instrument(span.clone()).await,
                None => Box::pin(Self::attempt(retries, slice, command, payload)).instrument(span.clone()).await,
            };
            match step {
                Step::Again(why) => crate::telemetry::record_outcome(&span, why),
                Step::Decided(result) => {
                    crate::telemetry::record_outcome(&span, crate::telemetry::outcome(&result));
                    return result;
                }
            }
        }
    }

    /// One run of the command, and its append if it has one.
    async fn attempt(retries: &mut Retries<'_>, slice: &Slice, command: &str, payload: &[u8]) -> Step<CommandOutput> {
        let run = match retries.execute(slice, command, payload).await {
            Ok(run) => run,
            Err(step) => return step,
        };
        let (output, mut io) = match run {
            Ok(done) => done,
            Err(err) => return Step::Decided(retries.settled(Err(err)).await),
        };
        // A command that appends nothing has decided: nothing to guard.
        if io.staged.is_none() {
            let decided = Ok(CommandOutput { output, positions: Vec::new(), attempts: retries.attempt });
            return Step::Decided(retries.settled(decided).await);
        }
        match retries.may_append(&io.reads).await {
            Ok(true) => {}
            Ok(false) => return Step::Again("queued"),
            Err(err) => return Step::Decided(Err(err)),
        }
        match io.accept(Vec::new()).await {
            Ok(accepted) => {
                let done = retries.durable(accepted).await;
                Step::Decided(done.map(|positions| CommandOutput { output, positions, attempts: retries.attempt }))
            }
            Err(StoreError::ConditionFailed { condition, .. }) => match retries.after_conflict(&io.reads, condition).await {
                Ok(()) => Step::Again("condition_failed"),
                Err(err) => Step::Decided(Err(err)),
            },
            Err(err) => Step::Decided(Err(InvokeError::StoreFailed(err))),
        }
    }
}

/// The result recorded under an idempotency key within its retention, if any, and the
/// position the lookup is consistent at.
async fn recorded(
    store: &SharedStore,
    tenant: &Tenant,
    record_query: &Query,
    slice: &Slice,
    command: &str,
    key: &IdempotencyKey,
) -> Result<(Option<CommandOutput>, Position), InvokeError> {
    // Accepted records too: a racing request's, not yet durable, is the answer once it is.
    let options = ReadOptions::default().backwards().limit(1);
    let read = store.read_accepted(tenant, record_query.clone(), options);
    let (records, seen) = crate::telemetry::store_call(crate::telemetry::store_read(tenant), async { read.await?.collect().await }).await?;
    let Some(found) = records.first() else { return Ok((None, seen)) };
    store.settle(tenant).await?;
    let record: IdempotencyRecord = rmp_serde::from_slice(&found.event.data)
        .map_err(|e| InvokeError::Store(format!("an idempotency record does not decode: {e}")))?;
    if unix_now().saturating_sub(record.at) > key.retention.as_secs() {
        return Ok((None, seen));
    }
    if record.slice != slice.name() || record.command != command {
        return Err(InvokeError::InvalidInput(format!("Idempotency-Key {:?} was used for {} {}", key.key, record.slice, record.command)));
    }
    let options = ReadOptions::default().after(found.position).limit(record.events.max(1));
    let read = store.read(tenant, Query::all(), options);
    let (events, _) = crate::telemetry::store_call(crate::telemetry::store_read(tenant), async { read.await?.collect().await }).await?;
    let positions = events.iter().take(record.events as usize).map(|e| e.position).collect();
    Ok((Some(CommandOutput { output: record.output, positions, attempts: 0 }), seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(tag: &str) -> Query {
        Query::item(QueryItem::tags([tag.to_string()]))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// What a command appends beside the queues is what tells a hot boundary that commands run
    /// elsewhere, so that its turns give way to them ([`contention::Contention::turn`]): without
    /// the note, a hot boundary would take the cold commands' share of the processors.
    #[tokio::test]
    async fn a_command_appending_where_nobody_queues_notes_that_commands_run_elsewhere() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
        let tenant = Tenant::new("note-test").unwrap();
        // Someone holds a turn on the hot course: the process's queues are not quiet.
        let hot = contention::boundaries(&store, &tenant, &[AppendCondition::new(read("course:hot"), None)]);
        let turn = CONTENTION.turn(hot, soon()).await.expect("a turn on a boundary nobody else queues on");

        let runner = CommandRunner::default();
        let mut retries = Retries::new(&runner, &store, &tenant, "subscribe");
        let before = CONTENTION.elsewhere_noted();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let cold = [AppendCondition::new(read("course:cold"), None)];
        assert!(retries.may_append(&cold).await.unwrap(), "nobody queues on what it read: it appends");
        assert!(CONTENTION.elsewhere_noted() > before, "the append is noted as a command running elsewhere");
        assert!(retries.turn.is_none(), "and takes no turn");
        drop(turn);
    }

    /// A first attempt that reads cold items, then a hot one, waits for its turn on the hot one
    /// alone: its turn would otherwise make the cold items hot, and every command reading them
    /// would queue there too (a course's capacity, a student's courses).
    #[tokio::test]
    async fn a_first_attempt_waits_for_its_turn_on_the_hot_boundary_alone() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
        let tenant = Tenant::new("gate-test").unwrap();
        let seats = contention::boundaries(&store, &tenant, &[AppendCondition::new(read("seats:1"), None)]);
        let student = contention::boundaries(&store, &tenant, &[AppendCondition::new(read("student:7"), None)]);
        let held = CONTENTION.turn(seats.clone(), soon()).await.expect("a turn nobody else holds");

        let gated: Arc<Mutex<Gated>> = Arc::default();
        let gate = read_gate(store.clone(), tenant.clone(), soon(), WaitSlots::new(4), Duration::from_secs(10), gated.clone());
        assert!(!gate(&[], &read("student:7")).await, "a cold read goes on");
        assert!(!CONTENTION.is_hot(&student), "and leaves its item cold");
        let read_so_far = [AppendCondition::new(read("student:7"), None)];
        let waiting = tokio::spawn(gate(&read_so_far, &read("seats:1")));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the hot read waits for its turn");
        assert!(!CONTENTION.is_hot(&student), "not on the student it read before");
        drop(held);
        assert!(!waiting.await.unwrap(), "its turn came: the read goes on");
        let turn = gated.lock().unwrap().turn.take().expect("the run has its turn");
        assert!(turn.covers(&seats) && !turn.covers(&student));
    }

    /// An embedded store on a simulated disk whose flushes can be held. Held, an append waits
    /// for its flush; once it has waited past the group commit window (the longest, 100 ms: an
    /// append that waits less is on time) and 0.4 ms more, the store's flushes are late, and
    /// `settle` waits until they are let go.
    struct HeldFlushes {
        store: SharedStore,
        disk: crate::store::sim_disk::SimDisk,
    }

    impl HeldFlushes {
        fn new() -> Self {
            use crate::store::sim_disk::{Faults, SimDisk};
            let disk = SimDisk::new(5, Faults::default());
            let options = crate::store::EmbeddedOptions { group_commit_window: crate::store::MAX_GROUP_COMMIT_WINDOW, ..Default::default() };
            let store = crate::store::EmbeddedStore::open_on(Arc::new(disk.clone()), "/data", options).unwrap();
            Self { store: Arc::new(store), disk }
        }

        /// Holds the disk's flushes, with an append of `tenant` behind them: pending, on time.
        async fn hold(&self, tenant: &Tenant) {
            self.disk.hold_syncs();
            self.store.append_accepted(tenant, vec![Event::new("Held")], &[]).await.unwrap();
        }

        /// Holds an append until it is late.
        async fn hold_until_late(&self, tenant: &Tenant) {
            self.hold(tenant).await;
            // (The append before may be answered meanwhile, and lateness counted from then.)
            let until = Instant::now() + Duration::from_secs(5);
            while !self.store.flushes_late() {
                assert!(Instant::now() < until, "an append held 5 s and the flushes not late");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    impl Drop for HeldFlushes {
        /// (The store's writer is joined as it closes: it must not wait on the disk then.)
        fn drop(&mut self) {
            self.disk.release_syncs();
        }
    }

    /// Hands `held` on just after a command appended elsewhere (so the next in line counts as
    /// beside others, within a millisecond of now); when.
    fn hand_on_beside_others(held: contention::Turn) -> Instant {
        CONTENTION.ran_elsewhere();
        drop(held);
        Instant::now()
    }

    /// A first attempt handed its turn on a hot boundary while commands run elsewhere waits
    /// for the store's late flush before it reads on (the chain holds to the flushes the
    /// commands beside it wait for), no longer than its wait for the turn may last; with an
    /// append waiting for a flush that is not late yet, it goes on at once.
    #[tokio::test]
    async fn a_turn_handed_on_beside_other_commands_waits_for_a_late_flush() {
        let flushes = HeldFlushes::new();
        let store = flushes.store.clone();
        let tenant = Tenant::new("late-flush-test").unwrap();
        let seats = contention::boundaries(&store, &tenant, &[AppendCondition::new(read("seats:late"), None)]);
        // Handed a turn beside others, the first attempt's read goes on (`true`) or waits.
        let handed_on = |call_deadline: Duration| {
            let (seats, store, tenant) = (seats.clone(), store.clone(), tenant.clone());
            async move {
                let held = CONTENTION.turn(seats.clone(), soon()).await.expect("a turn nobody else holds");
                let gated: Arc<Mutex<Gated>> = Arc::default();
                let gate = read_gate(store.clone(), tenant.clone(), soon(), WaitSlots::new(4), call_deadline, gated.clone());
                let waiting = tokio::spawn(gate(&[], &read("seats:late")));
                tokio::task::yield_now().await;
                assert!(!waiting.is_finished(), "the hot read waits for its turn");
                let handed = hand_on_beside_others(held);
                tokio::time::sleep(Duration::from_millis(5)).await;
                (waiting, gated, handed)
            }
        };

        flushes.hold(&tenant).await;
        let (waiting, gated, _) = handed_on(Duration::from_secs(10)).await;
        assert!(waiting.is_finished(), "an append waits for its flush, on time: the turn goes on");
        drop(gated.lock().unwrap().turn.take());
        flushes.disk.release_syncs();

        // The turn counts as handed on beside others only within a millisecond of that note:
        // a test thread kept from its processor longer than that is tried again. The flush
        // comes in the first case; in the second it never does, and the wait ends after
        // `LATE_FLUSH_WAIT`.
        for flush_comes in [true, false] {
            flushes.hold_until_late(&tenant).await;
            let mut tries = 0;
            let (waiting, gated) = loop {
                tries += 1;
                assert!(tries <= 5, "never handed on within a millisecond of a command elsewhere");
                let (waiting, gated, handed) = handed_on(Duration::from_secs(20)).await;
                if !waiting.is_finished() {
                    break (waiting, gated);
                }
                let turn = gated.lock().unwrap().turn.take().expect("the run has its turn");
                // (Checked after the longest wait, it may have ended: tried again.)
                let could_have_waited = handed.elapsed() >= LATE_FLUSH_WAIT;
                assert!(!turn.beside_others() || could_have_waited, "handed on beside others with a late flush, it went on");
            };
            if flush_comes {
                flushes.disk.release_syncs();
            }
            let read_on = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("it goes on: the flush came, or its wait ended");
            assert!(!read_on.unwrap(), "its read goes on in its turn");
            assert!(gated.lock().unwrap().turn.take().expect("the run has its turn").beside_others());
            flushes.disk.release_syncs();
        }
    }

    /// A command that lost a race, handed its turn while commands run elsewhere, waits for the
    /// store's late flush before it runs again, as a first attempt does in its read.
    #[tokio::test]
    async fn a_rerun_handed_its_turn_beside_other_commands_waits_for_a_late_flush() {
        let flushes = HeldFlushes::new();
        let store = flushes.store.clone();
        let tenant = Tenant::new("late-rerun-test").unwrap();
        let reads = [AppendCondition::new(read("seats:rerun"), None)];
        let seats = contention::boundaries(&store, &tenant, &reads);
        let runner = CommandRunner::default();
        // As above, a test thread kept from its processor past a millisecond tries again.
        for _ in 0..5 {
            flushes.hold_until_late(&tenant).await;
            let held = CONTENTION.turn(seats.clone(), soon()).await.expect("a turn nobody else holds");
            let mut retries = Retries::new(&runner, &store, &tenant, "subscribe");
            let released = std::sync::atomic::AtomicBool::new(false);
            let handed = std::sync::Mutex::new(None);
            let rerun = async {
                retries.after_conflict(&reads, 0).await.unwrap();
                released.load(std::sync::atomic::Ordering::SeqCst)
            };
            let elsewhere = async {
                tokio::task::yield_now().await;
                *handed.lock().unwrap() = Some(hand_on_beside_others(held));
                tokio::time::sleep(Duration::from_millis(5)).await;
                released.store(true, std::sync::atomic::Ordering::SeqCst);
                flushes.disk.release_syncs();
            };
            let (went_on_after_the_flush, ()) = tokio::join!(rerun, elsewhere);
            let turn = retries.turn.take().expect("the rerun has its turn");
            // (A test thread kept from its processor past the longest wait: tried again.)
            let could_have_waited = handed.lock().unwrap().expect("handed on").elapsed() >= LATE_FLUSH_WAIT;
            if turn.beside_others() && !could_have_waited {
                assert!(went_on_after_the_flush, "handed on beside others with a late flush, it went on");
                assert_eq!(retries.attempt, 2);
                return;
            }
        }
        panic!("never handed on within a millisecond of a command elsewhere");
    }

    /// A command that lost a race takes its turn where it lost (the read whose condition
    /// failed), not on everything it read.
    #[tokio::test]
    async fn a_command_that_lost_a_race_takes_its_turn_where_it_lost() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
        let tenant = Tenant::new("lost-test").unwrap();
        let reads = [AppendCondition::new(read("capacity:1"), None), AppendCondition::new(read("student:7"), None), AppendCondition::new(read("seats:1"), None)];
        let runner = CommandRunner::default();
        let mut retries = Retries::new(&runner, &store, &tenant, "subscribe");
        retries.after_conflict(&reads, 2).await.unwrap();
        let one = |i: usize| contention::boundaries(&store, &tenant, std::slice::from_ref(&reads[i]));
        let turn = retries.turn.as_ref().expect("a turn");
        assert!(turn.covers(&one(2)), "on the seats, where it lost");
        assert!(!turn.covers(&one(0)) && !CONTENTION.is_hot(&one(0)), "the capacity stays cold");
        assert!(!turn.covers(&one(1)) && !CONTENTION.is_hot(&one(1)), "the student stays cold");
        assert_eq!(retries.attempt, 2);

        // Lost again, on the student this time (beyond its turn): the new turn covers both.
        retries.after_conflict(&reads, 1).await.unwrap();
        let turn = retries.turn.as_ref().expect("a turn");
        assert!(turn.covers(&one(1)) && turn.covers(&one(2)) && !turn.covers(&one(0)));
    }

    /// A read of every event names no boundary: a command that lost there queues on all the
    /// rest it read, as before, rather than racing on without a turn until its deadline.
    #[tokio::test]
    async fn a_command_that_lost_on_a_read_of_everything_queues_on_all_it_read() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
        let tenant = Tenant::new("lost-all-test").unwrap();
        let reads = [AppendCondition::new(Query::all(), None), AppendCondition::new(read("student:7"), None)];
        let runner = CommandRunner::default();
        let mut retries = Retries::new(&runner, &store, &tenant, "audit");
        retries.after_conflict(&reads, 0).await.unwrap();
        let student = contention::boundaries(&store, &tenant, &reads[1..]);
        assert!(retries.turn.as_ref().expect("a turn").covers(&student));
    }
}

