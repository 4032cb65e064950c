//! The slice catalog in the data directory, damaged between two runs: a component file with a
//! bit flipped or cut short, a torn or altered manifest, a damaged `created.toml`, temporary files
//! a crash left. Each is found when the host opens, named with what to do; it takes out only the
//! slice (or the tenant) it belongs to; it is never kept as the good copy; and it heals when the
//! slice is deployed again. A last test traces the real system calls of a deploy and checks that
//! every file and directory written survives a power cut.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use counterpoint::deploy::{DeployError, Registry};
use counterpoint::runtime::hash_of;
use counterpoint::store::Tenant;
use counterpoint::tenants::{Config, LimitOverrides, Tenants};
use counterpoint_tests::slices::{runtime, wasm};

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

async fn open(dir: &Path) -> Registry {
    Registry::open(runtime(), dir, Arc::new(Tenants::single(&acme()))).await.expect("a damaged file never stops the host")
}

/// A data directory where acme runs orders and inventory, its registry closed.
async fn deployed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    for name in ["orders", "inventory"] {
        registry.deploy(&acme(), wasm(name), Some(name)).await.unwrap();
    }
    dir
}

fn component_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("components").join(format!("{}.wasm", hash_of(&wasm(name))))
}

fn manifest_file(dir: &Path) -> PathBuf {
    dir.join("tenants").join("acme").join("slices.json")
}

/// Why `name` (or, with `None`, the whole manifest) is unavailable, if it is.
fn unavailable(registry: &Registry, name: Option<&str>) -> Option<String> {
    registry.unavailable(&acme()).into_iter().find(|(slice, _)| slice.as_deref() == name).map(|(_, why)| why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_component_is_found_at_load_names_its_file_and_heals_when_deployed_again() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 2] = [("a bit flipped", |bytes| bytes[1000] ^= 0x04), ("cut short", |bytes| bytes.truncate(bytes.len() - 7))];
    for (what, damage) in damages {
        let dir = deployed().await;
        let file = component_file(dir.path(), "orders");
        let mut bytes = std::fs::read(&file).unwrap();
        damage(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();

        let registry = open(dir.path()).await;
        assert!(registry.get(&acme(), "orders").is_none(), "{what}: the damaged component is not run");
        assert!(registry.get(&acme(), "inventory").is_some(), "{what}: the tenant's other slices are");
        let why = unavailable(&registry, Some("orders")).unwrap_or_else(|| panic!("{what}: orders is reported unavailable"));
        assert!(why.contains(&file.display().to_string()) && why.contains("deploy the slice again"), "{what}: {why}");
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{what}: loading changes nothing");

        // The same bytes deployed again: the damaged file is written over, not trusted because
        // a file of that name exists.
        registry.deploy(&acme(), wasm("orders"), Some("orders")).await.unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), wasm("orders"), "{what}: the file holds the component again");
        assert_eq!(unavailable(&registry, Some("orders")), None);
        drop(registry);
        let registry = open(dir.path()).await;
        assert!(registry.get(&acme(), "orders").is_some() && registry.unavailable(&acme()).is_empty(), "{what}: healed for good");
    }
}

/// A good copy in the tenant's drop zone heals a damaged component at start, with no one
/// deploying anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_the_drop_zone_heals_a_damaged_component_at_start() {
    let dir = deployed().await;
    let file = component_file(dir.path(), "orders");
    std::fs::write(&file, b"\0asm damaged").unwrap();
    let zone = dir.path().join("deploy").join("acme");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("orders.wasm"), wasm("orders")).unwrap();

    let registry = open(dir.path()).await;
    assert!(unavailable(&registry, Some("orders")).is_some());
    registry.scan_drop_zones().await;
    assert!(registry.get(&acme(), "orders").is_some(), "deployed from the drop zone");
    assert_eq!(std::fs::read(&file).unwrap(), wasm("orders"));
    assert!(!zone.join("orders.wasm.error").exists());
}

/// A manifest cut short (as a write without a rename would leave it) or altered so that it still
/// parses: the tenant's slices are left out with the file named, and a deploy for the tenant is
/// refused rather than written over what the manifest held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_altered_manifest_takes_its_tenant_out_and_is_never_written_over() {
    let dir = deployed().await;
    let manifest = manifest_file(dir.path());
    let whole = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &whole[..whole.len() / 2]).unwrap();

    let registry = open(dir.path()).await;
    assert!(registry.list(&acme()).is_empty());
    let why = unavailable(&registry, None).expect("the manifest is reported");
    assert!(why.contains(&manifest.display().to_string()) && why.contains("restore it from a backup"), "{why}");
    let refused = registry.deploy(&acme(), wasm("orders"), Some("orders")).await.err().expect("no deploy over a damaged manifest");
    assert!(matches!(refused, DeployError::Damaged { .. }), "{refused}");
    assert_eq!(std::fs::read(&manifest).unwrap(), &whole[..whole.len() / 2], "the torn manifest is left as it is");
    drop(registry);

    // A slice renamed by a flipped bit still parses: the component it names describes another.
    let renamed = String::from_utf8(whole.clone()).unwrap().replace("\"orders\"", "\"ordars\"");
    std::fs::write(&manifest, renamed).unwrap();
    let registry = open(dir.path()).await;
    assert!(registry.get(&acme(), "ordars").is_none() && registry.get(&acme(), "inventory").is_some());
    let why = unavailable(&registry, Some("ordars")).expect("the altered entry is reported");
    assert!(why.contains("holds slice orders"), "{why}");
}

