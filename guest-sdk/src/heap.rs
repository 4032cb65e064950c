//! The slice's heap. An instance runs one call and is then thrown away, so most of what a call
//! allocates lives until its end: those allocations are bumped from an arena, and never freed
//! one by one. Past the arena, wasi-libc's allocator (`System`) serves the rest, so a call that
//! allocates and frees in a loop (a projection folding thousands of events) reuses its memory as
//! it always did: the arena adds at most 256 KiB to what an instance uses.
//!
//! Turned off with the SDK's default feature `arena` (a slice with its own
//! `#[global_allocator]` must turn it off).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};

/// A slice's instance's arena.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static HEAP: Arena<{ 256 << 10 }> = Arena::new();

/// `N` bytes handed out in order; the rest from `System`.
#[repr(C, align(16))]
pub(crate) struct Arena<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    /// The offset of the arena's first free byte.
    used: Cell<usize>,
}

// A slice's instance has one thread (wasm32 without threads).
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub(crate) const fn new() -> Self {
        Arena { bytes: UnsafeCell::new([0; N]), used: Cell::new(0) }
    }

    fn base(&self) -> usize {
        self.bytes.get() as usize
    }

    /// The offset of `ptr` in the arena, if it is in it.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        (ptr as usize).checked_sub(self.base()).filter(|&offset| offset < N)
    }

    /// `size` bytes aligned to `align` from the arena, if they fit.
    fn bump(&self, size: usize, align: usize) -> Option<*mut u8> {
        let start = (self.base() + self.used.get()).checked_next_multiple_of(align)? - self.base();
        let end = start.checked_add(size).filter(|&end| end <= N)?;
        self.used.set(end);
        Some((self.base() + start) as *mut u8)
    }
}

unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout.size(), layout.align()) {
            Some(ptr) => ptr,
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.offset_of(ptr) {
            // The last allocation gives its bytes back (a temporary freed before the next one).
            Some(offset) if offset + layout.size() == self.used.get() => self.used.set(offset),
            Some(_) => {}
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset_of(ptr) else {
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The last allocation grows or shrinks where it is (a vector being filled).
        if offset + layout.size() == self.used.get() && offset + new_size <= N {
            self.used.set(offset + new_size);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        let grown = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !grown.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, grown, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn allocations_are_aligned_apart_and_in_the_arena_while_they_fit() {
        let arena = Arena::<1024>::new();
        let a = unsafe { arena.alloc(layout(3, 1)) };
        let b = unsafe { arena.alloc(layout(8, 8)) };
        let c = unsafe { arena.alloc(layout(100, 64)) };
        assert_eq!((arena.offset_of(a), arena.offset_of(b)), (Some(0), Some(8)));
        assert_eq!(c as usize % 64, 0);
        assert!(arena.offset_of(c).is_some_and(|offset| offset >= 16));
        // Past the arena: the system's allocator, freed there.
        let big = layout(2048, 8);
        let outside = unsafe { arena.alloc(big) };
        assert!(!outside.is_null() && arena.offset_of(outside).is_none());
        unsafe { arena.dealloc(outside, big) };
    }

    #[test]
    fn the_last_allocation_gives_its_bytes_back_and_grows_in_place() {
        let arena = Arena::<1024>::new();
        let a = unsafe { arena.alloc(layout(16, 8)) };
        let temporary = unsafe { arena.alloc(layout(100, 8)) };
        unsafe { arena.dealloc(temporary, layout(100, 8)) };
        assert_eq!(arena.used.get(), 16);
        // An earlier allocation freed is not given back (the arena is freed whole, with its instance).
        let b = unsafe { arena.alloc(layout(16, 8)) };
        unsafe { arena.dealloc(a, layout(16, 8)) };
        assert_eq!(arena.used.get(), 32);
        let grown = unsafe { arena.realloc(b, layout(16, 8), 500) };
        assert_eq!((grown, arena.used.get()), (b, 516));
    }

    #[test]
    fn a_block_grown_past_the_arena_moves_out_with_its_bytes() {
        let arena = Arena::<1024>::new();
        let first = layout(600, 1);
        let a = unsafe { arena.alloc(first) };
        unsafe { std::ptr::write_bytes(a, 0xab, 600) };
        let moved = unsafe { arena.realloc(a, first, 4000) };
        assert!(arena.offset_of(moved).is_none());
        assert!(unsafe { std::slice::from_raw_parts(moved, 600) }.iter().all(|&b| b == 0xab));
        assert_eq!(arena.used.get(), 0, "the arena's bytes came back");
        unsafe { arena.dealloc(moved, layout(4000, 1)) };
    }

    #[test]
    fn once_the_arena_is_full_a_loop_that_allocates_and_frees_reuses_the_systems_memory() {
        let arena = Arena::<1024>::new();
        let filler = unsafe { arena.alloc(layout(1000, 1)) };
        assert!(arena.offset_of(filler).is_some());
        let block = layout(64 << 10, 8);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let ptr = unsafe { arena.alloc(block) };
            assert!(arena.offset_of(ptr).is_none());
            seen.insert(ptr as usize);
            unsafe { arena.dealloc(ptr, block) };
        }
        assert!(seen.len() < 10, "freed blocks are reused: {} addresses", seen.len());
    }
}
