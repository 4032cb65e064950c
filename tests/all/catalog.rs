//! The slice catalog, which hosts sharing a cluster keep their deployed slices in, written once
//! and run on every shared catalog (`backend_cases!`): components of any size
//! round-trip byte for byte, manifests per tenant, and two handles (two hosts) see each other's
//! deploys and removals, through the catalog itself and through two hosts' registries.

use std::sync::Arc;
use std::time::Duration;

use counterpoint::deploy::{Catalog, ManifestEntry, MemoryCatalog, Registry};
use counterpoint::store::Tenant;
use counterpoint::tenants::Tenants;
use counterpoint_tests::slices::{runtime, wasm};
use tokio::sync::watch;

/// Two handles on one catalog, as two hosts of a cluster have, and what must outlive them.
pub struct Fixture {
    pub a: Arc<dyn Catalog>,
    pub b: Arc<dyn Catalog>,
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// One catalog in memory, shared by both "hosts".
pub fn memory() -> Fixture {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::default());
    Fixture { a: catalog.clone(), b: catalog, _guard: None }
}

/// Two `FdbCatalog`s on two connections to the test cluster, under one fresh prefix (cleared at
/// the end).
#[cfg(feature = "fdb")]
pub fn fdb() -> Fixture {
    use counterpoint::deploy::FdbCatalog;
    use counterpoint::store::{FdbOptions, FdbStore};
    let (store, prefix, guard) = crate::store::fdb_store();
    let mut options = FdbOptions::new(prefix.clone());
    options.cluster_file = std::env::var_os("FDB_CLUSTER_FILE").map(Into::into);
    let other_host = FdbStore::open(options).expect("a second connection to the cluster");
    Fixture {
        a: Arc::new(FdbCatalog::new(store.database(), &prefix)),
        b: Arc::new(FdbCatalog::new(other_host.database(), &prefix)),
        _guard: Some(guard),
    }
}

#[cfg(not(feature = "fdb"))]
pub fn fdb() -> Fixture {
    crate::store::without_fdb()
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

fn entry(name: &str, hash: &str) -> ManifestEntry {
    ManifestEntry { name: name.into(), hash: hash.into(), deployed_at: 1_700_000_000 }
}

fn random_hash() -> String {
    format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..))
}

/// Waits (up to 30 s) until `changes` has moved past what it had seen, then returns what `check`
/// sees; panics if `check` never holds.
async fn after_a_change<T: std::fmt::Debug>(changes: &mut watch::Receiver<u64>, what: &str, mut check: impl AsyncFnMut() -> (bool, T)) -> T {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            changes.changed().await.expect("the catalog's changes go on");
            let (holds, seen) = check().await;
            if holds {
                return seen;
            }
        }
    })
    .await;
    match waited {
        Ok(seen) => seen,
        Err(_) => panic!("{what}: no change notified within 30 s shows it; now: {:?}", check().await.1),
    }
}

pub async fn components_of_any_size_round_trip_byte_for_byte(fixture: Fixture) {
    let (a, b) = (&fixture.a, &fixture.b);
    // One byte, exactly one and two 90,000-byte chunks, one byte more, and 5 MB: over the 50
    // chunks one transaction carries.
    for size in [1, 90_000, 90_001, 180_000, 5_000_017] {
        let wasm: Vec<u8> = (0..size).map(|_| fastrand::u8(..)).collect();
        let hash = random_hash();
        assert_eq!(b.component(&hash).await.unwrap(), None, "nothing under an unknown hash");
        a.put_component(&hash, &wasm).await.unwrap();
        let read = b.component(&hash).await.unwrap().expect("the component is kept");
        assert!(read == wasm, "{size} bytes: the other host reads {} bytes, not the same", read.len());
        // Keeping it again is a no-op, from either host.
        b.put_component(&hash, &wasm).await.unwrap();
        assert!(a.component(&hash).await.unwrap().as_deref() == Some(wasm.as_slice()));
    }
}

pub async fn manifests_are_per_tenant_and_follow_puts_and_removals(fixture: Fixture) {
    let (a, b) = (&fixture.a, &fixture.b);
    let (acme, acme2, globex) = (tenant("acme"), tenant("acme2"), tenant("globex"));
    assert_eq!(b.manifest(&acme).await.unwrap(), vec![]);
    a.put_slice(&acme, &entry("orders", "h1")).await.unwrap();
    a.put_slice(&acme, &entry("inventory", "h2")).await.unwrap();
    b.put_slice(&acme2, &entry("orders", "h3")).await.unwrap();
    b.put_slice(&globex, &entry("billing", "h4")).await.unwrap();
    let names = |m: Vec<ManifestEntry>| m.into_iter().map(|e| (e.name, e.hash)).collect::<Vec<_>>();
    assert_eq!(names(b.manifest(&acme).await.unwrap()), [("inventory".into(), "h2".into()), ("orders".into(), "h1".into())]);
    // A tenant whose name extends another's sees only its own.
    assert_eq!(names(a.manifest(&acme2).await.unwrap()), [("orders".into(), "h3".into())]);
    assert_eq!(names(a.manifest(&globex).await.unwrap()), [("billing".into(), "h4".into())]);
    // A new version replaces the entry; a removal takes it out; other tenants are untouched.
    b.put_slice(&acme, &entry("orders", "h5")).await.unwrap();
    assert_eq!(a.manifest(&acme).await.unwrap(), vec![entry("inventory", "h2"), entry("orders", "h5")]);
    a.remove_slice(&acme, "inventory").await.unwrap();
    assert_eq!(names(b.manifest(&acme).await.unwrap()), [("orders".into(), "h5".into())]);
    assert_eq!(names(b.manifest(&acme2).await.unwrap()), [("orders".into(), "h3".into())]);
    // Removing what is not there changes nothing.
    a.remove_slice(&globex, "orders").await.unwrap();
    assert_eq!(names(b.manifest(&globex).await.unwrap()), [("billing".into(), "h4".into())]);
}

