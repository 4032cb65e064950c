//! The async runtime the host runs on: tokio's multi-threaded scheduler, one worker per processor
//! the process may run on, each worker kept on a processor of its own.
//!
//! **Why each worker stays on its own processor.** A worker that finds no work parks, and is
//! woken when a task is: by the other worker, or by the store's writer when a flush ends. Where a
//! woken thread runs is the kernel's choice, and a kernel that packs threads onto few processors
//! (as this project's virtual machines do, to leave the others idle) puts it beside the thread
//! that woke it. Measured with `bench contention` on the embedded store: both workers then shared
//! one processor for 5 – 13 ms at a time while the other ran only the writer's flushes, the two
//! processors were 1.4 – 1.5 busy, and a hot boundary's commands waited up to 1.8 ms after their
//! flush to be resumed. With each worker on its own processor they were 1.7 – 1.8 busy, and the
//! hot course decided about a third more with half the 99th percentile (figures in the README,
//! Performance).
//!
//! **When not.** Set [`PIN_ENV`] to `off`; on a machine shared with other busy processes a
//! kept worker cannot move away from them. Workers also go where the kernel puts them when the
//! process may run on one processor only, under a CPU quota (fewer processors at once than it may
//! run on: tokio then starts fewer workers), when `TOKIO_WORKER_THREADS` asks for another number
//! of workers than processors, and off Linux.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable that turns keeping each worker on its own processor `on` (the
/// default) or `off`.
pub const PIN_ENV: &str = "COUNTERPOINT_PIN_WORKERS";

/// Where the runtime's workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Worker `i` (in the order they first go idle) stays on processor `cpus[i]`.
    Pinned(Vec<usize>),
    /// The workers go where the kernel puts them, for this reason.
    Free(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("{PIN_ENV}={0:?}: expected on or off")]
    BadSetting(String),
    #[error("cannot start the async runtime: {0}")]
    Start(#[from] std::io::Error),
}

/// Decides where the workers run: `allowed`, the processors this process may run on;
/// `parallelism`, how many it may use at once (fewer under a CPU quota); `pin`, the value of
/// [`PIN_ENV`]; `workers`, the value of `TOKIO_WORKER_THREADS`.
pub fn placement(allowed: &[usize], parallelism: usize, pin: Option<&str>, workers: Option<&str>) -> Result<Placement, WorkersError> {
    match pin.map(str::trim) {
        None | Some("on" | "1" | "true") => {}
        Some("off" | "0" | "false") => return Ok(Placement::Free(format!("{PIN_ENV} is off"))),
        Some(other) => return Err(WorkersError::BadSetting(other.to_string())),
    }
    if !cfg!(target_os = "linux") {
        return Ok(Placement::Free("workers are kept on processors on Linux only".into()));
    }
    if allowed.len() < 2 {
        return Ok(Placement::Free(format!("this process may run on {} processor(s)", allowed.len())));
    }
    if parallelism != allowed.len() {
        // A worker per processor would be more workers than the quota runs at once.
        return Ok(Placement::Free(format!("a CPU quota of {parallelism} on {} processors", allowed.len())));
    }
    if let Some(workers) = workers
        && workers.trim().parse::<usize>().ok() != Some(allowed.len())
    {
        return Ok(Placement::Free(format!("TOKIO_WORKER_THREADS={workers} on {} processors", allowed.len())));
    }
    Ok(Placement::Pinned(allowed.to_vec()))
}

/// The runtime, its workers placed as [`PIN_ENV`] and the process's processors say.
pub fn runtime() -> Result<(tokio::runtime::Runtime, Placement), WorkersError> {
    let pin = std::env::var(PIN_ENV).ok();
    let workers = std::env::var("TOKIO_WORKER_THREADS").ok();
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    runtime_placed(placement(&allowed_processors(), parallelism, pin.as_deref(), workers.as_deref())?)
}

/// A runtime whose workers are placed as `placement` says.
pub fn runtime_placed(placement: Placement) -> Result<(tokio::runtime::Runtime, Placement), WorkersError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Placement::Pinned(cpus) = &placement {
        builder.worker_threads(cpus.len());
        let (cpus, next) = (Arc::new(cpus.clone()), Arc::new(AtomicUsize::new(0)));
        // A thread starts with the processors of the thread that started it: a blocking-pool
        // thread started from a kept worker (`spawn_blocking`) would be kept on its processor
        // too. Every thread the runtime starts may run on all of them, until a worker parks.
        let all = cpus.clone();
        builder.on_thread_start(move || keep_within(&all));
        // Only workers park (the blocking pool's threads do not), so the first park tells a
        // worker from the pool's threads; a worker parks as soon as it starts, having no work.
        builder.on_thread_park(move || {
            thread_local!(static PLACED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
            if PLACED.replace(true) {
                return;
            }
            if let Some(&cpu) = cpus.get(next.fetch_add(1, Ordering::Relaxed)) {
                keep_within(&[cpu]);
            }
        });
    }
    Ok((builder.build()?, placement))
}

