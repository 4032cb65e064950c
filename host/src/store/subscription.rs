//! Live tailing for every backend: catch up by reading, then wait for the head to move.
//!
//! A subscription always reads from its last delivered position, so the switch from catching
//! up to live has no gap and no duplicate by construction.

use std::collections::VecDeque;

use tokio::sync::watch;

use super::{Position, Query, ReadOptions, SequencedEvent, SharedStore, StoreError, Tenant, READ_BATCH};

pub struct Subscription {
    store: SharedStore,
    tenant: Tenant,
    query: Query,
    last: Position,
    heads: watch::Receiver<Position>,
    buffer: VecDeque<SequencedEvent>,
}

impl Subscription {
    /// `heads` must carry the tenant's head, published after the events up to it are readable.
    pub fn new(
        store: SharedStore,
        tenant: Tenant,
        query: Query,
        after: Option<Position>,
        heads: watch::Receiver<Position>,
    ) -> Self {
        Subscription { store, tenant, query, last: after.unwrap_or(Position::ZERO), heads, buffer: VecDeque::new() }
    }

    /// Events already read and waiting to be delivered: `next` returns them without waiting.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The position of the last event delivered (or the starting point).
    pub fn position(&self) -> Position {
        self.last
    }

    /// The next matching event, waiting for one to be appended if need be.
    pub async fn next(&mut self) -> Result<SequencedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.last = event.position;
                return Ok(event);
            }
            let options = ReadOptions { after: Some(self.last), limit: Some(READ_BATCH as u64), backwards: false };
            let mut stream = self.store.read(&self.tenant, self.query.clone(), options).await?;
            while let Some(batch) = stream.next_batch().await? {
                self.buffer.extend(batch);
            }
            if !self.buffer.is_empty() {
                continue;
            }
            // Nothing new up to the read's snapshot: wait until the head moves past it.
            let seen = stream.consistency_position();
            self.heads
                .wait_for(|head| *head > seen)
                .await
                .map_err(|_| StoreError::Unavailable("the store was closed".into()))?;
        }
    }
}
