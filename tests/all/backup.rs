//! Online backup and restore of the embedded store: a backup taken while 64 writers append
//! restores to exactly a prefix of what was acknowledged, with read models consistent with it;
//! a second backup into the same directory copies only the new log bytes; a damaged or partial
//! backup, and a restore into a directory in use, are refused with a clear error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use counterpoint::api::spawn_server;
use counterpoint::backup::{restore, BackupError, Manifest, Source};
use counterpoint::readmodels::EmbeddedState;
use counterpoint::store::{EmbeddedOptions, EmbeddedStore, Event, EventStore, Query, ReadOptions, Tenant};
use counterpoint::tenants::Config;
use serde_json::{json, Value};

use crate::api::{config_text, position, t, token, wasm, Http, Server, ADMIN};

const WRITERS: usize = 64;
/// Of the writers, how many run `receive-stock` (feeding the read model) instead of raw appends.
const COMMANDERS: usize = 8;

/// What the writers were told was durable: per tenant, position → the event's data as sent.
type Acknowledged = Arc<Mutex<BTreeMap<(String, u128), Value>>>;

fn tenant_of(writer: usize) -> &'static str {
    if writer.is_multiple_of(2) { "acme" } else { "globex" }
}

/// Backs up the server's data directory into `dest` through the admin API.
async fn backup(http: &Http, dest: &Path) -> Value {
    http.post("/v1/admin/backup", Some(ADMIN), &json!({"dest": dest})).await.ok()
}

/// A server on a restored data directory (sharing the tests' compile cache).
async fn serve_restored(dir: &Path) -> (counterpoint::api::Running, Http) {
    let shared = counterpoint_tests::slices::target_dir().join("test-compile-cache");
    std::os::unix::fs::symlink(&shared, dir.join("cache")).expect("linking the compile cache");
    let config = Config::parse(&config_text(dir, &[("acme", ""), ("globex", "")])).expect("the configuration parses");
    let running = spawn_server(&config).await.expect("a server starts on the restored data");
    let http = Http::new(running.address);
    (running, http)
}

