//! The DCB event store: one interface, several backends, one set of semantics.
//!
//! Each tenant has one append-only log. An event has a type, a set of tags and opaque data.
//! A [`Query`] selects events by type and tags; a read returns matching events in position
//! order with the read's *consistency position*; an append is atomic and guarded by
//! [`AppendCondition`]s — "no event matching this query after that position" — checked in the
//! same atomic step as the write. That is all Dynamic Consistency Boundaries need: a command
//! reads what it cares about, decides, and appends only if nothing it read has changed.
//!
//! Backends:
//! - [`EmbeddedStore`]: the durable default, one data directory, group commit;
//! - [`MemoryStore`]: the same semantics in memory, for tests and demos;
//! - `FdbStore` (cargo feature `fdb`): a FoundationDB cluster shared by several hosts.
//!
//! The conformance suite in `tests/all/store/` runs against every backend.

mod embedded;
mod error;
#[cfg(feature = "fdb")]
mod fdb;
mod index;
mod limits;
mod memory;
mod subscription;
mod types;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

pub use embedded::{DEFAULT_GROUP_COMMIT_WINDOW, EmbeddedOptions, EmbeddedStore, IndexMemory, MAX_GROUP_COMMIT_WINDOW};
/// For `bench scale`: what a sealed segment's index file costs.
/// Offline checks and repairs of an embedded store's log (`counterpoint store check|repair`).
pub use embedded::check as embedded_check;
/// The embedded store's file I/O ([`EmbeddedStore::open_on`]): the real file system or a
/// simulated disk that injects power loss, torn writes and bit flips by seed.
pub use embedded::{disk as embedded_disk, sim_disk};
pub use error::StoreError;
#[cfg(feature = "fdb")]
pub use fdb::{default_limits as fdb_default_limits, FdbOptions, FdbStore};
/// For the other FoundationDB-backed parts (read-model state, leases, the slice catalog).
#[cfg(feature = "fdb")]
pub(crate) use fdb::{abort as fdb_abort, binding as fdb_binding, read_range as fdb_read_range, strinc as fdb_strinc};
pub use limits::Limits;
pub use memory::MemoryStore;
pub use subscription::Subscription;
pub use types::{AppendCondition, Event, InvalidPosition, Position, Query, QueryItem, ReadOptions, SequencedEvent, Tenant};

/// How many events a read hands over at a time.
pub const READ_BATCH: usize = 512;

/// How far status pages count a worker's lag: counting reads the events, so a worker further
/// behind reports this many (reading that far takes about 0.1 s on the embedded store).
pub const LAG_COUNTED_UP_TO: u64 = 1_000_000;

/// The interface every backend implements.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Streams the events of `tenant` matching `query`, in batches.
    ///
    /// The read sees the log as of its start (its snapshot). Once the stream is exhausted,
    /// [`ReadStream::consistency_position`] says up to where the read saw every matching event.
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError>;

    /// Appends `events` atomically if every condition holds, and returns their positions.
    async fn append(
        &self,
        tenant: &Tenant,
        events: Vec<Event>,
        conditions: Vec<AppendCondition>,
    ) -> Result<Vec<Position>, StoreError>;

    /// The position of the tenant's newest event (`Position::ZERO` for an empty log).
    async fn head(&self, tenant: &Tenant) -> Result<Position, StoreError>;

    /// How many events the tenant's log holds (the host's own records included). Positions
    /// have gaps on some backends: never count them instead.
    async fn event_count(&self, tenant: &Tenant) -> Result<u64, StoreError>;

    /// Delivers every event matching `query` after `after`, then every new one as it is
    /// appended: in order, with no gap and no duplicate.
    async fn subscribe(&self, tenant: &Tenant, query: Query, after: Option<Position>) -> Result<Subscription, StoreError>;

    fn limits(&self) -> &Limits;

    /// Whether the store can take writes: `Err` with the reason once it cannot (the embedded
    /// store after a failed write refuses every later one until it is reopened). Readiness
    /// checks ask this; it does no I/O.
    fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Like [`read`](Self::read), and also sees the appends the store has accepted (their
    /// conditions held, their positions are final) but not yet made durable. Only a command
    /// reads this way: whatever it decides is held back until what it read is durable (its
    /// own append is flushed after those events; a decision without an append waits for
    /// [`settle`](Self::settle)), so no one ever learns of an event that could still be lost.
    /// This is what lets a hot boundary decide more than one command per disk flush. Backends
    /// without such a stage read as `read` does.
    async fn read_accepted(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.read(tenant, query, options).await
    }

    /// The first half of [`append`](Self::append): returns once the store has accepted the
    /// append (its conditions held and its positions are assigned; appends accepted later are
    /// checked against it), with the rest, [`AcceptedAppend::durable`], to await. On backends
    /// without such a stage the append is durable when this returns.
    async fn append_accepted(
        &self,
        tenant: &Tenant,
        events: Vec<Event>,
        conditions: &[AppendCondition],
    ) -> Result<AcceptedAppend, StoreError> {
        let positions = self.append(tenant, events, conditions.to_vec()).await?;
        Ok(AcceptedAppend::durable_now(positions))
    }

    /// Waits until every append of `tenant` accepted before the call is durable (or fails with
    /// the store's error if it never will be). Immediate when nothing is pending.
    async fn settle(&self, _tenant: &Tenant) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether accepted appends have waited longer than a flush should take for the store to
    /// make them durable: its writer is behind, e.g. kept from a processor by busy workers. A
    /// hot boundary beside other commands then waits for the flush ([`settle`](Self::settle))
    /// before its next turn, since its chain of decisions does not wait for flushes while the
    /// commands beside it do. Always false for backends without an accepted stage.
    fn flushes_late(&self) -> bool {
        false
    }
}

