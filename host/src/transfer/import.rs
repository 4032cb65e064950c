//! A stream appended to a store, tenant by tenant, in order and in batches.
//!
//! Resuming needs no bookkeeping of its own: each batch is one atomic append, so the target
//! tenant always holds exactly a prefix of the stream's events. A run that finds the target
//! tenant not empty reads it from the start beside the stream, checks that each event it holds
//! is the stream's next one (type, tags, data, metadata), and appends only what follows; events
//! it holds are never appended again, and none is skipped. Every append is guarded by "no event
//! after the last one I know of", so a host or client writing to the target meanwhile stops the
//! import instead of interleaving with it.

use std::collections::VecDeque;
use std::io::{BufRead, Write};

use super::{MappingFile, PositionMap, Record, StreamReader, TransferError};
use crate::automations::{translate_record, CHECKPOINT_EVENT, DEAD_LETTER_EVENT, RESOLVED_EVENT};
use crate::store::{AppendCondition, Event, EventStore, Position, Query, ReadOptions, ReadStream, SequencedEvent, StoreError, Tenant};

#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Events per append at most; the target's limits may make a batch smaller.
    pub batch: usize,
    /// Import a one-tenant stream into this tenant instead of the one it names.
    pub into: Option<Tenant>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { batch: 4096, into: None }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub tenants: u64,
    /// Events appended by this run.
    pub appended: u64,
    /// Events the target held already (an earlier, interrupted run's), checked against the stream.
    pub verified: u64,
    /// Appends made (batches).
    pub appends: u64,
}

/// Appends every tenant of the stream to `store`, writing each event's old and new position to
/// `mapping`. A stream that turns out damaged stops the import at the damage; what was appended
/// before it is a prefix of the stream, and a re-run with an intact stream goes on from there.
pub async fn import<R: BufRead, M: Write>(
    store: &dyn EventStore,
    mut reader: StreamReader<R>,
    mut mapping: Option<&mut MappingFile<M>>,
    options: &ImportOptions,
) -> Result<ImportSummary, TransferError> {
    let mut summary = ImportSummary::default();
    let mut current: Option<TenantImport> = None;
    let inconsistent = |text: String| Err(TransferError::Inconsistent(text));
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Tenant { tenant, .. } => {
                if let Some(open) = &current {
                    return inconsistent(format!("tenant {tenant} begins before tenant {} is done", open.source));
                }
                let target = match &options.into {
                    Some(_) if summary.tenants > 0 => return inconsistent("--into takes a stream of one tenant; this one has more".into()),
                    Some(into) => into.clone(),
                    None => tenant.clone(),
                };
                current = Some(TenantImport::begin(store, tenant, target, options.batch).await?);
                summary.tenants += 1;
            }
            Record::Event(event) => match current.as_mut() {
                Some(open) => open.event(store, event, mapping.as_deref_mut()).await?,
                None => return inconsistent(format!("the event at position {} comes before any tenant line", event.position)),
            },
            Record::Done { tenant, events, .. } => {
                let Some(open) = current.take().filter(|open| open.source == tenant) else {
                    return inconsistent(format!("tenant {tenant} is done without having begun"));
                };
                let (appended, verified, appends) = open.finish(store, events, mapping.as_deref_mut()).await?;
                summary.appended += appended;
                summary.verified += verified;
                summary.appends += appends;
            }
            Record::End { tenants } => {
                if let Some(open) = &current {
                    return inconsistent(format!("the stream ends inside tenant {}", open.source));
                }
                if tenants != summary.tenants {
                    return inconsistent(format!("the end record counts {tenants} tenants, the stream holds {}", summary.tenants));
                }
            }
        }
    }
    Ok(summary)
}

/// One tenant's import under way.
struct TenantImport {
    source: Tenant,
    target: Tenant,
    map: PositionMap,
    /// While the target's existing events are matched against the stream: its read, and the
    /// rest of the batch it gave last.
    existing: Option<(ReadStream, VecDeque<SequencedEvent>)>,
    /// The target's last position: every append is conditional on nothing after it.
    guard: Position,
    pending: Vec<SequencedEvent>,
    pending_bytes: usize,
    batch: usize,
    max_bytes: usize,
    /// Source positions seen, and the last of them.
    seen: u64,
    last_old: Option<Position>,
    appended: u64,
    verified: u64,
    appends: u64,
}

impl TenantImport {
    async fn begin(store: &dyn EventStore, source: Tenant, target: Tenant, batch: usize) -> Result<Self, TransferError> {
        let failed = |source| TransferError::Store { tenant: target.clone(), source };
        let existing = if store.head(&target).await.map_err(failed)? == Position::ZERO {
            None
        } else {
            Some((store.read(&target, Query::all(), ReadOptions::default()).await.map_err(failed)?, VecDeque::new()))
        };
        let limits = store.limits();
        Ok(TenantImport {
            source,
            target,
            map: PositionMap::default(),
            existing,
            guard: Position::ZERO,
            pending: Vec::new(),
            pending_bytes: 0,
            batch: batch.clamp(1, limits.max_events_per_append),
            // Half the limit: index entries and keys count on some backends too.
            max_bytes: limits.max_append_bytes / 2,
            seen: 0,
            last_old: None,
            appended: 0,
            verified: 0,
            appends: 0,
        })
    }

