//! Where deployed slices are kept: every component by its hash, and what each tenant runs
//! (slice name → hash). One host keeps them in its data directory; hosts sharing a cluster
//! keep them in it, so a deploy on one host reaches them all ([`Catalog::changes`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::DeployError;
use crate::durable;
use crate::store::Tenant;

/// One slice a tenant runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub hash: String,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, DeployError>;

    /// Keeps a component (a no-op when it is kept already).
    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), DeployError>;

    /// What `tenant` runs, by slice name.
    async fn manifest(&self, tenant: &Tenant) -> Result<Vec<ManifestEntry>, DeployError>;

    /// Makes `entry` the tenant's version of its slice.
    async fn put_slice(&self, tenant: &Tenant, entry: &ManifestEntry) -> Result<(), DeployError>;

    async fn remove_slice(&self, tenant: &Tenant, name: &str) -> Result<(), DeployError>;

    /// Deletes component `hash` if no tenant's manifest names it; says whether it did. A catalog
    /// shared by hosts keeps its components (by default): another host may be deploying the
    /// same one at this moment, and would be left with a manifest naming nothing.
    async fn collect_component(&self, hash: &str) -> Result<bool, DeployError> {
        let _ = hash;
        Ok(false)
    }

    /// Changes whenever a manifest may have changed elsewhere (another host); `None` for a
    /// catalog that only this process writes.
    fn changes(&self) -> Option<watch::Receiver<u64>>;
}

fn io(context: &str, err: impl std::fmt::Display) -> DeployError {
    DeployError::Io(format!("{context}: {err}"))
}

/// The catalog in the data directory:
///
/// ```text
/// <data dir>/components/<sha256>.wasm      every deployed component, by content
/// <data dir>/tenants/<tenant>/slices.json  what each tenant runs: name → hash
/// ```
///
/// Files are written whole or not at all, across a power cut ([`durable::write`]). A component
/// is checked against its name when read, and a damaged one is written over by the next deploy
/// of the same bytes; a manifest that does not decode is reported, never written over.
pub struct FileCatalog {
    data_dir: PathBuf,
    /// Manifests are read, changed and written whole: one change at a time.
    writing: tokio::sync::Mutex<()>,
}

impl FileCatalog {
    /// The catalog in `data_dir`; removes the temporary files a crash left in it.
    pub fn new(data_dir: &Path) -> Self {
        let catalog = FileCatalog { data_dir: data_dir.to_path_buf(), writing: tokio::sync::Mutex::new(()) };
        durable::remove_leftover_temp_files(&data_dir.join("components"));
        for tenant in std::fs::read_dir(data_dir.join("tenants")).into_iter().flatten().flatten() {
            durable::remove_leftover_temp_files(&tenant.path());
        }
        catalog
    }

    fn component_path(&self, hash: &str) -> PathBuf {
        self.data_dir.join("components").join(format!("{hash}.wasm"))
    }

    fn manifest_path(&self, tenant: &Tenant) -> PathBuf {
        self.data_dir.join("tenants").join(tenant.as_str()).join("slices.json")
    }

    async fn change(&self, tenant: &Tenant, change: impl FnOnce(&mut BTreeMap<String, ManifestEntry>)) -> Result<(), DeployError> {
        let _writing = self.writing.lock().await;
        let mut entries: BTreeMap<String, ManifestEntry> = self.manifest(tenant).await?.into_iter().map(|e| (e.name.clone(), e)).collect();
        change(&mut entries);
        let entries: Vec<&ManifestEntry> = entries.values().collect();
        let bytes = serde_json::to_vec_pretty(&entries).expect("manifest encodes");
        write_durably(&self.manifest_path(tenant), &bytes)
    }
}

