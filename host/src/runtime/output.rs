//! A slice's stdout and stderr: captured per invocation (bounded), then logged through
//! `tracing` under the slice's name, at most a few lines per second per slice.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Bytes of output kept per invocation; the rest is dropped (and counted), never an error to
/// the guest, whose `println!` would otherwise panic.
const CAPTURE_BYTES: usize = 16 << 10;
/// Lines a slice may log per second; the surplus is summarized.
const LINES_PER_SECOND: f64 = 20.0;

#[derive(Clone, Default)]
pub(super) struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn write(&self, buf: &[u8]) {
        let mut captured = self.0.lock().expect("capture lock");
        let room = CAPTURE_BYTES.saturating_sub(captured.bytes.len());
        let kept = buf.len().min(room);
        captured.bytes.extend_from_slice(&buf[..kept]);
        captured.dropped += buf.len() - kept;
    }

    fn take(&self) -> (Vec<u8>, usize) {
        let mut captured = self.0.lock().expect("capture lock");
        (std::mem::take(&mut captured.bytes), std::mem::take(&mut captured.dropped))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A token bucket shared by all invocations of one slice.
pub(super) struct LogBudget {
    state: Mutex<(f64, Instant)>,
}

impl LogBudget {
    pub fn new() -> Self {
        LogBudget { state: Mutex::new((LINES_PER_SECOND, Instant::now())) }
    }

    fn take(&self) -> bool {
        let mut state = self.state.lock().expect("budget lock");
        let (tokens, last) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * LINES_PER_SECOND).min(LINES_PER_SECOND);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Logs what an invocation printed.
pub(super) fn flush(slice: &str, stream: &'static str, capture: &Capture, budget: &LogBudget) {
    let (bytes, mut dropped) = capture.take();
    if bytes.is_empty() && dropped == 0 {
        return;
    }
    for line in String::from_utf8_lossy(&bytes).lines() {
        if budget.take() {
            tracing::info!(target: "counterpoint::slice", slice, stream, "{line}");
        } else {
            dropped += line.len() + 1;
        }
    }
    if dropped > 0 {
        tracing::debug!(target: "counterpoint::slice", slice, stream, dropped_bytes = dropped, "slice output dropped by the rate limit");
    }
}
