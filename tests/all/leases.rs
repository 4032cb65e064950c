//! Leases, which let several hosts on one cluster run each background worker exactly once,
//! written once and run on every lease store (`backend_cases!`, as the store
//! conformance suite does): one holder at a time under contention, a dead holder's lease taken
//! over and a live one's not, a holder told when it has lost its lease, and a holder whose store
//! stops answering told so before any other host can take the lease over.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use counterpoint::leases::{LeaseStore, LeaseValue, Leases, MemoryLeases};
use counterpoint::store::StoreError;

/// A lease store under test, what must outlive it, and how to reach a store that never answers.
pub struct Fixture {
    pub store: Arc<dyn LeaseStore>,
    /// Another handle on the same leases that hangs on every call: for the memory store, one
    /// that never answers; on FoundationDB, a connection to a cluster that is not there.
    pub unreachable: Arc<dyn LeaseStore>,
    /// Multiplies every time to live of the cases, so that a renewal delayed by a loaded machine
    /// (the whole suite on 2 cores) or a cluster's round trips stays inside its deadline.
    pub scale: u32,
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub fn memory() -> Fixture {
    Fixture { store: Arc::new(MemoryLeases::default()), unreachable: Arc::new(Silent), scale: 3, _guard: None }
}

/// Leases on the test cluster under a fresh prefix (cleared at the end); the unreachable handle is
/// `FdbLeases` on a cluster file naming a port where nothing listens, with the transaction
/// timeout a server uses (`FdbOptions`' default).
#[cfg(feature = "fdb")]
pub fn fdb() -> Fixture {
    use counterpoint::leases::FdbLeases;
    use counterpoint::store::{FdbOptions, FdbStore};
    let (store, prefix, guard) = crate::store::fdb_store();
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let cluster_file = dir.path().join("nowhere.cluster");
    std::fs::write(&cluster_file, format!("nowhere:nowhere@{nowhere}\n")).expect("writing a cluster file");
    let mut options = FdbOptions::new(prefix.clone());
    options.cluster_file = Some(cluster_file);
    let unreachable = FdbStore::open(options).expect("a handle on a cluster that is not there");
    Fixture {
        store: Arc::new(FdbLeases::new(store.database(), &prefix)),
        unreachable: Arc::new(FdbLeases::new(unreachable.database(), &prefix)),
        scale: 10,
        _guard: Some(Box::new((guard, dir))),
    }
}

#[cfg(not(feature = "fdb"))]
pub fn fdb() -> Fixture {
    crate::store::without_fdb()
}

/// A store that never answers.
struct Silent;

#[async_trait]
impl LeaseStore for Silent {
    async fn get(&self, _: &str, _: Duration) -> Result<Option<LeaseValue>, StoreError> {
        std::future::pending().await
    }

    async fn swap(&self, _: &str, _: Option<&LeaseValue>, _: Option<&LeaseValue>, _: Duration) -> Result<bool, StoreError> {
        std::future::pending().await
    }
}

fn leases(store: &Arc<dyn LeaseStore>, holder: &str, ttl: Duration) -> Leases {
    Leases::new(store.clone(), holder, ttl)
}

/// How long a call of the test itself may take.
const CALL: Duration = Duration::from_secs(5);

pub async fn one_holder_at_a_time_under_contention(fixture: Fixture) {
    let ttl = Duration::from_millis(60) * fixture.scale;
    let holding = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let hosts: Vec<_> = (0..4)
        .map(|i| {
            let (leases, holding, taken) = (leases(&fixture.store, &format!("host-{i}"), ttl), holding.clone(), taken.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    let lease = leases.acquire("automation/acme/inventory/reserve").await.unwrap();
                    assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                    taken.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..10))).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(lease); // gives it up
                }
            })
        })
        .collect();
    for host in hosts {
        tokio::time::timeout(Duration::from_secs(120), host).await.expect("every host gets its turns").unwrap();
    }
    assert_eq!(taken.load(Ordering::SeqCst), 20);
}

pub async fn a_dead_holders_lease_is_taken_over_and_a_live_ones_is_not(fixture: Fixture) {
    let ttl = Duration::from_millis(200) * fixture.scale;
    let name = "readmodel/acme/inventory/stock-levels";
    let (a, b) = (leases(&fixture.store, "a", ttl), leases(&fixture.store, "b", ttl));
    let held = a.acquire(name).await.unwrap();
    // While `a` renews, `b` waits, however long (five times the time to live here).
    let waiting = tokio::time::timeout(ttl * 5, b.acquire(name)).await;
    assert!(waiting.is_err(), "b took a lease that a renews");
    assert_eq!(fixture.store.get(name, CALL).await.unwrap().unwrap().holder, "a");
    // `a` dies without giving the lease up: `b` takes it once it has been silent for its time to live.
    held.abandon();
    let taken = tokio::time::timeout(Duration::from_secs(30), b.acquire(name)).await;
    assert!(taken.is_ok(), "b takes over a dead holder's lease");
    assert_eq!(fixture.store.get(name, CALL).await.unwrap().unwrap().holder, "b");
}