#[async_trait]
impl Catalog for FileCatalog {
    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, DeployError> {
        let path = self.component_path(hash);
        let wasm = match std::fs::read(&path) {
            Ok(wasm) => wasm,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&format!("reading {}", path.display()), e)),
        };
        // The name is the content's SHA-256: a bit flipped or a file cut short shows.
        let found = crate::runtime::hash_of(&wasm);
        if found != hash {
            return Err(DeployError::Damaged {
                what: path.display().to_string(),
                detail: format!("its {} bytes hash to {found}, not to the SHA-256 its name records; deploy the slice again (upload it, or drop it in the drop zone) to rewrite it", wasm.len()),
            });
        }
        Ok(Some(wasm))
    }

    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), DeployError> {
        // A file kept already is trusted only if it holds these very bytes: a damaged one is
        // written again.
        let path = self.component_path(hash);
        match std::fs::read(&path) {
            Ok(kept) if kept == wasm => return Ok(()),
            Ok(_) => tracing::warn!(file = %path.display(), "the kept component is damaged: writing it again"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&format!("reading {}", path.display()), e)),
        }
        write_durably(&path, wasm)
    }

    async fn manifest(&self, tenant: &Tenant) -> Result<Vec<ManifestEntry>, DeployError> {
        let path = self.manifest_path(tenant);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeployError::Damaged {
                what: path.display().to_string(),
                detail: format!(
                    "it does not decode ({e}); restore it from a backup, or move it aside and deploy the tenant's slices again (nothing is written over it meanwhile)"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&format!("reading {}", path.display()), e)),
        }
    }

    async fn put_slice(&self, tenant: &Tenant, entry: &ManifestEntry) -> Result<(), DeployError> {
        self.change(tenant, |entries| {
            entries.insert(entry.name.clone(), entry.clone());
        })
        .await
    }

    async fn remove_slice(&self, tenant: &Tenant, name: &str) -> Result<(), DeployError> {
        self.change(tenant, |entries| {
            entries.remove(name);
        })
        .await
    }

    async fn collect_component(&self, hash: &str) -> Result<bool, DeployError> {
        // Manifests are not written meanwhile; every tenant's counts, configured now or not.
        let _writing = self.writing.lock().await;
        let tenants = self.data_dir.join("tenants");
        let dirs = match std::fs::read_dir(&tenants) {
            Ok(dirs) => dirs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(&format!("listing {}", tenants.display()), e)),
        };
        for dir in dirs {
            let dir = dir.map_err(|e| io(&format!("listing {}", tenants.display()), e))?;
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(tenant) = Tenant::new(dir.file_name().to_string_lossy().to_string()) else { continue };
            if self.manifest(&tenant).await?.iter().any(|entry| entry.hash == hash) {
                return Ok(false);
            }
        }
        let path = self.component_path(hash);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&format!("removing {}", path.display()), e)),
        }
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

/// Writes a file so that it is either complete or absent after a crash or a power cut.
pub(super) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
    durable::write(path, bytes).map_err(|e| io(&format!("writing {}", path.display()), e))
}

/// A catalog in memory that several registries in one process share, as hosts share a
/// cluster's: for tests of what a deploy on one host does on another.
#[derive(Default)]
pub struct MemoryCatalog {
    components: Mutex<HashMap<String, Vec<u8>>>,
    manifests: Mutex<HashMap<Tenant, BTreeMap<String, ManifestEntry>>>,
    version: watch::Sender<u64>,
}

impl MemoryCatalog {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn component(&self, hash: &str) -> Result<Option<Vec<u8>>, DeployError> {
        Ok(self.components.lock().expect("catalog lock").get(hash).cloned())
    }

    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), DeployError> {
        self.components.lock().expect("catalog lock").entry(hash.into()).or_insert_with(|| wasm.to_vec());
        Ok(())
    }

    async fn manifest(&self, tenant: &Tenant) -> Result<Vec<ManifestEntry>, DeployError> {
        Ok(self.manifests.lock().expect("catalog lock").get(tenant).map(|m| m.values().cloned().collect()).unwrap_or_default())
    }

    async fn put_slice(&self, tenant: &Tenant, entry: &ManifestEntry) -> Result<(), DeployError> {
        self.manifests.lock().expect("catalog lock").entry(tenant.clone()).or_default().insert(entry.name.clone(), entry.clone());
        self.changed();
        Ok(())
    }

    async fn remove_slice(&self, tenant: &Tenant, name: &str) -> Result<(), DeployError> {
        if let Some(manifest) = self.manifests.lock().expect("catalog lock").get_mut(tenant) {
            manifest.remove(name);
        }
        self.changed();
        Ok(())
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.version.subscribe())
    }
}
