//! Deployed slices per tenant, and hot deploy.
//!
//! A new version arrives by upload (`PUT /v1/t/{tenant}/slices/{slice}`) or by dropping a
//! `.wasm` file into `<data dir>/deploy/<tenant>/` (watched). It is compiled off the request
//! path (or taken from the compile cache), validated (a component, the contract version, it
//! describes itself, its names are unique), kept, then swapped in atomically: invocations that
//! started on the old version finish on it. A bad component is refused with the reason and the
//! old version keeps serving.
//!
//! Uploads are bounded per tenant: in size (`max_component_bytes`, checked as the body is read)
//! and in rate (`uploads_per_minute`); what can be refused without compiling is (the contract,
//! the imports, `max_slices`); compiling runs a few at a time with a timeout. A component no
//! tenant runs any more, replaced or removed, is deleted with its compiled code.
//!
//! ```text
//! <data dir>/components/<sha256>.wasm      every deployed component, by content
//! <data dir>/tenants/<tenant>/slices.json  what each tenant runs: name → hash
//! <data dir>/deploy/<tenant>/*.wasm        the drop zone (a failure leaves <file>.error)
//! ```
//!
//! At start every tenant's slices come back from the [`Catalog`] (compiled code from the cache):
//! the files above on one host; on a cluster, the cluster itself, whose changes every host
//! follows ([`Registry::follow_catalog`]), so a deploy on one host reaches them all.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};


mod catalog;
#[cfg(feature = "fdb")]
mod fdb;

pub use self::catalog::{Catalog, FileCatalog, ManifestEntry, MemoryCatalog};
#[cfg(feature = "fdb")]
pub use self::fdb::FdbCatalog;
use crate::runtime::{InvocationLimits, LoadError, Runtime, Slice};
use crate::store::Tenant;
use crate::tenants::Tenants;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the component describes slice {found:?}, not {expected:?}")]
    WrongName { expected: String, found: String },
    #[error("tenant {tenant} may deploy at most {limit} slices")]
    TooManySlices { tenant: Tenant, limit: usize },
    #[error("tenant {tenant} may upload at most {per_minute} components a minute; try again later")]
    UploadRate { tenant: Tenant, per_minute: u32 },
    #[error("no tenant named {0}")]
    UnknownTenant(Tenant),
    #[error("slice {name} imports effects, but tenant {tenant} grants it none (configure [tenants.{tenant}.effects.{name}])")]
    NotGranted { tenant: Tenant, name: String },
    #[error("tenant {tenant} has no slice named {name}")]
    UnknownSlice { tenant: Tenant, name: String },
    #[error("keeping the deployed slice failed: {0}")]
    Io(String),
    /// A file (or entry) of the catalog does not hold what was written: the detail says what
    /// to do. Nothing is written over it meanwhile.
    #[error("{what} is damaged: {detail}")]
    Damaged { what: String, detail: String },
}

/// One deployed version of a slice.
pub struct Deployed {
    pub slice: Arc<Slice>,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
}

type TenantSlices = BTreeMap<String, Arc<Deployed>>;

pub struct Registry {
    runtime: Runtime,
    data_dir: PathBuf,
    catalog: Arc<dyn Catalog>,
    tenants: Arc<Tenants>,
    deployed: RwLock<HashMap<Tenant, TenantSlices>>,
    /// One deploy or removal at a time, so manifests are written in order.
    writing: tokio::sync::Mutex<()>,
    deploys: AtomicU64,
    /// Bumped on every deploy and removal, for those who follow what is deployed.
    changes: tokio::sync::watch::Sender<u64>,
    /// When each tenant's uploads of the last minute arrived.
    uploads: std::sync::Mutex<HashMap<Tenant, VecDeque<Instant>>>,
    /// Per tenant, what of its catalog could not be loaded (damaged), by slice name (`None`:
    /// its manifest): served by nothing until deployed again.
    unavailable: RwLock<HashMap<Tenant, BTreeMap<Option<String>, String>>>,
}

