//! The CommandRunner: runs a command in a fresh instance, and runs it again from scratch when
//! its append condition failed, with exponential backoff and jitter, up to `max_attempts`.
//!
//! Business errors (`rejected`), invalid input, `not-found` and store errors come back at once:
//! running again would not change them.

use std::time::{Duration, Instant};

use tracing::Instrument;

use serde::{Deserialize, Serialize};

use crate::runtime::{Access, InvokeError, ReadAppender, Slice};
use crate::store::{AppendCondition, Event, Position, Query, QueryItem, ReadOptions, SharedStore, StoreError, Tenant};

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
    pub max_attempts: u32,
    /// The first retry waits about this long; each further one twice as long (with jitter).
    pub backoff: Duration,
}

impl Default for CommandRunner {
    fn default() -> Self {
        CommandRunner { max_attempts: 4, backoff: Duration::from_millis(50) }
    }
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
        let record_query = Query::item(QueryItem::types([IDEMPOTENCY_EVENT]).with_tag(format!("idempotency:{}", key.key)));
        let max = self.max_attempts.max(1);
        for attempt in 1..=max {
            // An earlier result under this key?
            let (earlier, seen) = recorded(store, tenant, &record_query, slice, command, key).await?;
            if let Some(out) = earlier {
                return Ok(out);
            }
            let io = ReadAppender::new(store.clone(), tenant.clone(), Access::ReadAppend);
            let (output, io) = match slice.execute(io, command, payload).await {
                Ok(done) => done,
                Err(err) => {
                    // A racing request with this key may have run the command meanwhile (this
                    // run then saw its events: "already placed"): its result is the answer.
                    if let (Some(out), _) = recorded(store, tenant, &record_query, slice, command, key).await? {
                        return Ok(out);
                    }
                    return Err(err);
                }
            };
            let record = IdempotencyRecord {
                slice: slice.name().into(),
                command: command.into(),
                output: output.clone(),
                events: io.staged.as_ref().map_or(0, |e| e.len() as u64),
                at: unix_now(),
            };
            let mut event = Event::new(IDEMPOTENCY_EVENT).tag(format!("idempotency:{}", key.key));
            event.data = rmp_serde::to_vec_named(&record).expect("the record encodes");
            let guard = AppendCondition::new(record_query.clone(), Some(seen));
            match io.commit_with(vec![event], vec![guard]).await {
                Ok(positions) => return Ok(CommandOutput { output, positions, attempts: attempt }),
                Err(StoreError::ConditionFailed { .. }) if attempt < max => tokio::time::sleep(self.backoff_for(attempt)).await,
                Err(StoreError::ConditionFailed { .. }) => {
                    // The last attempt lost the race to a request with this key: its result.
                    if let (Some(out), _) = recorded(store, tenant, &record_query, slice, command, key).await? {
                        return Ok(out);
                    }
                    return Err(InvokeError::Conflict(format!("{command}: gave up after {max} attempts")));
                }
                Err(err) => return Err(InvokeError::StoreFailed(err)),
            }
        }
        unreachable!("the loop returns on its last attempt")
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
        let span = tracing::debug_span!("command", tenant = %tenant, slice = slice.name(), command, attempts = tracing::field::Empty);
        let started = Instant::now();
        let (result, attempts) = self.attempts(slice, store, tenant, command, payload).instrument(span.clone()).await;
        let _entered = span.enter();
        span.record("attempts", attempts);
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
        let max = self.max_attempts.max(1);
        for attempt in 1..=max {
            let io = ReadAppender::new(store.clone(), tenant.clone(), Access::ReadAppend);
            let (output, io) = match slice.execute(io, command, payload).await {
                Ok(done) => done,
                Err(err) => return (Err(err), attempt),
            };
            match io.commit().await {
                Ok(positions) => return (Ok(CommandOutput { output, positions, attempts: attempt }), attempt),
                Err(StoreError::ConditionFailed { .. }) if attempt < max => {
                    let delay = self.backoff_for(attempt);
                    tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "append condition failed; running the command again");
                    tokio::time::sleep(delay).await;
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    let message = format!("{command}: the events it read kept changing; gave up after {max} attempts");
                    return (Err(InvokeError::Conflict(message)), attempt);
                }
                Err(err) => return (Err(InvokeError::StoreFailed(err)), attempt),
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn backoff_for(&self, attempt: u32) -> Duration {
        let base = self.backoff.mul_f64(2f64.powi(attempt as i32 - 1));
        base.mul_f64(0.5 + fastrand::f64())
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
    let (records, seen) = store.read(tenant, record_query.clone(), ReadOptions::default().backwards().limit(1)).await?.collect().await?;
    let Some(found) = records.first() else { return Ok((None, seen)) };
    let record: IdempotencyRecord = rmp_serde::from_slice(&found.event.data)
        .map_err(|e| InvokeError::Store(format!("an idempotency record does not decode: {e}")))?;
    if unix_now().saturating_sub(record.at) > key.retention.as_secs() {
        return Ok((None, seen));
    }
    if record.slice != slice.name() || record.command != command {
        return Err(InvokeError::InvalidInput(format!("Idempotency-Key {:?} was used for {} {}", key.key, record.slice, record.command)));
    }
    let options = ReadOptions::default().after(found.position).limit(record.events.max(1));
    let (events, _) = store.read(tenant, Query::all(), options).await?.collect().await?;
    let positions = events.iter().take(record.events as usize).map(|e| e.position).collect();
    Ok((Some(CommandOutput { output: record.output, positions, attempts: 0 }), seen))
}
