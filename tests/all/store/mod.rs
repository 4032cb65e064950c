//! The event store: one conformance suite for every backend, racing and crash tests.

mod conformance;
mod crash;
mod embedded;
mod racing;

use counterpoint::store::{EmbeddedStore, MemoryStore, SharedStore};
use std::sync::Arc;
use tempfile::TempDir;

/// A backend under test; holds whatever must outlive the store (its data directory).
pub struct Fixture {
    pub store: SharedStore,
    _dir: Option<TempDir>,
}

pub fn memory() -> Fixture {
    Fixture { store: Arc::new(MemoryStore::new()), _dir: None }
}

pub fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    Fixture { store: Arc::new(store), _dir: Some(dir) }
}
