//! Sets `cfg(fdb_cluster)` when `FDB_CLUSTER_FILE` names a cluster at build time, so the
//! FoundationDB cases run then and are reported as ignored (skipped) otherwise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fdb_cluster)");
    println!("cargo::rerun-if-env-changed=FDB_CLUSTER_FILE");
    if std::env::var_os("FDB_CLUSTER_FILE").is_some_and(|f| !f.is_empty()) {
        println!("cargo::rustc-cfg=fdb_cluster");
    }
}
