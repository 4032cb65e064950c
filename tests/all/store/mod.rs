//! The event store: one conformance suite for every backend, racing and crash tests.

mod conformance;
mod crash;
mod embedded;
mod racing;

use counterpoint::store::{EmbeddedStore, MemoryStore, SharedStore};
use std::any::Any;
use std::sync::Arc;

/// A backend under test; holds whatever must outlive the store (its data directory) or clean
/// up after it.
pub struct Fixture {
    pub store: SharedStore,
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

pub fn memory() -> Fixture {
    Fixture { store: Arc::new(MemoryStore::new()), _guard: None }
}

pub fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    Fixture { store: Arc::new(store), _guard: Some(Box::new(dir)) }
}

/// The cluster named by `FDB_CLUSTER_FILE`, under a fresh random prefix (cleared afterwards),
/// so tests never see each other's data.
#[cfg(feature = "fdb")]
pub fn fdb() -> Fixture {
    use counterpoint::store::{FdbOptions, FdbStore};

    /// Clears the test's prefix when the test ends.
    struct Cleanup(FdbStore);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let store = self.0.clone();
            // Drop cannot await: clear from a thread with its own runtime.
            let cleared = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread().enable_all().build().map(|rt| rt.block_on(store.clear()))
            })
            .join();
            if !matches!(cleared, Ok(Ok(Ok(())))) {
                eprintln!("could not clear the test's FoundationDB prefix");
            }
        }
    }

    let cluster_file = std::env::var_os("FDB_CLUSTER_FILE").expect("FDB_CLUSTER_FILE names the test cluster");
    let mut options = FdbOptions::new(format!("test-{:032x}", fastrand::u128(..)));
    options.cluster_file = Some(cluster_file.into());
    let store = FdbStore::open(options).expect("open the FoundationDB store");
    Fixture { store: Arc::new(store.clone()), _guard: Some(Box::new(Cleanup(store))) }
}