pub async fn each_host_is_told_of_the_others_changes(fixture: Fixture) {
    let (a, b) = (&fixture.a, &fixture.b);
    let acme = tenant("acme");
    let (mut on_a, mut on_b) = (a.changes().expect("a shared catalog has changes"), b.changes().expect("a shared catalog has changes"));
    let hash = random_hash();
    a.put_component(&hash, b"\0asm not really").await.unwrap();
    a.put_slice(&acme, &entry("orders", &hash)).await.unwrap();
    let seen = after_a_change(&mut on_b, "a's deploy reaches b", async || {
        let manifest = b.manifest(&acme).await.unwrap();
        (manifest == [entry("orders", &hash)], manifest)
    })
    .await;
    assert_eq!(b.component(&seen[0].hash).await.unwrap().as_deref(), Some(&b"\0asm not really"[..]));
    b.remove_slice(&acme, "orders").await.unwrap();
    after_a_change(&mut on_a, "b's removal reaches a", async || {
        let manifest = a.manifest(&acme).await.unwrap();
        (manifest.is_empty(), manifest)
    })
    .await;
    // A handle that stopped listening and listens again is told again.
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.put_slice(&acme, &entry("inventory", &hash)).await.unwrap();
    a.put_slice(&acme, &entry("billing", &hash)).await.unwrap();
    let mut on_b = b.changes().unwrap();
    a.remove_slice(&acme, "billing").await.unwrap();
    after_a_change(&mut on_b, "a's later changes reach b", async || {
        let manifest = b.manifest(&acme).await.unwrap();
        (manifest == [entry("inventory", &hash)], manifest)
    })
    .await;
}

/// Two hosts' registries on the catalog: a deploy on either is served by the other, and a
/// removal reaches the other.
pub async fn a_deploy_through_one_hosts_registry_is_served_by_the_other(fixture: Fixture) {
    let acme = tenant("acme");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let tenants = Arc::new(Tenants::single(&acme));
    let a = Arc::new(Registry::open_with(runtime(), dir_a.path(), tenants.clone(), fixture.a.clone()).await.unwrap());
    let b = Arc::new(Registry::open_with(runtime(), dir_b.path(), tenants, fixture.b.clone()).await.unwrap());
    a.follow_catalog();
    b.follow_catalog();
    let wait = async |host: &Registry, what: &str, check: &dyn Fn(&Registry) -> bool| {
        for _ in 0..600 {
            if check(host) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} within 30 s");
    };
    let orders = a.deploy(&acme, wasm("orders"), Some("orders")).await.unwrap();
    wait(&b, "the deploy on a reaches b", &|b| b.get(&acme, "orders").is_some()).await;
    assert_eq!(b.get(&acme, "orders").unwrap().hash(), orders.slice.hash(), "b runs the very component a deployed");
    b.deploy(&acme, wasm("inventory"), Some("inventory")).await.unwrap();
    wait(&a, "the deploy on b reaches a", &|a| a.get(&acme, "inventory").is_some()).await;
    a.remove(&acme, "orders").await.unwrap();
    wait(&b, "the removal on a reaches b", &|b| b.get(&acme, "orders").is_none()).await;
    assert!(b.get(&acme, "inventory").is_some(), "the other slice stays");
    let mut names: Vec<String> = b.list(&acme).iter().map(|d| d.slice.name().to_string()).collect();
    names.sort();
    assert_eq!(names, ["inventory"]);
}

crate::backend_cases!([
    components_of_any_size_round_trip_byte_for_byte,
    manifests_are_per_tenant_and_follow_puts_and_removals,
    each_host_is_told_of_the_others_changes,
    a_deploy_through_one_hosts_registry_is_served_by_the_other,
];
    memory => super::memory();
    // Run by tests/fdb.sh (with --features fdb and FDB_CLUSTER_FILE at build time), ignored otherwise.
    fdb => super::fdb(), #[cfg_attr(not(fdb_cluster), ignore = "needs FoundationDB: tests/fdb.sh runs it (just test does) where FoundationDB is found")]
);
