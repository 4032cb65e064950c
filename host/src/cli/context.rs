//! What the CLI's subcommands work with: the data directory's store, the runtime, the slices.
//!
//! ```text
//! <data dir>/events/                       the embedded event store
//! <data dir>/components/, tenants/         deployed slices (`counterpoint deploy`, or the server)
//! <data dir>/cache/                        compiled code, so a restart does not recompile
//! <data dir>/readmodels.redb               persistent read models' state and checkpoints
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};

use counterpoint::runner::{CommandOutput, CommandRunner};
use counterpoint::runtime::{Runtime, RuntimeConfig, Slice};
use counterpoint::automations::{Automations, RetryPolicy};
use counterpoint::deploy::Registry;
use counterpoint::readmodels::{EmbeddedState, ReadModels};
use counterpoint::store::{EmbeddedStore, SharedStore, Tenant};
use counterpoint::tenants::Tenants;

pub struct Host {
    pub store: SharedStore,
    pub tenant: Tenant,
    pub runner: CommandRunner,
    pub registry: Arc<Registry>,
    slices: BTreeMap<String, Arc<Slice>>,
}

impl Host {
    pub fn open_store(data_dir: &Path) -> anyhow::Result<SharedStore> {
        let store = EmbeddedStore::open(data_dir.join("events"))?;
        Ok(Arc::new(store))
    }

    pub fn tenant(name: &str) -> anyhow::Result<Tenant> {
        Ok(Tenant::new(name)?)
    }

    pub fn runtime(data_dir: &Path) -> anyhow::Result<Runtime> {
        Runtime::new(RuntimeConfig { cache_dir: Some(data_dir.join("cache")), ..Default::default() })
    }

    /// The tenant's deployed slices, as the server keeps them.
    async fn registry(runtime: Runtime, data_dir: &Path, tenant: &Tenant) -> anyhow::Result<Registry> {
        Ok(Registry::open(runtime, data_dir, Arc::new(Tenants::single(tenant))).await?)
    }

    /// Opens the store and loads the tenant's deployed slices, then `extra` ones (files or
    /// directories of `.wasm`); a later slice of the same name replaces an earlier one.
    pub async fn open(data_dir: &Path, tenant: &str, extra: &[PathBuf]) -> anyhow::Result<Host> {
        Self::open_with(data_dir, tenant, extra, false).await
    }

    /// Like [`open`](Self::open), deploying the `extra` slices for the tenant (so that its
    /// automations can find them).
    pub async fn open_deployed(data_dir: &Path, tenant: &str, extra: &[PathBuf]) -> anyhow::Result<Host> {
        Self::open_with(data_dir, tenant, extra, true).await
    }

    async fn open_with(data_dir: &Path, tenant: &str, extra: &[PathBuf], deploy: bool) -> anyhow::Result<Host> {
        let tenant = Self::tenant(tenant)?;
        let store = Self::open_store(data_dir)?;
        let runtime = Self::runtime(data_dir)?;
        let registry = Arc::new(Self::registry(runtime.clone(), data_dir, &tenant).await?);
        let mut loaded = Vec::new();
        for path in components(extra)? {
            if deploy {
                let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                registry.deploy(&tenant, wasm, None).await.with_context(|| format!("deploying {}", path.display()))?;
            } else {
                let slice = runtime.load_file(&path).await.with_context(|| format!("loading {}", path.display()))?;
                loaded.push(Arc::new(slice));
            }
        }
        let mut slices: BTreeMap<String, Arc<Slice>> =
            registry.list(&tenant).into_iter().map(|d| (d.slice.name().to_string(), d.slice.clone())).collect();
        slices.extend(loaded.into_iter().map(|s| (s.name().to_string(), s)));
        Ok(Host { store, tenant, runner: CommandRunner::default(), registry, slices })
    }

    pub fn slices(&self) -> Vec<Arc<Slice>> {
        self.slices.values().cloned().collect()
    }

    pub fn slice(&self, name: &str) -> anyhow::Result<&Arc<Slice>> {
        self.slices.get(name).with_context(|| {
            let known: Vec<&str> = self.slices.keys().map(String::as_str).collect();
            format!(
                "no slice named {name:?} (loaded: {}); deploy one with `counterpoint deploy` or pass --slices",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        })
    }

    pub async fn run_command(&self, slice: &str, command: &str, payload: &[u8]) -> anyhow::Result<CommandOutput> {
        let slice = self.slice(slice)?;
        Ok(self.runner.run(slice, &self.store, &self.tenant, command, payload).await?)
    }

    /// Runs a command and says how many times it ran, whether it succeeded or not.
    pub async fn run_counted(&self, slice: &str, command: &str, payload: &[u8]) -> anyhow::Result<(anyhow::Result<CommandOutput>, u32)> {
        let slice = self.slice(slice)?;
        let (result, attempts) = self.runner.run_counted(slice, &self.store, &self.tenant, command, payload).await;
        Ok((result.map_err(Into::into), attempts))
    }

    pub async fn query(&self, slice: &str, projection: &str, params: &[u8]) -> anyhow::Result<Vec<u8>> {
        let slice = self.slice(slice)?;
        Ok(counterpoint::projections::run(slice, &self.store, &self.tenant, projection, params).await?)
    }

    /// The tenant's automations, for inspecting and resolving dead letters (their workers run
    /// in `counterpoint serve`, not here).
    pub async fn automations(data_dir: &Path, tenant: &str) -> anyhow::Result<(Tenant, Arc<Automations>)> {
        let tenant = Self::tenant(tenant)?;
        let store = Self::open_store(data_dir)?;
        let registry = Arc::new(Self::registry(Self::runtime(data_dir)?, data_dir, &tenant).await?);
        let automations = Automations::new(store, registry, CommandRunner::default(), RetryPolicy::default());
        Ok((tenant, automations))
    }

    /// The tenant's read models, over the data directory's state (their workers run in
    /// `counterpoint serve`; here they catch up on request).
    pub async fn read_models(data_dir: &Path, tenant: &str) -> anyhow::Result<(Tenant, Arc<ReadModels>)> {
        let tenant = Self::tenant(tenant)?;
        let store = Self::open_store(data_dir)?;
        let registry = Arc::new(Self::registry(Self::runtime(data_dir)?, data_dir, &tenant).await?);
        let state = Arc::new(EmbeddedState::open(data_dir.join("readmodels.redb"))?);
        Ok((tenant, ReadModels::new(store, state, registry)))
    }

    /// Validates `component` and deploys it for the tenant, where the server finds it too.
    pub async fn deploy(data_dir: &Path, tenant: &str, component: &Path) -> anyhow::Result<Arc<Slice>> {
        let tenant = Self::tenant(tenant)?;
        let registry = Self::registry(Self::runtime(data_dir)?, data_dir, &tenant).await?;
        let wasm = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
        let deployed =
            registry.deploy(&tenant, wasm, None).await.with_context(|| format!("{} cannot be deployed", component.display()))?;
        Ok(deployed.slice.clone())
    }
}

/// The `.wasm` files named by `sources` (files, or directories read one level deep), sorted.
fn components(sources: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for source in sources {
        if source.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(source)
                .with_context(|| format!("reading {}", source.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect();
            found.sort();
            out.extend(found);
        } else if source.is_file() {
            out.push(source.clone());
        } else {
            bail!("{} is neither a .wasm file nor a directory", source.display());
        }
    }
    Ok(out)
}