/// The smallest position any writer had not yet seen acknowledged, per tenant: every append
/// below it was acknowledged before this instant.
fn acknowledged_prefix(acked: &Acknowledged, tenant: &str) -> u128 {
    let acked = acked.lock().unwrap();
    let mut next = 1;
    while acked.contains_key(&(tenant.to_string(), next)) {
        next += 1;
    }
    next - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_a_prefix_of_the_acknowledged_appends() {
    let unlimited = "requests_per_second = 1000000\nburst = 1000000";
    let mut server = Server::with(&[("acme", unlimited), ("globex", unlimited)]).await;
    server.http.deploy("acme", "inventory", wasm("inventory")).await.ok();
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("backup");

    let acked: Acknowledged = Arc::default();
    // receive-stock commands acknowledged: (position, sku).
    let received: Arc<Mutex<Vec<(u128, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (http, acked, received, stop) = (server.http.clone(), acked.clone(), received.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let tenant = tenant_of(writer);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                if writer < COMMANDERS {
                    let sku = format!("sku-{writer}");
                    let reply = http.command("acme", "inventory", "receive-stock", json!({"sku": sku, "qty": 1})).await;
                    if reply.status.is_success() {
                        received.lock().unwrap().push((position(&reply.json["positions"][0]), sku));
                    }
                    continue;
                }
                let data = json!({"json": {"writer": writer, "n": n}});
                let body = json!({"events": [{"type": "Written", "tags": [format!("writer:{writer}")], "data": data}]});
                let reply = http.post(&t(tenant, "/events/append"), Some(&token(tenant)), &body).await;
                assert!(reply.status.is_success(), "append: {} {:?}", reply.status, reply.json);
                acked.lock().unwrap().insert((tenant.to_string(), position(&reply.json["positions"][0])), data);
            }
        }));
    }

    // Once the read model has state to back up, a first backup under load...
    let list = t("acme", "/readmodels");
    crate::api::eventually("the read model has a checkpoint", || async {
        let list = server.http.get(&list, Some(ADMIN)).await.ok();
        list["read_models"][0]["checkpoint"].as_str().is_some_and(|c| c != "0")
    })
    .await;
    let before_first: Vec<u128> = ["acme", "globex"].iter().map(|t| acknowledged_prefix(&acked, t)).collect();
    let first = backup(&server.http, &dest).await;
    let first_copy = backups.path().join("first");
    copy_dir(&dest, &first_copy);
    // ...then a second one into the same directory, still under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_second: Vec<u128> = ["acme", "globex"].iter().map(|t| acknowledged_prefix(&acked, t)).collect();
    let second = backup(&server.http, &dest).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("a writer panicked");
    }

    eprintln!("first backup: {first}\nsecond backup: {second}");
    assert_eq!(first["generation"], 1);
    assert_eq!((second["generation"].as_u64(), second["incremental"].as_bool()), (Some(2), Some(true)));
    assert_eq!(first["log_bytes_copied"], first["log_bytes"], "a first backup copies the whole log");
    let (first_len, second_len) = (first["log_bytes"].as_u64().unwrap(), second["log_bytes"].as_u64().unwrap());
    assert!(second_len > first_len, "the load went on between the backups");
    assert_eq!(second["log_bytes_copied"].as_u64(), Some(second_len - first_len), "the second backup copies only what is new: {second}");

    // The whole log as it ended, to compare the restored prefixes with byte for byte.
    let live: BTreeMap<&str, Vec<Value>> = [("acme", server.http.log("acme").await), ("globex", server.http.log("globex").await)].into();
    for (report, source, before) in [(&first, first_copy.clone(), before_first), (&second, dest.clone(), before_second)] {
        let restored = backups.path().join(format!("restored-{}", report["generation"]));
        // The backup holds the read model's state at a checkpoint at or before the head, not
        // nothing (the read model had a checkpoint before the first backup began).
        let manifest = Manifest::read(&source).unwrap().expect("a manifest");
        let checkpoint = manifest.read_models.get("acme/inventory/stock-levels").expect("the read model's checkpoint is backed up").get();
        assert!(checkpoint > 0 && checkpoint <= position(&report["heads"]["acme"]), "checkpoint {checkpoint}, head {}", report["heads"]["acme"]);
        let done = restore(&source, &restored).unwrap_or_else(|e| panic!("restoring {}: {e}", source.display()));
        let (running, http) = serve_restored(&restored).await;
        for (i, tenant) in ["acme", "globex"].into_iter().enumerate() {
            let head = position(&report["heads"][tenant]);
            assert_eq!(done.heads[tenant].get(), head);
            assert!(head >= before[i], "{tenant}: every append acknowledged before the backup began is in it ({head} < {})", before[i]);
            let log = http.log(tenant).await;
            assert_eq!(log.len() as u128, head, "{tenant}: the restored log holds its events 1 to head, and nothing more");
            assert_eq!(log[..], live[tenant][..head as usize], "{tenant}: the restored log is a prefix of the live one, event for event");
            let acked = acked.lock().unwrap();
            for event in &log {
                if event["type"] == "Written" {
                    let sent = acked.get(&(tenant.to_string(), position(&event["position"]))).expect("every written event was acknowledged");
                    assert_eq!(&event["data"], sent);
                }
            }
        }
        // The read model resumes from the backed-up checkpoint and agrees with the restored log.
        let acme_head = position(&report["heads"]["acme"]);
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for (_, sku) in received.lock().unwrap().iter().filter(|(at, _)| *at <= acme_head) {
            *expected.entry(sku.clone()).or_default() += 1;
        }
        let query = t("acme", &format!("/slices/inventory/readmodels/stock-levels?at_least={acme_head}&wait_ms=20000"));
        for (sku, count) in &expected {
            let answer = http.post(&query, Some(&token("acme")), &json!({"sku": sku})).await.ok();
            assert_eq!(answer["result"][0]["received"].as_u64(), Some(*count), "{sku} at {acme_head}: {answer}");
        }
        running.shutdown().await.unwrap();
    }
    server.stop().await;
}

/// `cp -r`, for keeping a backup as it was.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A data directory with small segments (so a log spans several), opened for backups.
struct Data {
    dir: tempfile::TempDir,
    store: EmbeddedStore,
    source: Source,
}

impl Data {
    fn open() -> Data {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path().join("events"), EmbeddedOptions { segment_bytes: 16 << 10, ..Default::default() }).unwrap();
        let state = Arc::new(EmbeddedState::open(dir.path().join("readmodels.redb")).unwrap());
        let source = Source::new(store.clone(), state, dir.path());
        Data { dir, store, source }
    }

    /// Opened with `events` events of tenant acme, backed up into a new directory.
    async fn backed_up(events: usize) -> (Data, tempfile::TempDir) {
        let data = Data::open();
        data.append("acme", events, 0).await;
        let dest = tempfile::tempdir().unwrap();
        data.source.backup(dest.path()).unwrap();
        (data, dest)
    }

    async fn append(&self, tenant: &str, count: usize, from: usize) {
        let tenant = Tenant::new(tenant).unwrap();
        for i in from..from + count {
            self.store.append(&tenant, vec![Event::new("E").data(format!("event {i} {}", "x".repeat(200)).into_bytes())], vec![]).await.unwrap();
        }
    }
}

