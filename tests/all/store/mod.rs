//! The event store: one conformance suite for every backend, racing and crash tests.

mod chain;
mod conformance;
mod crash;
mod damage;
mod embedded;
mod fdb;
mod indexes;
mod open_files;
mod power_loss;
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

/// The embedded store with segments of a few appends: reads and probes cross sealed segments
/// (their index files) while the sealer indexes them.
pub fn embedded_sealed() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = counterpoint::store::EmbeddedOptions { segment_bytes: 512, ..Default::default() };
    let store = EmbeddedStore::open_with(dir.path(), options).expect("open embedded store");
    Fixture { store: Arc::new(store), _guard: Some(Box::new(dir)) }
}

/// Segments of 1 MiB whose index the sealer checkpoints each time the open one grows
/// `every_bytes`, at once, and never at close: what an open finds after a crash.
pub fn checkpointed_while_running(every_bytes: u64) -> counterpoint::store::EmbeddedOptions {
    counterpoint::store::EmbeddedOptions {
        segment_bytes: 1 << 20,
        checkpoint_every_bytes: every_bytes,
        checkpoint_interval: std::time::Duration::ZERO,
        checkpoint_min_bytes: u64::MAX,
        ..Default::default()
    }
}

/// A store on the cluster named by `FDB_CLUSTER_FILE`, under a fresh random prefix, and a guard
/// that clears the prefix (every log, read model, lease of the test) when dropped.
#[cfg(feature = "fdb")]
pub fn fdb_store() -> (counterpoint::store::FdbStore, String, Box<dyn Any + Send + Sync>) {
    fdb_store_with(|_| {})
}

/// [`fdb_store`] with options changed by `configure`.
#[cfg(feature = "fdb")]
pub fn fdb_store_with(
    configure: impl FnOnce(&mut counterpoint::store::FdbOptions),
) -> (counterpoint::store::FdbStore, String, Box<dyn Any + Send + Sync>) {
    use counterpoint::store::{FdbOptions, FdbStore};

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
    let prefix = format!("test-{:032x}", fastrand::u128(..));
    let mut options = FdbOptions::new(prefix.clone());
    options.cluster_file = Some(cluster_file.into());
    configure(&mut options);
    let store = FdbStore::open(options).expect("open the FoundationDB store");
    (store.clone(), prefix, Box::new(Cleanup(store)))
}

/// The cluster named by `FDB_CLUSTER_FILE`, so tests never see each other's data.
#[cfg(feature = "fdb")]
pub fn fdb() -> Fixture {
    let (store, _, guard) = fdb_store();
    Fixture { store: Arc::new(store), _guard: Some(guard) }
}

#[cfg(not(feature = "fdb"))]
pub fn fdb() -> Fixture {
    without_fdb()
}

/// The FoundationDB cases of a build without the feature: they are ignored (no `fdb_cluster`),
/// and run anyway (`--include-ignored`) they fail rather than pass.
#[cfg(not(feature = "fdb"))]
pub fn without_fdb() -> ! {
    panic!("built without the `fdb` feature: run the FoundationDB tests through tests/fdb.sh")
}
