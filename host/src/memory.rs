//! How the process takes memory from the kernel: in 4 KiB pages, not transparent huge pages.
//!
//! mimalloc asks for transparent huge pages for its heap. The kernel then backs the first touch
//! of each 2 MiB of the heap with a whole zeroed huge page, and does it again where the
//! allocator gave memory back. A host that has just started fills its index block cache (64 MiB
//! by default) from thousands of small blocks, so its first reads paid for that zeroing: on this
//! machine, a fresh process's 100,000 tag reads of a 10 M-event log spent a quarter of their
//! time in it (`perf`), and ran 31,000–33,000 a second against 42,000–43,000 without huge pages.
//! The heap holds small, scattered blocks, where huge pages save little (two readers of a warm
//! cache: within 5 %), and its resident memory stays closer to what it uses. Databases that
//! hold such caches (Redis, MongoDB) advise the same.
//!
//! An operator who wants huge pages sets `MIMALLOC_ALLOW_THP=1`: the process then leaves the
//! choice to mimalloc, which reads that variable.

use std::ffi::OsStr;

/// The variable mimalloc reads for its own choice; when it is set, the process makes none.
const ALLOW_THP_VAR: &str = "MIMALLOC_ALLOW_THP";

/// Turns transparent huge pages off for this process (and the processes it starts), unless
/// `MIMALLOC_ALLOW_THP` is set: whether it did. The kernel's error where it refuses (one older
/// than 3.15 has no such setting); the process is then as it was.
pub fn prefer_small_pages() -> std::io::Result<bool> {
    if !small_pages_wanted(std::env::var_os(ALLOW_THP_VAR).as_deref()) {
        return Ok(false);
    }
    disable_huge_pages()?;
    Ok(true)
}

fn small_pages_wanted(allow_thp: Option<&OsStr>) -> bool {
    allow_thp.is_none()
}

#[cfg(target_os = "linux")]
fn disable_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes no memory of ours.
    let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn disable_huge_pages() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_leaves_huge_pages_to_mimalloc_when_its_variable_is_set() {
        assert!(small_pages_wanted(None));
        assert!(!small_pages_wanted(Some(OsStr::new("1"))));
        assert!(!small_pages_wanted(Some(OsStr::new("0"))));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_for_the_process_afterwards() {
        // Turning them off in the test process changes nothing any other test relies on.
        disable_huge_pages().expect("prctl(PR_SET_THP_DISABLE)");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("a THP_enabled line (Linux 5.0 or later)");
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}