/// Temporary files a crash left (this version's names and earlier ones) are removed at start;
/// one a live process may still be writing is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_files_left_by_a_crash_are_removed_at_start() {
    let dir = deployed().await;
    let dead = 4_194_305; // above Linux's largest pid: no such process
    let left = [
        dir.path().join("components").join(format!("{}.wasm.tmp-{dead}-3", "ab".repeat(32))),
        dir.path().join("components").join(format!("{}.tmp{dead}", "cd".repeat(32))),
        dir.path().join("tenants").join("acme").join(format!("slices.json.tmp-{dead}-0")),
        dir.path().join("tenants").join("created.toml.tmp"),
    ];
    let live = dir.path().join("tenants").join("acme").join(format!("slices.json.tmp-{}-99", std::process::id()));
    for path in left.iter().chain([&live]) {
        std::fs::write(path, b"half a file").unwrap();
    }
    let _registry = open(dir.path()).await;
    let _tenants = Tenants::single(&acme()).with_created(dir.path()).unwrap();
    for path in &left {
        assert!(!path.exists(), "{} is removed", path.display());
    }
    assert!(live.exists(), "a live writer's temporary file stays");
    assert!(manifest_file(dir.path()).exists() && component_file(dir.path(), "orders").exists(), "nothing else is touched");
}

/// `created.toml` carries a checksum: a flipped bit that still parses (a tenant renamed) is
/// refused with the file named, and a file edited by hand without the checksum line is read.
#[test]
fn a_damaged_created_tenants_file_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse("").unwrap();
    let tenants = Tenants::from_config(&config).with_created(dir.path()).unwrap();
    tenants.create(&Tenant::new("initech").unwrap(), LimitOverrides { max_slices: Some(7), ..Default::default() }).unwrap();
    let file = dir.path().join("tenants").join("created.toml");
    let whole = std::fs::read_to_string(&file).unwrap();
    let reopened = Tenants::from_config(&config).with_created(dir.path()).unwrap();
    assert_eq!(reopened.get(&Tenant::new("initech").unwrap()).unwrap().limits.max_slices, 7);

    std::fs::write(&file, whole.replace("initech", "initecj")).unwrap();
    let err = Tenants::from_config(&config).with_created(dir.path()).err().expect("a renamed tenant is refused");
    let message = err.to_string();
    assert!(message.contains(&file.display().to_string()) && message.contains("restore the file from a backup"), "{message}");

    std::fs::write(&file, whole.replace("max_slices = 7", "max_slices = 9")).unwrap();
    assert!(Tenants::from_config(&config).with_created(dir.path()).is_err(), "a changed limit is refused");

    // Edited by hand: without its checksum line, the file is read as written.
    let edited: String = whole.lines().filter(|l| !l.starts_with("# sha256 ")).map(|l| format!("{}\n", l.replace("max_slices = 7", "max_slices = 9"))).collect();
    std::fs::write(&file, edited).unwrap();
    let tenants = Tenants::from_config(&config).with_created(dir.path()).unwrap();
    assert_eq!(tenants.get(&Tenant::new("initech").unwrap()).unwrap().limits.max_slices, 9);
}

/// One file-system operation of a traced process, as `strace -y` shows it.
#[derive(Debug, PartialEq)]
enum Op {
    Made(PathBuf),
    Synced(PathBuf),
    Renamed(PathBuf, PathBuf),
}