pub async fn a_holder_learns_that_it_lost_its_lease(fixture: Fixture) {
    let ttl = Duration::from_millis(150) * fixture.scale;
    let store = &fixture.store;
    let mut lease = leases(store, "a", ttl).acquire("x").await.unwrap();
    // Someone else's value lands (say, a host that thought `a` dead): `a`'s next renewal fails.
    let current = store.get("x", CALL).await.unwrap();
    let other = LeaseValue { holder: "b".into(), nonce: 1 };
    assert!(store.swap("x", current.as_ref(), Some(&other), CALL).await.unwrap());
    tokio::time::timeout(Duration::from_secs(30), lease.lost()).await.expect("the holder is told");
    drop(lease);
    tokio::time::sleep(ttl / 3).await;
    assert_eq!(store.get("x", CALL).await.unwrap(), Some(other), "a lost lease is not cleared by its old holder");
}

/// What the holder's and the other host's views of the store record, in the order it happened.
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Events {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }

    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// The holder's view of the store: the real one until `stalled`, then one that never answers.
struct Stalling {
    store: Arc<dyn LeaseStore>,
    unreachable: Arc<dyn LeaseStore>,
    stalled: AtomicBool,
    renewals: AtomicUsize,
}

impl Stalling {
    fn now(&self) -> &Arc<dyn LeaseStore> {
        if self.stalled.load(Ordering::SeqCst) { &self.unreachable } else { &self.store }
    }
}

#[async_trait]
impl LeaseStore for Stalling {
    async fn get(&self, name: &str, within: Duration) -> Result<Option<LeaseValue>, StoreError> {
        self.now().get(name, within).await
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, within: Duration) -> Result<bool, StoreError> {
        let store = self.now().clone();
        let swapped = store.swap(name, expected, new, within).await;
        if expected.is_some() && matches!(swapped, Ok(true)) {
            self.renewals.fetch_add(1, Ordering::SeqCst);
        }
        swapped
    }
}

/// The other host's view of the store: records every swap that would give it the lease before
/// making it.
struct Recording {
    store: Arc<dyn LeaseStore>,
    events: Arc<Events>,
}

#[async_trait]
impl LeaseStore for Recording {
    async fn get(&self, name: &str, within: Duration) -> Result<Option<LeaseValue>, StoreError> {
        self.store.get(name, within).await
    }

    async fn swap(&self, name: &str, expected: Option<&LeaseValue>, new: Option<&LeaseValue>, within: Duration) -> Result<bool, StoreError> {
        if let Some(new) = new {
            self.events.push(format!("{} takes the lease from {:?}", new.holder, expected.map(|e| &e.holder)));
        }
        self.store.swap(name, expected, new, within).await
    }
}

/// The store stops answering the holder (a hung connection, a partition): the holder must learn
/// that it lost the lease before the time to live has run out since its last renewal, i.e. before
/// another host can take the lease over and start the same worker.
pub async fn a_holder_whose_renewals_hang_learns_of_its_loss_before_another_host_can_take_over(fixture: Fixture) {
    let ttl = Duration::from_millis(300) * fixture.scale;
    let name = "automation/acme/inventory/reserve";
    let events = Arc::new(Events::default());
    let holder_view =
        Arc::new(Stalling { store: fixture.store.clone(), unreachable: fixture.unreachable.clone(), stalled: AtomicBool::new(false), renewals: AtomicUsize::new(0) });
    let mut lease = Leases::new(holder_view.clone(), "a", ttl).acquire(name).await.unwrap();
    // Another host watches the lease all along, to take it once it has been silent for a time to live.
    let other = Leases::new(Arc::new(Recording { store: fixture.store.clone(), events: events.clone() }), "b", ttl);
    let taking = tokio::spawn(async move { other.acquire(name).await });
    // The holder renews while the store answers; the other host waits.
    for _ in 0..600 {
        if holder_view.renewals.load(Ordering::SeqCst) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(holder_view.renewals.load(Ordering::SeqCst) >= 3, "the holder renews its lease");
    let told = {
        let events = events.clone();
        tokio::spawn(async move {
            lease.lost().await;
            events.push("a is told it lost the lease");
            lease
        })
    };
    holder_view.stalled.store(true, Ordering::SeqCst);
    events.push("the store stops answering a");
    let taken = tokio::time::timeout(Duration::from_secs(60), taking).await.expect("b takes the silent lease over").unwrap().unwrap();
    assert_eq!(
        events.list(),
        ["the store stops answering a", "a is told it lost the lease", "b takes the lease from Some(\"a\")"],
        "the holder must stop before another host can start"
    );
    drop(taken);
    let lease = tokio::time::timeout(Duration::from_secs(30), told).await.expect("a was told").unwrap();
    drop(lease);
}

crate::backend_cases!([
    one_holder_at_a_time_under_contention,
    a_dead_holders_lease_is_taken_over_and_a_live_ones_is_not,
    a_holder_learns_that_it_lost_its_lease,
    a_holder_whose_renewals_hang_learns_of_its_loss_before_another_host_can_take_over,
];
    memory => super::memory();
    // Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
    fdb => super::fdb(), #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
);