async fn events_in(dir: &Path, tenant: &str) -> Vec<Vec<u8>> {
    let store = EmbeddedStore::open(dir.join("events")).unwrap();
    let (events, _) = store.read(&Tenant::new(tenant).unwrap(), Query::all(), ReadOptions::default()).await.unwrap().collect().await.unwrap();
    events.into_iter().map(|e| e.event.data).collect()
}

#[tokio::test]
async fn a_second_backup_copies_only_the_new_log_bytes_and_restores_whole() {
    let data = Data::open();
    let dest = tempfile::tempdir().unwrap();
    data.append("acme", 150, 0).await;
    let first = data.source.backup(dest.path()).unwrap();
    assert!(first.log_bytes > 2 * (16 << 10), "the log spans several segments: {first:?}");
    assert_eq!(first.log_bytes_copied, first.log_bytes);

    // Nothing new: nothing of the log is copied.
    let idle = data.source.backup(dest.path()).unwrap();
    assert_eq!((idle.log_bytes_copied, idle.log_bytes), (0, first.log_bytes));

    data.append("acme", 100, 150).await;
    data.append("globex", 10, 0).await;
    let sizes_before: BTreeMap<String, u64> = segment_sizes(dest.path());
    let second = data.source.backup(dest.path()).unwrap();
    assert_eq!(second.log_bytes_copied, second.log_bytes - first.log_bytes, "only the new bytes: {second:?}");
    assert_eq!(second.generation, 3);
    // Sealed segments the first backup holds whole are untouched; only the last grew, and new ones came.
    let sizes_after = segment_sizes(dest.path());
    let grown: Vec<&String> = sizes_before.iter().filter(|(name, len)| sizes_after[*name] != **len).map(|(name, _)| name).collect();
    assert!(grown.len() <= 1, "at most the segment that was open grew: {grown:?}");
    assert!(sizes_after.len() > sizes_before.len(), "new segments were added");
    assert_eq!(second.heads["acme"].get(), 250);
    assert_eq!(second.heads["globex"].get(), 10);
    assert!(!dest.path().join("state-1").exists() && dest.path().join("state-3").exists(), "earlier generations' state is removed");

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("data");
    restore(dest.path(), &target).unwrap();
    drop(data.store);
    drop(data.source);
    assert_eq!(events_in(&target, "acme").await, events_in(data.dir.path(), "acme").await);
    assert_eq!(events_in(&target, "globex").await.len(), 10);
}

fn segment_sizes(dest: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dest.join("events"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.metadata().unwrap().len()))
        .collect()
}

/// A backup, damaged by `damage`, and the restore's error.
async fn damaged_copy(damage: impl FnOnce(&Path)) -> BackupError {
    let (_data, backup) = Data::backed_up(120).await;
    damage(backup.path());
    let target = tempfile::tempdir().unwrap();
    let err = restore(backup.path(), &target.path().join("restored")).expect_err("a damaged backup must be refused");
    assert!(std::fs::read_dir(target.path()).unwrap().next().is_none(), "a refused restore leaves nothing behind");
    err
}

#[tokio::test]
async fn damaged_or_partial_backups_are_refused_naming_the_file() {
    // A flipped byte in a sealed segment.
    let err = damaged_copy(|backup| flip_byte(&backup.join("events/0000000000.log"), 100)).await;
    let message = err.to_string();
    assert!(matches!(err, BackupError::Damaged { .. }) && message.contains("0000000000.log") && message.contains("SHA-256"), "{message}");

    // A truncated last segment.
    let err = damaged_copy(|backup| {
        let last = last_segment(backup);
        let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        file.set_len(file.metadata().unwrap().len() - 10).unwrap();
    })
    .await;
    assert!(err.to_string().contains("truncated"), "{err}");

    // No manifest: not a backup, or one that never finished.
    let err = damaged_copy(|backup| std::fs::remove_file(backup.join("MANIFEST.json")).unwrap()).await;
    assert!(matches!(err, BackupError::NotABackup(_)) && err.to_string().contains("MANIFEST.json"), "{err}");

    // A file the manifest names is gone.
    let err = damaged_copy(|backup| std::fs::remove_file(backup.join("state-1/FORMAT")).unwrap()).await;
    assert!(err.to_string().contains("FORMAT") && err.to_string().contains("missing"), "{err}");

    // The read-model state changed.
    let err = damaged_copy(|backup| {
        let redb = backup.join("state-1/readmodels.redb");
        flip_byte(&redb, std::fs::metadata(&redb).unwrap().len() / 2);
    })
    .await;
    assert!(err.to_string().contains("readmodels.redb"), "{err}");

    // A manifest that does not parse.
    let err = damaged_copy(|backup| std::fs::write(backup.join("MANIFEST.json"), "{\"format\":").unwrap()).await;
    assert!(err.to_string().contains("MANIFEST.json") && err.to_string().contains("does not parse"), "{err}");
}