/// The operations in `strace -f -y` output, in the order they completed (a call another thread
/// interrupted is put together again).
fn parse_trace(trace: &str) -> Vec<Op> {
    let mut unfinished: std::collections::HashMap<String, String> = Default::default();
    let mut ops = Vec::new();
    let quoted = |s: &str| -> Vec<PathBuf> { s.split('"').skip(1).step_by(2).map(PathBuf::from).collect() };
    for line in trace.lines() {
        // `PID call(...) = result`, the pid padded to a width.
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let call = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid.to_string(), start.to_string());
            continue;
        } else if let Some(end) = rest.strip_prefix("<... ") {
            let Some(start) = unfinished.remove(pid) else { continue };
            format!("{start}{}", end.split_once("resumed>").map_or("", |(_, e)| e))
        } else {
            rest.to_string()
        };
        let Some((body, result)) = call.rsplit_once(" = ") else { continue };
        if result.starts_with('-') {
            continue;
        }
        let name = body.split('(').next().unwrap_or("");
        let fd_path = |s: &str| s.split_once('<').and_then(|(_, p)| p.split_once('>')).map(|(p, _)| PathBuf::from(p));
        match name {
            "mkdir" | "mkdirat" => ops.extend(quoted(body).into_iter().next().map(Op::Made)),
            "openat" if body.contains("O_CREAT") => ops.extend(fd_path(result).map(Op::Made)),
            "fsync" | "fdatasync" => ops.extend(fd_path(body).map(Op::Synced)),
            "rename" | "renameat" | "renameat2" => {
                if let [from, to] = &quoted(body)[..] {
                    ops.push(Op::Renamed(from.clone(), to.clone()));
                }
            }
            _ => {}
        }
    }
    ops
}

/// Whether `path` (a file written by renaming a synced temporary file over it, or a directory
/// or file made in place) survives a power cut after `ops`: its content was synced before it got
/// its name, and its directory was synced after.
fn survives(ops: &[Op], path: &Path) -> Result<(), String> {
    let parent = path.parent().unwrap();
    let named = ops.iter().rposition(|op| match op {
        Op::Renamed(_, to) => to == path,
        Op::Made(made) => made == path,
        Op::Synced(_) => false,
    });
    let Some(named) = named else { return Err(format!("{} is never made", path.display())) };
    if let Op::Renamed(tmp, _) = &ops[named]
        && !ops[..named].iter().any(|op| *op == Op::Synced(tmp.clone()))
    {
        return Err(format!("{} is renamed over {} without being synced first", tmp.display(), path.display()));
    }
    if !ops[named..].iter().any(|op| *op == Op::Synced(parent.to_path_buf())) {
        return Err(format!("{} is not synced after {} is made in it", parent.display(), path.display()));
    }
    Ok(())
}

/// The system calls of a deploy, a tenant created and the read-model state opened, traced: after
/// a power cut at the end, every directory made and every file written is there, whole (the
/// model: what was not synced is lost). Fails if any of the syncs is removed.
#[test]
fn every_file_and_directory_written_survives_a_power_cut() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let dir = root.join("data");
    let trace_file = root.join("trace");
    let status = std::process::Command::new("strace")
        .args(["-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,openat", "-o"])
        .arg(&trace_file)
        .arg(env!("CARGO_BIN_EXE_catalog-writer"))
        .arg(&dir)
        .arg(counterpoint_tests::slices::wasm_path("orders"))
        .status()
        .expect("this test needs strace (apt-get install strace)");
    assert!(status.success(), "catalog-writer: {status}");
    let ops = parse_trace(&std::fs::read_to_string(&trace_file).unwrap());
    let tenants = dir.join("tenants");
    let written = [
        dir.clone(),
        dir.join("components"),
        component_file(&dir, "orders"),
        tenants.clone(),
        tenants.join("acme"),
        manifest_file(&dir),
        tenants.join("created.toml"),
        dir.join("readmodels.redb"),
    ];
    let lost: Vec<String> = written.iter().filter_map(|path| survives(&ops, path).err()).collect();
    assert!(lost.is_empty(), "lost in a power cut:\n{}\n(traced: {ops:?})", lost.join("\n"));
}

/// Compiled code in the cache is run as it is read, so it carries a checksum: an entry with a
/// bit flipped or cut short is compiled again (and written again), never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_compile_cache_entry_is_compiled_again_never_run() {
    use counterpoint::runtime::{Runtime, RuntimeConfig};
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // A new runtime each time: one keeps what it compiled in memory.
    let runtime = || Runtime::new(RuntimeConfig { cache_dir: Some(cache.clone()), max_instances: 8, ..Default::default() }).unwrap();
    runtime().load(wasm("orders")).await.unwrap();
    let entry = std::fs::read_dir(&cache).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "cwasm"));
    let entry = entry.expect("the compiled code is cached");
    let good = std::fs::read(&entry).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    for (what, damaged) in [("a bit flipped", flipped), ("cut short", good[..good.len() - 100].to_vec())] {
        std::fs::write(&entry, &damaged).unwrap();
        let slice = runtime().load(wasm("orders")).await.unwrap_or_else(|e| panic!("{what}: compiled again, not {e}"));
        assert_eq!(slice.name(), "orders");
        assert!(std::fs::read(&entry).unwrap() != damaged, "{what}: the entry is written again from a fresh compilation");
    }
}
