//! The CommandRunner: runs a command in a fresh instance, and runs it again from scratch when
//! its append condition failed, with exponential backoff and jitter, up to `max_attempts`.
//!
//! Business errors (`rejected`), invalid input, `not-found` and store errors come back at once:
//! running again would not change them.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::runtime::{Access, InvokeError, ReadAppender, Slice};
use crate::store::{Position, SharedStore, StoreError, Tenant};

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