fn io(context: &str, err: impl std::fmt::Display) -> DeployError {
    DeployError::Io(format!("{context}: {err}"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Registry {
    /// Brings back every tenant's deployed slices, kept in the data directory.
    pub async fn open(runtime: Runtime, data_dir: &Path, tenants: Arc<Tenants>) -> Result<Self, DeployError> {
        Self::open_with(runtime, data_dir, tenants, Arc::new(FileCatalog::new(data_dir))).await
    }

    /// Brings back every tenant's deployed slices from `catalog` (a cluster's, shared by hosts).
    pub async fn open_with(runtime: Runtime, data_dir: &Path, tenants: Arc<Tenants>, catalog: Arc<dyn Catalog>) -> Result<Self, DeployError> {
        let registry = Registry {
            runtime,
            data_dir: data_dir.to_path_buf(),
            catalog,
            tenants,
            deployed: RwLock::default(),
            writing: tokio::sync::Mutex::new(()),
            deploys: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            uploads: Default::default(),
            unavailable: Default::default(),
        };
        // A damaged file of one tenant's catalog takes that tenant's slice (or slices) out, not
        // the host: the others serve, and the slice comes back when it is deployed again.
        for tenant in registry.tenants.names() {
            let slices = match registry.load_manifest(&tenant, &TenantSlices::new()).await {
                Ok(slices) => slices,
                Err(err @ DeployError::Damaged { .. }) => {
                    tracing::error!(tenant = %tenant, "the tenant's slices cannot be loaded: {err}");
                    registry.unavailable.write().expect("registry lock").entry(tenant.clone()).or_default().insert(None, err.to_string());
                    TenantSlices::new()
                }
                Err(err) => return Err(err),
            };
            registry.deployed.write().expect("registry lock").insert(tenant, slices);
        }
        Ok(registry)
    }

    /// The tenant's slices as its manifest in the catalog says, reusing the `known` ones whose
    /// hash has not changed. A slice whose component is damaged or missing is left out (the
    /// `known` version stays, if any) and recorded as unavailable.
    async fn load_manifest(&self, tenant: &Tenant, known: &TenantSlices) -> Result<TenantSlices, DeployError> {
        let mut slices = TenantSlices::new();
        let mut unavailable = BTreeMap::new();
        for entry in self.catalog.manifest(tenant).await? {
            if let Some(same) = known.get(&entry.name).filter(|d| d.slice.hash() == entry.hash) {
                slices.insert(entry.name, same.clone());
                continue;
            }
            match self.load_entry(tenant, &entry).await {
                Ok(slice) => {
                    tracing::info!(tenant = %tenant, slice = slice.name(), hash = &slice.hash()[..12], "slice loaded");
                    slices.insert(entry.name, Arc::new(Deployed { slice: Arc::new(slice), deployed_at: entry.deployed_at }));
                }
                Err(err @ DeployError::Damaged { .. }) => {
                    tracing::error!(tenant = %tenant, slice = %entry.name, "the slice cannot be loaded: {err}");
                    if let Some(stale) = known.get(&entry.name) {
                        slices.insert(entry.name.clone(), stale.clone());
                    }
                    unavailable.insert(Some(entry.name), err.to_string());
                }
                Err(err) => return Err(err),
            }
        }
        self.unavailable.write().expect("registry lock").insert(tenant.clone(), unavailable);
        Ok(slices)
    }

    /// Loads one slice of a manifest, checking that the component is the one it names.
    async fn load_entry(&self, tenant: &Tenant, entry: &ManifestEntry) -> Result<Slice, DeployError> {
        let missing = || DeployError::Damaged {
            what: format!("the catalog entry of slice {} of tenant {tenant}", entry.name),
            detail: format!("its component {} is missing; deploy the slice again", entry.hash),
        };
        let wasm = self.catalog.component(&entry.hash).await?.ok_or_else(missing)?;
        let slice = self.grant(tenant, self.runtime.load_with_limits(wasm, self.limits_for(tenant)?).await?)?;
        // Whatever the catalog checks itself: the bytes are the ones named, of the slice named.
        if slice.hash() != entry.hash || slice.name() != entry.name {
            return Err(DeployError::Damaged {
                what: format!("the catalog entry of slice {} of tenant {tenant}", entry.name),
                detail: format!(
                    "it names component {}, which holds slice {} with hash {}; deploy the slice again",
                    entry.hash,
                    slice.name(),
                    slice.hash()
                ),
            });
        }
        Ok(slice)
    }

    /// What of the tenant's catalog could not be loaded: (slice name, or `None` for the whole
    /// manifest; why). Deploying the slice again brings it back.
    pub fn unavailable(&self, tenant: &Tenant) -> Vec<(Option<String>, String)> {
        let unavailable = self.unavailable.read().expect("registry lock");
        unavailable.get(tenant).map(|u| u.iter().map(|(name, why)| (name.clone(), why.clone())).collect()).unwrap_or_default()
    }

    /// Follows the catalog's changes made by other hosts (when it has any): each change
    /// re-reads the manifests and swaps in what differs. Runs until the registry is dropped.
    pub fn follow_catalog(self: &Arc<Self>) {
        let Some(mut changes) = self.catalog.changes() else { return };
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(registry) = registry.upgrade() else { break };
                if let Err(err) = registry.sync().await {
                    tracing::warn!("cannot follow the slice catalog: {err}");
                }
            }
        });
    }

    /// Brings every tenant's slices in line with the catalog.
    pub async fn sync(&self) -> Result<(), DeployError> {
        let _writing = self.writing.lock().await;
        for tenant in self.tenants.names() {
            let known = self.deployed.read().expect("registry lock").get(&tenant).cloned().unwrap_or_default();
            let slices = self.load_manifest(&tenant, &known).await?;
            let same = slices.len() == known.len() && slices.iter().all(|(name, d)| known.get(name).is_some_and(|k| Arc::ptr_eq(k, d)));
            if !same {
                let gone: Vec<String> = known.values().map(|d| d.slice.hash().to_string()).collect();
                self.deployed.write().expect("registry lock").insert(tenant, slices);
                self.changes.send_modify(|n| *n += 1);
                self.collect(gone).await;
            }
        }
        Ok(())
    }

    /// Counts one upload against the tenant's `uploads_per_minute`, or refuses it.
    pub fn admit_upload(&self, tenant: &Tenant) -> Result<(), DeployError> {
        let state = self.tenants.get(tenant).ok_or_else(|| DeployError::UnknownTenant(tenant.clone()))?;
        let per_minute = state.limits.uploads_per_minute;
        let now = Instant::now();
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let recent = uploads.entry(tenant.clone()).or_default();
        while recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            recent.pop_front();
        }
        if recent.len() >= per_minute as usize {
            return Err(DeployError::UploadRate { tenant: tenant.clone(), per_minute });
        }
        recent.push_back(now);
        Ok(())
    }

    /// Of `hashes` (components that were just replaced or removed), deletes those no tenant of
    /// this host runs any more: their compiled code here, and the component from the catalog
    /// when no manifest in it names them (a catalog shared by hosts may keep them).
    async fn collect(&self, hashes: Vec<String>) {
        let in_use: HashSet<String> = self
            .deployed
            .read()
            .expect("registry lock")
            .values()
            .flat_map(|slices| slices.values().map(|d| d.slice.hash().to_string()))
            .collect();
        for hash in hashes.into_iter().collect::<HashSet<_>>() {
            if in_use.contains(&hash) {
                continue;
            }
            self.runtime.forget(&hash);
            match self.catalog.collect_component(&hash).await {
                Ok(true) => tracing::info!(hash = &hash[..hash.len().min(12)], "unused component deleted"),
                Ok(false) => {}
                Err(err) => tracing::warn!(hash = %hash, "cannot delete an unused component: {err}"),
            }
        }
    }

    fn limits_for(&self, tenant: &Tenant) -> Result<InvocationLimits, DeployError> {
        let state = self.tenants.get(tenant).ok_or_else(|| DeployError::UnknownTenant(tenant.clone()))?;
        Ok(InvocationLimits {
            memory_bytes: state.limits.memory_bytes,
            deadline: std::time::Duration::from_millis(state.limits.deadline_ms),
            ..self.runtime.limits().clone()
        })
    }

    /// Gives the slice the effects its tenant grants it; refuses one that imports effects
    /// without a grant.
    fn grant(&self, tenant: &Tenant, mut slice: Slice) -> Result<Slice, DeployError> {
        let state = self.tenants.get(tenant).ok_or_else(|| DeployError::UnknownTenant(tenant.clone()))?;
        match state.effects.get(slice.name()) {
            Some(grants) => slice.grant(grants.clone()),
            None if slice.imports_effects() => {
                return Err(DeployError::NotGranted { tenant: tenant.clone(), name: slice.name().into() });
            }
            None => {}
        }
        Ok(slice)
    }

    /// Validates `wasm` and makes it the tenant's version of the slice it describes (which must
    /// be `expected_name` when given).
    pub async fn deploy(&self, tenant: &Tenant, wasm: Vec<u8>, expected_name: Option<&str>) -> Result<Arc<Deployed>, DeployError> {
        let limits = self.limits_for(tenant)?;
        let max_slices = self.tenants.get(tenant).map_or(0, |t| t.limits.max_slices);
        // A new slice past the quota is refused before it is compiled (checked again below).
        if let Some(expected) = expected_name {
            let current = self.deployed.read().expect("registry lock").get(tenant).cloned().unwrap_or_default();
            if !current.contains_key(expected) && current.len() >= max_slices {
                return Err(DeployError::TooManySlices { tenant: tenant.clone(), limit: max_slices });
            }
        }
        let slice = self.grant(tenant, self.runtime.load_with_limits(wasm.clone(), limits).await?)?;
        let name = slice.name().to_string();
        if let Some(expected) = expected_name
            && expected != name
        {
            return Err(DeployError::WrongName { expected: expected.into(), found: name });
        }
        let _writing = self.writing.lock().await;
        let mut next = self.deployed.read().expect("registry lock").get(tenant).cloned().unwrap_or_default();
        if !next.contains_key(&name) && next.len() >= max_slices {
            return Err(DeployError::TooManySlices { tenant: tenant.clone(), limit: max_slices });
        }
        self.catalog.put_component(slice.hash(), &wasm).await?;
        let deployed = Arc::new(Deployed { slice: Arc::new(slice), deployed_at: now() });
        let entry = ManifestEntry { name: name.clone(), hash: deployed.slice.hash().to_string(), deployed_at: deployed.deployed_at };
        self.catalog.put_slice(tenant, &entry).await?;
        if let Some(unavailable) = self.unavailable.write().expect("registry lock").get_mut(tenant) {
            // The manifest was written whole: it reads again, and this slice is whole.
            unavailable.remove(&None);
            unavailable.remove(&Some(name.clone()));
        }
        let replaced = next.insert(name.clone(), deployed.clone());
        self.deployed.write().expect("registry lock").insert(tenant.clone(), next);
        self.deploys.fetch_add(1, Ordering::Relaxed);
        self.changes.send_modify(|n| *n += 1);
        tracing::info!(tenant = %tenant, slice = %name, hash = &deployed.slice.hash()[..12], "slice deployed");
        self.collect(replaced.into_iter().map(|d| d.slice.hash().to_string()).collect()).await;
        Ok(deployed)
    }

    pub async fn remove(&self, tenant: &Tenant, name: &str) -> Result<(), DeployError> {
        let _writing = self.writing.lock().await;
        let mut next = self.deployed.read().expect("registry lock").get(tenant).cloned().unwrap_or_default();
        let removed = next.remove(name);
        // A slice left out as damaged can be removed too.
        let damaged = self.unavailable.read().expect("registry lock").get(tenant).is_some_and(|u| u.contains_key(&Some(name.to_string())));
        if removed.is_none() && !damaged {
            return Err(DeployError::UnknownSlice { tenant: tenant.clone(), name: name.into() });
        }
        self.catalog.remove_slice(tenant, name).await?;
        if let Some(unavailable) = self.unavailable.write().expect("registry lock").get_mut(tenant) {
            unavailable.remove(&Some(name.to_string()));
        }
        self.deployed.write().expect("registry lock").insert(tenant.clone(), next);
        self.changes.send_modify(|n| *n += 1);
        tracing::info!(tenant = %tenant, slice = name, "slice removed");
        self.collect(removed.into_iter().map(|d| d.slice.hash().to_string()).collect()).await;
        Ok(())
    }

    /// The version of the slice that serves new invocations.
    pub fn get(&self, tenant: &Tenant, name: &str) -> Option<Arc<Slice>> {
        self.deployed.read().expect("registry lock").get(tenant)?.get(name).map(|d| d.slice.clone())
    }

    pub fn list(&self, tenant: &Tenant) -> Vec<Arc<Deployed>> {
        self.deployed.read().expect("registry lock").get(tenant).map(|s| s.values().cloned().collect()).unwrap_or_default()
    }

    /// Notified on every deploy and removal.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Calls `reconcile` on `owner` now and after every deploy or removal, for as long as
    /// `owner` lives and `reconcile` says to go on (the workers that follow what is deployed).
    pub fn follow<T: Send + Sync + 'static>(&self, owner: &Arc<T>, reconcile: fn(&Arc<T>) -> bool) {
        let mut changes = self.changes();
        let owner = Arc::downgrade(owner);
        tokio::spawn(async move {
            loop {
                let Some(owner) = owner.upgrade() else { break };
                if !reconcile(&owner) {
                    break;
                }
                drop(owner);
                if changes.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// The tenants whose slices this registry keeps.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.tenants.names()
    }

    /// Deploys and removals since start.
    pub fn deploys(&self) -> u64 {
        self.deploys.load(Ordering::Relaxed)
    }

    /// Slices deployed across all tenants.
    pub fn total(&self) -> usize {
        self.deployed.read().expect("registry lock").values().map(BTreeMap::len).sum()
    }

    /// Makes a (new) tenant's drop zone.
    pub fn prepare(&self, tenant: &Tenant) -> Result<(), DeployError> {
        crate::durable::create_dir(&self.drop_zone(tenant)).map_err(|e| io("creating the drop zone", e))
    }

    /// The drop zone of a tenant.
    pub fn drop_zone(&self, tenant: &Tenant) -> PathBuf {
        self.data_dir.join("deploy").join(tenant.as_str())
    }

    /// Watches every tenant's drop zone and deploys what lands there, debounced. Runs until the
    /// registry is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<(), DeployError> {
        use notify::{RecursiveMode, Watcher};
        let root = self.data_dir.join("deploy");
        // Made even with no tenant yet: tenants created later get their zone under it.
        crate::durable::create_dir(&root).map_err(|e| io("creating the drop zone", e))?;
        for tenant in self.tenants.names() {
            self.prepare(&tenant)?;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        })
        .map_err(|e| io("watching the drop zone", e))?;
        watcher.watch(&root, RecursiveMode::Recursive).map_err(|e| io("watching the drop zone", e))?;
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let _watcher = watcher; // lives as long as this task
            while let Some(first) = rx.recv().await {
                // Writers take a moment to finish a file: wait for the burst of events to settle.
                let mut paths = vec![first];
                while let Ok(Some(path)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
                    paths.push(path);
                }
                paths.sort();
                paths.dedup();
                let Some(registry) = registry.upgrade() else { break };
                for path in paths {
                    registry.deploy_dropped(&root, &path).await;
                }
            }
        });
        Ok(())
    }

    /// Deploys (or re-deploys) every component already waiting in the drop zones.
    pub async fn scan_drop_zones(&self) {
        let root = self.data_dir.join("deploy");
        let tenants: Vec<Tenant> = self.tenants.names();
        for tenant in tenants {
            let Ok(entries) = std::fs::read_dir(root.join(tenant.as_str())) else { continue };
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                self.deploy_dropped(&root, &path).await;
            }
        }
    }

    async fn deploy_dropped(&self, root: &Path, path: &Path) {
        if path.extension().is_none_or(|e| e != "wasm") || !path.is_file() {
            return;
        }
        let Some(tenant) = path
            .parent()
            .filter(|p| p.parent() == Some(root))
            .and_then(|p| p.file_name())
            .and_then(|n| Tenant::new(n.to_string_lossy().to_string()).ok())
        else {
            return;
        };
        let error_file = path.with_extension("wasm.error");
        let result = match std::fs::read(path) {
            Ok(wasm) => {
                let hash = crate::runtime::hash_of(&wasm);
                let current = self.list(&tenant).into_iter().any(|d| d.slice.hash() == hash);
                if current { Ok(()) } else { self.deploy(&tenant, wasm, None).await.map(|_| ()) }
            }
            Err(e) => Err(io(&format!("reading {}", path.display()), e)),
        };
        match result {
            Ok(()) => {
                let _ = std::fs::remove_file(&error_file);
            }
            Err(err) => {
                tracing::warn!(tenant = %tenant, file = %path.display(), "refused: {err}");
                // Whole or absent: whoever watches for it never reads half a reason.
                let _ = catalog::write_durably(&error_file, format!("{err}\n").as_bytes());
            }
        }
    }
}
