//! The embedded store's own threads: the writer, the sealer and the merger.
//!
//! They run below the threads that decide commands: on Linux each lowers its own priority
//! (its nice value raised by [`NICE`]) as it starts. Their work is off a command's way: a command
//! decides on accepted events, before their flush, and sealing and merging happen behind the
//! log. Yet the writer wakes thousands of times a second (at each append it is given, at each
//! flush's end), and at equal priority the kernel lets every wake-up preempt a worker in the
//! middle of a command, hot boundaries' turns included. Lower, a waking store thread runs on
//! a free processor or when a worker's slice ends: `bench contention` decided about half as many
//! again subscriptions a second on one course, more on 64, with a lower 99th percentile (see the
//! README, Performance). A store thread still gets its share whenever the workers are busy: a lower
//! priority is a smaller share, never none.

use std::thread::JoinHandle;

use crate::store::StoreError;

/// How far the store threads' nice value is raised above the process's (0 by default; 19 is
/// the lowest priority). At 10 a store thread gets about a tenth of a processor that a busy
/// worker shares with it: enough for the writer at the flush rates measured here, where answers
/// (which wait for their flush) came sooner, not later.
const NICE: i32 = 10;

/// Starts the store thread `name` (at most 15 characters: what Linux shows in `top` and `/proc`)
/// running `work` below the workers' priority.
pub(super) fn spawn<T: Send + 'static>(name: &'static str, work: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_priority();
            work()
        })
        .map_err(|e| StoreError::io(&format!("starting the {name} thread"), e))
}

/// Lowers the calling thread's priority by [`NICE`] (to at most 19). Failure changes nothing a
/// caller relies on: logged, not fatal.
#[cfg(target_os = "linux")]
fn lower_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    // On Linux a nice value belongs to a thread: `None` (0) is the calling thread alone.
    let lowered = getpriority_process(None).and_then(|nice| setpriority_process(None, (nice + NICE).min(19)));
    if let Err(err) = lowered {
        tracing::debug!(%err, "cannot lower a store thread's priority; it runs at the workers'");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
