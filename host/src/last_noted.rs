//! When something last happened, noted and asked from any thread without a lock: one atomic
//! word of microseconds since the process's first use of it (0: never). The runner notes
//! commands running beside a hot boundary with it, and asks whether the last one was within a
//! window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The origin of every [`LastNoted`].
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_micros() -> u64 {
    ORIGIN.elapsed().as_micros() as u64 + 1
}

#[derive(Debug, Default)]
pub(crate) struct LastNoted(AtomicU64);

impl LastNoted {
    /// Notes that it happened now.
    pub fn note(&self) {
        self.0.store(now_micros(), Ordering::Relaxed);
    }

    /// Whether it was last noted within `window` of now.
    pub fn within(&self, window: Duration) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != 0 && now_micros() < at + window.as_micros() as u64
    }

    /// When it was last noted (microseconds, ordered; 0 for never).
    #[cfg(test)]
    pub fn at(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_counts_within_its_window_and_not_after() {
        let last = LastNoted::default();
        assert!(!last.within(Duration::from_secs(3600)), "never noted");
        last.note();
        assert!(last.within(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(3));
        assert!(!last.within(Duration::from_millis(1)), "noted longer ago than the window");
        let before = last.at();
        last.note();
        assert!(last.at() > before, "a later note is later");
    }
}