/// An append the store has accepted but may not have made durable yet: nobody may be told of
/// it until [`durable`](Self::durable) says so.
pub struct AcceptedAppend {
    positions: Vec<Position>,
    durable: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
}

impl AcceptedAppend {
    pub fn new(positions: Vec<Position>, durable: impl Future<Output = Result<(), StoreError>> + Send + 'static) -> Self {
        AcceptedAppend { positions, durable: Box::pin(durable) }
    }

    pub fn durable_now(positions: Vec<Position>) -> Self {
        Self::new(positions, std::future::ready(Ok(())))
    }

    /// The positions the events will have once durable.
    pub fn positions(&self) -> &[Position] {
        &self.positions
    }

    /// Waits until the append is durable and returns its positions.
    pub async fn durable(self) -> Result<Vec<Position>, StoreError> {
        self.durable.await?;
        Ok(self.positions)
    }
}

/// A shared handle to any backend.
pub type SharedStore = Arc<dyn EventStore>;

/// A backend's source of batches for one read.
#[async_trait]
pub trait EventBatches: Send {
    /// The next batch, or `None` once the read is exhausted. Batches are never empty.
    async fn next_batch(&mut self) -> Result<Option<Vec<SequencedEvent>>, StoreError>;

    /// Valid once `next_batch` has returned `None`.
    fn consistency_position(&self) -> Position;

    /// The query read, handed back when the read is done.
    fn into_query(self: Box<Self>) -> Query;
}

/// The result of a read: events in batches, then the read's consistency position.
pub struct ReadStream {
    batches: Box<dyn EventBatches>,
    exhausted: bool,
}

impl ReadStream {
    pub fn new(batches: Box<dyn EventBatches>) -> Self {
        ReadStream { batches, exhausted: false }
    }

    pub async fn next_batch(&mut self) -> Result<Option<Vec<SequencedEvent>>, StoreError> {
        if self.exhausted {
            return Ok(None);
        }
        let batch = self.batches.next_batch().await?;
        self.exhausted = batch.is_none();
        Ok(batch)
    }

    /// The position up to which this read saw every matching event:
    /// the head at its snapshot for a complete read and for a backwards read cut by `limit`;
    /// the last delivered event for a forward read cut by `limit`.
    ///
    /// # Panics
    /// Before the stream is exhausted; that would be a bug in the caller.
    pub fn consistency_position(&self) -> Position {
        assert!(self.exhausted, "the consistency position is known once the read is exhausted");
        self.batches.consistency_position()
    }

    /// The condition that guards an append by exactly what this read saw: its query, after its
    /// consistency position (a command's read, without copying the query).
    ///
    /// # Panics
    /// Before the stream is exhausted; that would be a bug in the caller.
    pub fn into_condition(self) -> AppendCondition {
        let after = self.consistency_position();
        AppendCondition { query: self.batches.into_query(), after: Some(after) }
    }

    /// Counts the events that are not the host's own records, without holding them, up to
    /// `cap` (then stops reading and returns `cap`).
    pub async fn count_slice_events(mut self, cap: u64) -> Result<u64, StoreError> {
        let mut n = 0;
        while let Some(batch) = self.next_batch().await? {
            n += batch.iter().filter(|e| !e.event.is_host_record()).count() as u64;
            if n >= cap {
                return Ok(cap);
            }
        }
        Ok(n)
    }

    /// Reads everything into memory: for callers that know the read is small.
    pub async fn collect(mut self) -> Result<(Vec<SequencedEvent>, Position), StoreError> {
        let mut events = Vec::new();
        while let Some(batch) = self.next_batch().await? {
            events.extend(batch);
        }
        Ok((events, self.consistency_position()))
    }
}
