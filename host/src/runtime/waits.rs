//! Instances waiting on the host inside a call. A command's first attempt may wait in a read
//! for its turn on a hot boundary, and holds its instance (a pooling allocator slot) meanwhile.
//! A runtime lets at most a quarter of its instances wait so, so that a hot boundary cannot
//! take every slot and make the other slices `busy`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The budget of waiting instances of one runtime. Cloning gives another handle to it.
#[derive(Clone, Debug)]
pub struct WaitSlots {
    waiting: Arc<AtomicUsize>,
    max: usize,
}

/// One instance allowed to wait; the slot is free again when this is dropped.
#[derive(Debug)]
pub struct WaitSlot(Arc<AtomicUsize>);

impl WaitSlots {
    pub(crate) fn new(max: usize) -> Self {
        WaitSlots { waiting: Arc::default(), max }
    }

    /// A slot to wait in, or `None` when as many instances as allowed wait already.
    pub fn reserve(&self) -> Option<WaitSlot> {
        let max = self.max;
        self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(WaitSlot(self.waiting.clone()))
    }

    /// How many wait now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// How many may wait at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_wait_and_a_dropped_slot_is_free_again() {
        let slots = WaitSlots::new(2);
        let (a, b) = (slots.reserve().expect("first"), slots.reserve().expect("second"));
        assert!(slots.reserve().is_none(), "a third would pass the budget");
        assert_eq!(slots.waiting(), 2);
        drop(a);
        let c = slots.reserve().expect("a freed slot");
        drop((b, c));
        assert_eq!(slots.waiting(), 0);
    }
}