/// The processors the calling thread may run on (its affinity), in order.
pub fn allowed_processors() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    if let Ok(set) = rustix::thread::sched_getaffinity(None) {
        return (0..rustix::thread::CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect();
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// Keeps the calling thread on `cpus`. Failure changes nothing a caller relies on: logged.
fn keep_within(cpus: &[usize]) {
    #[cfg(target_os = "linux")]
    {
        let mut set = rustix::thread::CpuSet::new();
        for &cpu in cpus {
            set.set(cpu);
        }
        if let Err(err) = rustix::thread::sched_setaffinity(None, &set) {
            tracing::warn!(%err, ?cpus, "cannot set the processors a runtime thread runs on; it goes where the kernel puts it");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpus;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_kept_on_processors_unless_told_not_to_or_they_cannot_be() {
        let pinned = |cpus: &[usize]| Placement::Pinned(cpus.to_vec());
        assert_eq!(placement(&[0, 1], 2, None, None).unwrap(), pinned(&[0, 1]));
        assert_eq!(placement(&[2, 5, 7], 3, Some("on"), Some("3")).unwrap(), pinned(&[2, 5, 7]));
        assert!(matches!(placement(&[0, 1], 2, Some("off"), None).unwrap(), Placement::Free(why) if why.contains("off")));
        assert!(matches!(placement(&[3], 1, None, None).unwrap(), Placement::Free(why) if why.contains("1 processor")));
        assert!(matches!(placement(&[0, 1], 2, None, Some("4")).unwrap(), Placement::Free(why) if why.contains("TOKIO_WORKER_THREADS=4")));
        let quota = placement(&(0..16).collect::<Vec<_>>(), 2, None, None).unwrap();
        assert!(matches!(quota, Placement::Free(why) if why.contains("quota of 2 on 16")));
        let err = placement(&[0, 1], 2, Some("sometimes"), None).unwrap_err();
        assert_eq!(err.to_string(), "COUNTERPOINT_PIN_WORKERS=\"sometimes\": expected on or off");
    }

    /// The processors each worker thread that ran one of many tasks may run on.
    #[cfg(target_os = "linux")]
    fn workers_affinity(runtime: &tokio::runtime::Runtime) -> std::collections::HashMap<std::thread::ThreadId, Vec<usize>> {
        // Every worker has started and gone idle (parked) by now.
        std::thread::sleep(std::time::Duration::from_millis(200));
        runtime.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    tokio::spawn(async {
                        // Long enough that the other worker steals some of the tasks.
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        (std::thread::current().id(), allowed_processors())
                    })
                })
                .collect();
            let mut seen = std::collections::HashMap::new();
            for task in tasks {
                let (thread, cpus) = task.await.unwrap();
                seen.insert(thread, cpus);
            }
            seen
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn each_worker_runs_on_a_processor_of_its_own() {
        let allowed = allowed_processors();
        if allowed.len() < 2 {
            eprintln!("one processor: nothing to place");
            return;
        }
        let (runtime, placed) = runtime_placed(Placement::Pinned(allowed.clone())).unwrap();
        assert_eq!(placed, Placement::Pinned(allowed.clone()));
        let seen = workers_affinity(&runtime);
        assert!(seen.len() >= 2, "the tasks ran on {} worker(s)", seen.len());
        let mut kept: Vec<usize> = Vec::new();
        for cpus in seen.values() {
            assert_eq!(cpus.len(), 1, "a worker may run on {cpus:?}");
            assert!(allowed.contains(&cpus[0]));
            kept.push(cpus[0]);
        }
        kept.sort_unstable();
        kept.dedup();
        assert_eq!(kept.len(), seen.len(), "two workers share a processor: {seen:?}");
        // A blocking thread started from a kept worker is not kept with it.
        let blocking = runtime.block_on(async { tokio::spawn(async { tokio::task::spawn_blocking(allowed_processors).await.unwrap() }).await.unwrap() });
        assert_eq!(blocking, allowed, "a blocking thread started by a worker");

        let (runtime, _) = runtime_placed(Placement::Free("told not to".into())).unwrap();
        assert!(workers_affinity(&runtime).values().all(|cpus| *cpus == allowed));
    }
}