#[tokio::test]
async fn an_incremental_backup_checks_the_earlier_one_first() {
    let (data, dest) = Data::backed_up(50).await;
    flip_byte(&dest.path().join("events/0000000000.log"), 10);
    data.append("acme", 5, 50).await;
    let err = data.source.backup(dest.path()).expect_err("a damaged earlier backup is not added to");
    assert!(matches!(err, BackupError::Damaged { .. }) && err.to_string().contains("0000000000.log"), "{err}");

    // A backup of another log is not added to either.
    let other = Data::open();
    other.append("acme", 60, 1000).await;
    let dest = tempfile::tempdir().unwrap();
    data.source.backup(dest.path()).unwrap_or_else(|e| panic!("a fresh backup: {e}"));
    let err = other.source.backup(dest.path()).expect_err("another store's backup is not added to");
    assert!(matches!(err, BackupError::OtherStore(_)), "{err}");
}

#[tokio::test]
async fn a_restore_into_a_directory_in_use_is_refused() {
    let (_data, dest) = Data::backed_up(3).await;
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("keep-me"), "data").unwrap();
    let err = restore(dest.path(), target.path()).expect_err("a non-empty directory is refused");
    assert!(matches!(err, BackupError::NotEmpty(_)) && err.to_string().contains("not empty"), "{err}");
    assert_eq!(std::fs::read_to_string(target.path().join("keep-me")).unwrap(), "data", "nothing there was touched");
    // An empty one is fine.
    let empty = tempfile::tempdir().unwrap();
    restore(dest.path(), empty.path()).unwrap();
    assert_eq!(events_in(empty.path(), "acme").await.len(), 3);
}

fn flip_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
}

fn last_segment(backup: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(backup.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_route_takes_the_admin_token_and_an_absolute_directory() {
    let mut server = Server::start().await;
    let http = &server.http;
    let dest = tempfile::tempdir().unwrap();
    let openapi = http.get("/v1/openapi.json", None).await.ok();
    assert!(openapi["paths"]["/v1/admin/backup"]["post"].is_object(), "documented in the OpenAPI document");
    assert!(openapi["components"]["schemas"]["BackupReport"].is_object(), "with its answer's schema");

    let body = json!({"dest": dest.path()});
    http.post("/v1/admin/backup", None, &body).await.error(401, "unauthorized");
    http.post("/v1/admin/backup", Some(&token("acme")), &body).await.error(403, "forbidden");
    http.post("/v1/admin/backup", Some(ADMIN), &json!({"dest": "relative/dir"})).await.error(400, "invalid_input");
    http.post("/v1/admin/backup", Some(ADMIN), &json!({})).await.error(400, "invalid_input");
    http.post("/v1/admin/backup", Some(ADMIN), &json!({"dest": dest.path(), "extra": 1})).await.error(400, "invalid_input");

    // A directory holding another log's backup is refused, not added to.
    let (_other, other_backup) = Data::backed_up(40).await;
    let refused = http.post("/v1/admin/backup", Some(ADMIN), &json!({"dest": other_backup.path()})).await;
    refused.error(409, "conflict");
    assert!(refused.json["error"]["message"].as_str().unwrap().contains("another log"), "{:?}", refused.json);

    let report = backup(http, dest.path()).await;
    assert_eq!((report["generation"].as_u64(), report["incremental"].as_bool()), (Some(1), Some(false)));
    server.stop().await;
}

#[tokio::test]
async fn a_backup_that_stopped_half_way_leaves_the_earlier_one_whole() {
    let (data, dest) = Data::backed_up(100).await;
    data.append("acme", 30, 100).await;
    // What a second backup leaves when it stops before its manifest: bytes past the earlier
    // lengths, a state directory of its own.
    let last = last_segment(dest.path());
    let mut file = std::fs::OpenOptions::new().append(true).open(&last).unwrap();
    std::io::Write::write_all(&mut file, b"half of a frame").unwrap();
    std::fs::create_dir_all(dest.path().join("state-2/tenants")).unwrap();
    std::fs::write(dest.path().join("state-2/readmodels.redb"), "half").unwrap();

    let restored = tempfile::tempdir().unwrap();
    let done = restore(dest.path(), restored.path()).expect("the earlier backup restores");
    assert_eq!(done.heads["acme"].get(), 100);
    assert_eq!(events_in(restored.path(), "acme").await.len(), 100);

    // The next backup writes over what was left, and copies only what is new.
    let next = data.source.backup(dest.path()).unwrap();
    assert_eq!((next.generation, next.heads["acme"].get()), (2, 130));
    let again = tempfile::tempdir().unwrap();
    restore(dest.path(), again.path()).unwrap();
    assert_eq!(events_in(again.path(), "acme").await.len(), 130);
}
