//! One invocation's state inside its wasmtime `Store`, and the `store` import the host gives
//! the slice: the seed's ReadAppender.
//!
//! Every `read` records `(query, consistency position)`. The command's single `append` stages
//! its events; when the command has returned successfully, [`ReadAppender::commit`] appends
//! them guarded by all recorded pairs at once, so they land only if nothing the command read
//! has changed since. A command that fails, traps or times out appends nothing.

use std::time::Instant;

use tracing::Instrument as _;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{counterpoint::slice::store, types};
use super::limits::Limiter;
use super::output::Capture;
use crate::store::{AcceptedAppend, AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SharedStore, StoreError, Tenant};

/// What an invocation may do with the tenant's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A command: reads, then at most one append.
    ReadAppend,
    /// A projection, tags, describe: reads only.
    ReadOnly,
    /// A read model's update and answer: the host hands over the events; the log is not theirs to read.
    None,
}

/// Asked before each read of a command with the reads so far and the next query; resolves to
/// `true` to fail the read with `conflict`, and may wait first (see
/// [`ReadAppender::refuse_reads_when`]).
pub type ReadGate = Box<dyn Fn(&[AppendCondition], &Query) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// What the host does for one invocation: the reads it recorded and the events staged.
pub struct ReadAppender {
    store: SharedStore,
    tenant: Tenant,
    access: Access,
    read_bytes_limit: usize,
    gate: Option<ReadGate>,
    /// When a read last went on after waiting at the gate, until the epoch callback sees it.
    waited: Option<Instant>,
    /// Every read: its query and consistency position, the append's conditions.
    pub reads: Vec<AppendCondition>,
    /// The events of the command's one append, written by [`commit`](Self::commit).
    pub staged: Option<Vec<Event>>,
}

impl ReadAppender {
    pub fn new(store: SharedStore, tenant: Tenant, access: Access) -> Self {
        ReadAppender { store, tenant, access, read_bytes_limit: usize::MAX, gate: None, waited: None, reads: Vec::new(), staged: None }
    }

    /// Appends the staged events (if any), guarded by every recorded read. A failed condition
    /// is `StoreError::ConditionFailed`: the command must run again.
    pub async fn commit(mut self) -> Result<Vec<Position>, StoreError> {
        self.accept(Vec::new()).await?.durable().await
    }

    /// The first stage of [`commit`](Self::commit), with the host's own `first` events appended
    /// just before the command's (in the same atomic append): appends them, guarded by `reads`
    /// (to which the caller may add conditions of its own), and returns once the store has
    /// accepted the append (see [`EventStore::append_accepted`]). The positions of the
    /// command's events only come with its `durable()`. The reads stay: a failed condition is
    /// named by its index in them.
    pub async fn accept(&mut self, first: Vec<Event>) -> Result<AcceptedAppend, StoreError> {
        let skip = first.len();
        let mut events = first;
        events.extend(self.staged.take().unwrap_or_default());
        if events.is_empty() {
            return Ok(AcceptedAppend::durable_now(Vec::new()));
        }
        let span = crate::telemetry::store_append(&self.tenant, events.len());
        let accepted = crate::telemetry::store_call(span, self.store.append_accepted(&self.tenant, events, &self.reads)).await?;
        let positions = accepted.positions()[skip..].to_vec();
        Ok(AcceptedAppend::new(positions, async move { accepted.durable().await.map(drop) }))
    }