    fn failed(&self, source: StoreError) -> TransferError {
        TransferError::Store { tenant: self.target.clone(), source }
    }

    async fn event<M: Write>(&mut self, store: &dyn EventStore, mut event: SequencedEvent, mut mapping: Option<&mut MappingFile<M>>) -> Result<(), TransferError> {
        if self.last_old.is_some_and(|last| event.position <= last) {
            return Err(TransferError::Inconsistent(format!(
                "tenant {}: position {} comes after {}; positions only increase",
                self.source,
                event.position,
                self.last_old.unwrap_or_default()
            )));
        }
        self.last_old = Some(event.position);
        self.seen += 1;
        // As the store keeps them, so that what it holds compares equal.
        event.event.tags.sort_unstable();
        event.event.tags.dedup();
        let names_positions = matches!(event.event.event_type.as_str(), CHECKPOINT_EVENT | DEAD_LETTER_EVENT | RESOLVED_EVENT);
        if names_positions {
            // The positions it names are before it: once the batch holding them is appended,
            // their new positions are known.
            self.flush(store, mapping.as_deref_mut()).await?;
            let map = &self.map;
            translate_record(&mut event, |old| map.floor(old)).map_err(|e| self.failed(e))?;
        }
        if self.existing.is_some()
            && let Some(held) = self.next_existing().await?
        {
            if held.event != event.event {
                return Err(TransferError::NotAPrefix {
                    tenant: self.target.clone(),
                    detail: format!("its event at position {} is not the stream's event at position {}", held.position, event.position),
                });
            }
            self.pair(event.position, held.position, mapping)?;
            self.verified += 1;
            return Ok(());
        }
        self.pending_bytes += event.event.payload_len() + event.event.event_type.len() + event.event.tags.iter().map(String::len).sum::<usize>();
        self.pending.push(event);
        if self.pending.len() >= self.batch || self.pending_bytes >= self.max_bytes {
            self.flush(store, mapping).await?;
        }
        Ok(())
    }

    /// The target's next existing event, or `None` once they are all matched (the import then
    /// appends after the last of them).
    async fn next_existing(&mut self) -> Result<Option<SequencedEvent>, TransferError> {
        let Some((read, buffered)) = self.existing.as_mut() else { return Ok(None) };
        loop {
            if let Some(event) = buffered.pop_front() {
                return Ok(Some(event));
            }
            match read.next_batch().await {
                Ok(Some(batch)) => buffered.extend(batch),
                Ok(None) => {
                    self.guard = read.consistency_position();
                    self.existing = None;
                    return Ok(None);
                }
                Err(err) => return Err(self.failed(err)),
            }
        }
    }

    fn pair<M: Write>(&mut self, old: Position, new: Position, mapping: Option<&mut MappingFile<M>>) -> Result<(), TransferError> {
        self.map.push(old, new);
        if let Some(mapping) = mapping {
            mapping.pair(&self.target, old, new).map_err(|source| TransferError::Write { what: "the mapping file", source })?;
        }
        Ok(())
    }

    /// Appends the pending events, halving a batch the target finds too large.
    async fn flush<M: Write>(&mut self, store: &dyn EventStore, mut mapping: Option<&mut MappingFile<M>>) -> Result<(), TransferError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending_bytes = 0;
        let mut chunks = vec![std::mem::take(&mut self.pending)];
        while let Some(chunk) = chunks.pop() {
            let events: Vec<Event> = chunk.iter().map(|e| e.event.clone()).collect();
            let condition = AppendCondition::new(Query::all(), Some(self.guard));
            match store.append(&self.target, events, vec![condition]).await {
                Ok(positions) => {
                    for (old, new) in chunk.iter().zip(&positions) {
                        self.pair(old.position, *new, mapping.as_deref_mut())?;
                    }
                    self.guard = *positions.last().expect("an append returns a position per event");
                    self.appended += positions.len() as u64;
                    self.appends += 1;
                }
                Err(StoreError::ConditionFailed { position, .. }) => {
                    return Err(TransferError::TargetChanged { tenant: self.target.clone(), position });
                }
                Err(StoreError::LimitExceeded { .. }) if chunk.len() > 1 => {
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    chunks.push(second);
                    chunks.push(first);
                }
                Err(source) => {
                    let at = chunk.first().map(|e| e.position).unwrap_or_default();
                    return Err(TransferError::Append { tenant: self.target.clone(), at, source });
                }
            }
        }
        Ok(())
    }

    /// After the tenant's done record: appends the rest, checks the count. Returns (appended,
    /// verified, appends).
    async fn finish<M: Write>(mut self, store: &dyn EventStore, events: u64, mapping: Option<&mut MappingFile<M>>) -> Result<(u64, u64, u64), TransferError> {
        if let Some(extra) = self.next_existing().await? {
            return Err(TransferError::NotAPrefix {
                tenant: self.target.clone(),
                detail: format!("it holds more events than the stream: position {} is past the stream's last event", extra.position),
            });
        }
        self.flush(store, mapping).await?;
        if self.seen != events {
            return Err(TransferError::Inconsistent(format!(
                "tenant {}: the stream holds {} events, its done record says {events}",
                self.source, self.seen
            )));
        }
        Ok((self.appended, self.verified, self.appends))
    }
}
