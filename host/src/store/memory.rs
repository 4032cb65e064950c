//! The in-memory backend: the same semantics as every other, nothing on disk.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use super::index::{ReadCursor, TenantIndex};
use super::{
    AppendCondition, Event, EventBatches, EventStore, Limits, Position, Query, ReadOptions, ReadStream,
    SequencedEvent, StoreError, Subscription, Tenant, READ_BATCH,
};

/// An event store held in memory. Cloning gives another handle to the same store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    limits: Limits,
    tenants: RwLock<HashMap<Tenant, Arc<TenantLog>>>,
}

struct TenantLog {
    log: RwLock<Log>,
    heads: watch::Sender<Position>,
}

#[derive(Default)]
struct Log {
    index: TenantIndex,
    events: Vec<SequencedEvent>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        MemoryStore { inner: Arc::new(Inner { limits, tenants: RwLock::default() }) }
    }

    fn tenant(&self, tenant: &Tenant) -> Option<Arc<TenantLog>> {
        self.inner.tenants.read().expect("tenants lock").get(tenant).cloned()
    }

    fn tenant_or_create(&self, tenant: &Tenant) -> Arc<TenantLog> {
        if let Some(log) = self.tenant(tenant) {
            return log;
        }
        let mut tenants = self.inner.tenants.write().expect("tenants lock");
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(TenantLog { log: RwLock::default(), heads: watch::Sender::new(Position::ZERO) })
            })
            .clone()
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.inner.limits.check_read(&query, &options)?;
        let log = self.tenant(tenant);
        let after = options.after.map_or(0, Position::dense);
        let cursor = match &log {
            Some(log) => ReadCursor::new(&log.log.read().expect("log lock").index, query, after, options.limit, options.backwards),
            None => ReadCursor::new(&TenantIndex::default(), query, after, options.limit, options.backwards),
        };
        Ok(ReadStream::new(Box::new(MemoryBatches { log, cursor })))
    }

    async fn append(
        &self,
        tenant: &Tenant,
        mut events: Vec<Event>,
        conditions: Vec<AppendCondition>,
    ) -> Result<Vec<Position>, StoreError> {
        self.inner.limits.check_append(&mut events, &conditions)?;
        let tenant_log = self.tenant_or_create(tenant);
        let head = {
            let mut log = tenant_log.log.write().expect("log lock");
            log.index.check(&conditions)?;
            let mut positions = Vec::with_capacity(events.len());
            for event in events {
                let position = log.index.head() + 1;
                log.index.insert(position, &event);
                log.events.push(SequencedEvent { position: Position::new(position), event });
                positions.push(Position::new(position));
            }
            let head = log.index.head();
            log.index.publish(head);
            positions
        };
        tenant_log.heads.send_replace(*head.last().expect("an append has events"));
        Ok(head)
    }

    async fn head(&self, tenant: &Tenant) -> Result<Position, StoreError> {
        Ok(self.tenant(tenant).map_or(Position::ZERO, |log| *log.heads.borrow()))
    }

    async fn event_count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        Ok(self.tenant(tenant).map_or(0, |log| log.log.read().expect("log lock").events.len() as u64))
    }

    async fn subscribe(&self, tenant: &Tenant, query: Query, after: Option<Position>) -> Result<Subscription, StoreError> {
        self.inner.limits.check_query(&query)?;
        let heads = self.tenant_or_create(tenant).heads.subscribe();
        Ok(Subscription::new(Arc::new(self.clone()), tenant.clone(), query, after, heads))
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

struct MemoryBatches {
    log: Option<Arc<TenantLog>>,
    cursor: ReadCursor,
}

#[async_trait]
impl EventBatches for MemoryBatches {
    async fn next_batch(&mut self) -> Result<Option<Vec<SequencedEvent>>, StoreError> {
        let Some(log) = &self.log else { return Ok(None) };
        if self.cursor.is_done() {
            return Ok(None);
        }
        let log = log.log.read().expect("log lock");
        let positions = self.cursor.next_positions(&log.index, READ_BATCH);
        if positions.is_empty() {
            return Ok(None);
        }
        Ok(Some(positions.iter().map(|&p| log.events[p as usize - 1].clone()).collect()))
    }

    fn consistency_position(&self) -> Position {
        Position::new(self.cursor.consistency_position())
    }

    fn into_query(self: Box<Self>) -> Query {
        self.cursor.into_query()
    }
}
