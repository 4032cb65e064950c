//! Sets `cfg(fdb_cluster)` when the `fdb` feature is on and `FDB_CLUSTER_FILE` names a cluster
//! at build time (`tests/fdb.sh run` does both when it finds FoundationDB), so the FoundationDB
//! cases run then and are reported as ignored, with the reason, otherwise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fdb_cluster)");
    println!("cargo::rerun-if-env-changed=FDB_CLUSTER_FILE");
    let feature = std::env::var_os("CARGO_FEATURE_FDB").is_some();
    if feature && std::env::var_os("FDB_CLUSTER_FILE").is_some_and(|f| !f.is_empty()) {
        println!("cargo::rustc-cfg=fdb_cluster");
    }
}