    /// Asks `gate` before every read, and fails the read with `conflict` when it says so: the
    /// runner parks a first attempt at its first read of a boundary that others queue on until
    /// its turn comes (the read then goes on), or stops it when too many are parked.
    pub fn refuse_reads_when(mut self, gate: ReadGate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// When a read last went on after waiting at the gate, if it did since the last ask:
    /// the guest held no worker while it waited.
    pub(super) fn take_waited(&mut self) -> Option<Instant> {
        self.waited.take()
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub(super) fn set_read_limit(&mut self, bytes: usize) {
        self.read_bytes_limit = bytes;
    }

    /// Reads on behalf of the slice and records the read.
    async fn read(&mut self, query: Query, options: ReadOptions) -> Result<types::ReadResult, types::Error> {
        if self.access == Access::None {
            return Err(types::Error::InvalidInput("a read model cannot read the log: the host hands its events to `update`".into()));
        }
        if let Some(gate) = &self.gate {
            let mut asked = gate(&self.reads, &query);
            let mut waited = false;
            let refused = std::future::poll_fn(|cx| {
                let poll = asked.as_mut().poll(cx);
                waited |= poll.is_pending();
                poll
            })
            .await;
            if waited {
                self.waited = Some(Instant::now());
            }
            if refused {
                return Err(types::Error::Conflict("others are queued on what this command reads: it runs again in its turn".into()));
            }
        }
        let span = crate::telemetry::store_read(&self.tenant);
        let read = self.fetch(query, options).instrument(span.clone()).await;
        match &read {
            Ok(read) => {
                span.record("events", read.events.len());
                crate::telemetry::record_outcome(&span, "ok");
            }
            Err(_) => crate::telemetry::record_outcome(&span, "error"),
        }
        read
    }

    /// The read itself: the events (within the read limit) and its consistency position, recorded.
    async fn fetch(&mut self, query: Query, options: ReadOptions) -> Result<types::ReadResult, types::Error> {
        // A command decides on accepted events too: see `EventStore::read_accepted`.
        let read = match self.access {
            Access::ReadAppend => self.store.read_accepted(&self.tenant, query, options).await,
            _ => self.store.read(&self.tenant, query, options).await,
        };
        let mut stream = read.map_err(|e| to_wit_error(&e))?;
        let mut events = Vec::new();
        let mut bytes = 0usize;
        while let Some(batch) = stream.next_batch().await.map_err(|e| to_wit_error(&e))? {
            for event in batch {
                bytes += event.event.payload_len() + event.event.event_type.len();
                if bytes > self.read_bytes_limit {
                    return Err(types::Error::Store(format!(
                        "the read returns more than {} bytes; read less (a narrower query, or `limit`)",
                        self.read_bytes_limit
                    )));
                }
                events.push(types::SequencedEvent { position: to_wit_position(event.position), event: to_wit_event(event.event) });
            }
        }
        let position = stream.consistency_position();
        self.reads.push(stream.into_condition());
        Ok(types::ReadResult { events, position: to_wit_position(position) })
    }

    /// Stages the command's events, checked against the store's limits now.
    fn append(&mut self, mut events: Vec<Event>) -> Result<(), types::Error> {
        if self.access != Access::ReadAppend {
            return Err(types::Error::InvalidInput("only commands can append; this call is read-only".into()));
        }
        if self.staged.is_some() {
            return Err(types::Error::InvalidInput("a command appends at most once: put all its events in one append".into()));
        }
        Event::refuse_host_records(&events).map_err(|e| to_wit_error(&e))?;
        self.store.limits().check_append(&mut events, &[]).map_err(|e| to_wit_error(&e))?;
        self.staged = Some(events);
        Ok(())
    }
}

pub(super) fn to_wit_error(err: &StoreError) -> types::Error {
    match err {
        StoreError::InvalidInput(_) | StoreError::LimitExceeded { .. } => types::Error::InvalidInput(err.to_string()),
        StoreError::ConditionFailed { .. } => types::Error::Conflict(err.to_string()),
        _ => types::Error::Store(err.to_string()),
    }
}

pub(super) fn to_wit_position(position: Position) -> types::Position {
    let n = position.get();
    ((n >> 64) as u64, n as u64)
}

pub(super) fn from_wit_position((high, low): types::Position) -> Position {
    Position::from_u128((u128::from(high) << 64) | u128::from(low))
}

pub(super) fn to_wit_event(event: Event) -> types::Event {
    types::Event { event_type: event.event_type, tags: event.tags, data: event.data, metadata: event.metadata }
}

fn from_wit_event(event: types::Event) -> Event {
    Event { event_type: event.event_type, tags: event.tags, data: event.data, metadata: event.metadata }
}

pub(super) fn from_wit_query(query: types::Query) -> Query {
    Query { items: query.items.into_iter().map(|i| QueryItem { types: i.types, tags: i.tags }).collect() }
}


pub(super) fn from_wit_options(options: types::ReadOptions) -> ReadOptions {
    ReadOptions { after: options.after.map(from_wit_position), limit: options.limit, backwards: options.backwards }
}

/// The data of a wasmtime `Store` for one invocation.
pub(crate) struct InvocationState {
    /// Built at the guest's first WASI call ([`WasiView::ctx`]), unless directories are granted.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(super) limiter: Limiter,
    /// When the current call into the guest must end; re-armed for every call.
    pub(super) deadline: Instant,
    pub(super) io: ReadAppender,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    /// The slice's effects, if it is granted any.
    pub(super) grants: Option<std::sync::Arc<super::effects::Grants>>,
    pub(super) http: super::effects::HttpClient,
    pub(super) rng: super::effects::SliceRandom,
    /// The read model's state, for a read model's `update` and `answer` only.
    pub(super) kv: Option<super::read_model_state::KvSession>,
}

impl InvocationState {
    pub(super) fn new(
        io: ReadAppender,
        limiter: Limiter,
        grants: Option<std::sync::Arc<super::effects::Grants>>,
        http: super::effects::HttpClient,
    ) -> Result<Self, String> {
        let rng = super::effects::SliceRandom::for_grants(grants.as_deref());
        let (stdout, stderr) = (Capture::default(), Capture::default());
        // WASI's generators cannot fail (and its context seeds one from the OS even when a seed
        // is granted): a random source that does not work refuses the invocation now, not
        // inside a guest's call.
        super::effects::os_random_works()?;
        // No network or arguments, and no filesystem or environment but what is granted: a
        // slice gets only what the contract and its grants give it. Most commands make no WASI
        // call, so the context waits for the first (making one is about ten allocations and a
        // random generator seeded); granted directories are opened now, so that one that
        // cannot be fails the invocation before the guest runs.
        let wasi = match grants.as_deref() {
            Some(g) if !g.dirs.is_empty() => {
                let mut wasi = super::effects::Grants::wasi(Some(g), stdout.clone(), stderr.clone());
                g.preopen(&mut wasi)?;
                Some(wasi.build())
            }
            _ => None,
        };
        Ok(InvocationState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            deadline: Instant::now(),
            io,
            stdout,
            stderr,
            grants,
            http,
            rng,
            kv: None,
        })
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (grants, stdout, stderr) = (&self.grants, &self.stdout, &self.stderr);
        let ctx = self.wasi.get_or_insert_with(|| super::effects::Grants::wasi(grants.as_deref(), stdout.clone(), stderr.clone()).build());
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl types::Host for InvocationState {}

impl store::Host for InvocationState {
    async fn read(
        &mut self,
        query: types::Query,
        options: types::ReadOptions,
    ) -> wasmtime::Result<Result<types::ReadResult, types::Error>> {
        Ok(self.io.read(from_wit_query(query), from_wit_options(options)).await)
    }

    async fn append(&mut self, events: Vec<types::Event>) -> wasmtime::Result<Result<(), types::Error>> {
        Ok(self.io.append(events.into_iter().map(from_wit_event).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn appender() -> ReadAppender {
        ReadAppender::new(std::sync::Arc::new(MemoryStore::new()), Tenant::new("gate-marks").unwrap(), Access::ReadAppend)
    }

    fn course() -> Query {
        Query::item(QueryItem::tags(["course:1".to_string()]))
    }

    /// Only a read that really waited at the gate is marked, once: the epoch callback lets such
    /// a guest run on past one stale tick, and a guest whose reads never wait must not earn
    /// that (it would never give way).
    #[tokio::test]
    async fn a_read_is_marked_as_waited_only_when_the_gate_made_it_wait() {
        let mut io = appender().refuse_reads_when(Box::new(|_, _| Box::pin(std::future::ready(false))));
        io.read(course(), ReadOptions::default()).await.unwrap();
        assert!(io.take_waited().is_none(), "a gate that lets the read go at once");

        let mut io = appender().refuse_reads_when(Box::new(|_, _| {
            Box::pin(async {
                tokio::task::yield_now().await;
                false
            })
        }));
        let before = Instant::now();
        io.read(course(), ReadOptions::default()).await.unwrap();
        assert!(io.take_waited().is_some_and(|at| at >= before), "a gate that made the read wait");
        assert!(io.take_waited().is_none(), "taken once");
        io.read(course(), ReadOptions::default()).await.unwrap();
        assert!(io.take_waited().is_some(), "each wait is marked");
    }
}
