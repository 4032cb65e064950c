//! The WebAssembly runtime: loads slices and runs them, one fresh instance per invocation.
//!
//! Stages, each with its own error:
//! 1. **engine** (once per process): one wasmtime [`Engine`] with the component model, the
//!    pooling allocator (instance slots reused, memory cap built in) and epoch interruption
//!    (a ticker thread advances the epoch; each call into a guest has a wall-time deadline);
//!    the host's imports are linked once into one [`Linker`].
//! 2. **load** (once per slice version): check the contract version and the imports on the
//!    bytes; compile (a bounded pool, with a timeout), or take the compiled code from the
//!    on-disk cache; prepare an `InstancePre`; ask the slice to describe itself and validate
//!    the answer.
//! 3. **invoke** (per call): a fresh `Store` and instance, limits armed, the `store` import
//!    bound to this invocation's tenant and [`ReadAppender`]. A trap, a timeout or running out
//!    of memory fails that invocation and nothing else.

mod bindings;
mod cache;
mod contract;
mod effects;
mod error;
mod invocation;
mod limits;
mod output;
mod read_model_state;
mod slice;
mod waits;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use contract::{CONTRACT_PACKAGE, CONTRACT_VERSION};
pub use effects::{DirGrant, Grants};
pub(crate) use effects::public_tls;
pub use error::{InvokeError, LoadError};
pub use invocation::{Access, ReadAppender, ReadGate};
pub use read_model_state::KvSession;
pub use limits::InvocationLimits;
pub use waits::{WaitSlot, WaitSlots};
pub use slice::{AutomationInfo, CommandCall, CommandInfo, Field, ProjectionInfo, ReadModelInfo, Slice, SliceDescription, SpentInstance};

use self::bindings::{guest, read_models_guest};
use self::cache::CompileCache;
use self::invocation::InvocationState;

/// How often the epoch advances: the granularity of deadlines and of yielding to tokio.
const EPOCH_TICK: Duration = Duration::from_millis(2);

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub limits: InvocationLimits,
    /// Where compiled code is cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Instances alive at once, across all slices (the pooling allocator's slots).
    pub max_instances: u32,
    /// How long a call waits for an instance slot when all are in use, before it ends `busy`.
    /// Calls wait in arrival order.
    pub slot_wait: Duration,
    /// Components compiled at once; more wait for a turn.
    pub compile_concurrency: usize,
    /// How long a load may wait for its turn and compile; past it, [`LoadError::CompileTimeout`].
    pub compile_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: InvocationLimits::default(),
            cache_dir: None,
            max_instances: 512,
            slot_wait: Duration::from_secs(2),
            compile_concurrency: 2,
            compile_timeout: Duration::from_secs(120),
        }
    }
}

/// Loads slices. Cloning gives another handle to the same engine.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    /// The log of calls that have none (describe, read models): empty, made once.
    detached: (crate::store::SharedStore, crate::store::Tenant),
    engine: Engine,
    linker: Linker<InvocationState>,
    limits: InvocationLimits,
    max_instances: u32,
    /// One permit per instance slot: a call takes one before it instantiates, and gives it back
    /// once its instance is gone, so that calls past the pool's size wait instead of failing.
    slots: Arc<tokio::sync::Semaphore>,
    slot_wait: Duration,
    /// Calls waiting for a slot now.
    slot_waiters: Arc<std::sync::atomic::AtomicI64>,
    cache: Option<CompileCache>,
    /// The client outbound HTTP effects share.
    http: effects::HttpClient,
    /// Instances that may wait on the host inside a call at once (a turn on a hot boundary).
    waits: WaitSlots,
    /// Compiled components by hash; a contract-checked component is never compiled twice.
    components: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    /// Turns to compile: compiling takes a core and much memory, so few run at once.
    compiling: Arc<tokio::sync::Semaphore>,
    compile_timeout: Duration,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let limits = config.limits.clone();
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component has a handful of core instances and tables, and one memory.
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            .max_unused_warm_slots(64)
            // Reset a used slot by rewriting only its dirty pages (PAGEMAP_SCAN, Linux 6.7+) and
            // keep them mapped: no page faults on reuse, no TLB-shootdown storm from madvise.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .decommit_batch_size(32);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| anyhow::anyhow!("configuring the wasm engine: {e}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        bindings::SliceWorld::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| anyhow::anyhow!("linking the store import: {e}"))?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::new(dir, &engine).map_err(|e| anyhow::anyhow!("compile cache {}: {e}", dir.display()))?),
            None => None,
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), stop_ticker.clone());
        std::thread::Builder::new().name("counterpoint-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner { detached: (Arc::new(crate::store::MemoryStore::new()), crate::store::Tenant::new("detached").expect("a valid name")), engine, linker, limits, max_instances: n, slots: Arc::new(tokio::sync::Semaphore::new(n as usize)), slot_wait: config.slot_wait, slot_waiters: Default::default(), cache, http: effects::http_client(None).map_err(|e| anyhow::anyhow!("the outbound HTTP client: {e}"))?, waits: WaitSlots::new(n as usize / 4), components: Default::default(), compiling: Arc::new(tokio::sync::Semaphore::new(config.compile_concurrency.max(1))), compile_timeout: config.compile_timeout, stop_ticker }),
        })
    }

    /// Checks, compiles (or takes from the cache) and prepares a component, and asks it to
    /// describe itself. Compilation runs off the async threads, a few at a time.
    pub async fn load(&self, wasm: Vec<u8>) -> Result<Slice, LoadError> {
        self.load_with_limits(wasm, self.inner.limits.clone()).await
    }

    /// [`load`](Self::load) with the limits for this slice's invocations (a tenant's, say;
    /// memory can only be lowered below the runtime's).
    pub async fn load_with_limits(&self, wasm: Vec<u8>, mut limits: InvocationLimits) -> Result<Slice, LoadError> {
        limits.memory_bytes = limits.memory_bytes.min(self.inner.limits.memory_bytes);
        let hash = hash_of(&wasm);
        let size = wasm.len();
        // The same component deployed for many tenants shares one compilation.
        let known = self.inner.components.lock().expect("components lock").get(&hash).cloned();
        let component = match known {
            Some(component) => component,
            None => {
                // What can be refused from the bytes is refused before anything is compiled.
                contract::precheck(&wasm)?;
                let component = self.compile(hash.clone(), wasm).await?;
                self.inner.components.lock().expect("components lock").insert(hash.clone(), component.clone());
                component
            }
        };

        contract::check(&self.inner.engine, &component)?;
        let imports_effects = component
            .component_type()
            .imports(&self.inner.engine)
            .any(|(name, _)| name.starts_with(&format!("{CONTRACT_PACKAGE}/effects@")));
        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let exports = guest::GuestIndices::new(&pre).map_err(|e| LoadError::NotASlice(format!("{e:#}")))?;
        // Found by `GuestIndices::new` already; kept apart to call `execute` without the rest.
        let slice_export = component.get_export_index(None, format!("{CONTRACT_PACKAGE}/slice@{CONTRACT_VERSION}"));
        let execute = component
            .get_export_index(slice_export.as_ref(), "execute")
            .ok_or_else(|| LoadError::NotASlice("no `execute` in the slice interface".into()))?;
        // Read models are optional: components built before the interface existed have none.
        let read_models_export = format!("{CONTRACT_PACKAGE}/read-models@{CONTRACT_VERSION}");
        let read_models = match component.get_export_index(None, &read_models_export) {
            Some(_) => Some(read_models_guest::GuestIndices::new(&pre).map_err(|e| LoadError::NotASlice(format!("{e:#}")))?),
            None => None,
        };
        Slice::new(self.inner.clone(), limits, imports_effects, Exports { pre, slice: exports, execute, read_models }, hash, size).await
    }

    /// Compiles a component in its turn (or takes it from the cache). Past the timeout the caller
    /// is answered; a compilation already running cannot be stopped, so it keeps its turn until
    /// it ends and the pool stays bounded.
    async fn compile(&self, hash: String, wasm: Vec<u8>) -> Result<Component, LoadError> {
        let inner = self.inner.clone();
        let timeout = inner.compile_timeout;
        let compiled = async move {
            let turn = inner.compiling.clone().acquire_owned().await.map_err(|e| LoadError::Io(e.to_string()))?;
            tokio::task::spawn_blocking(move || -> Result<Component, LoadError> {
                let _turn = turn;
                if let Some(component) = inner.cache.as_ref().and_then(|c| c.get(&inner.engine, &hash)) {
                    return Ok(component);
                }
                let component = Component::new(&inner.engine, &wasm).map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
                if let Some(cache) = &inner.cache {
                    cache.put(&hash, &component);
                }
                Ok(component)
            })
            .await
            .map_err(|e| LoadError::Io(format!("the compile task failed: {e}")))?
        };
        match tokio::time::timeout(timeout, compiled).await {
            Ok(compiled) => compiled,
            Err(_) => Err(LoadError::CompileTimeout { ms: timeout.as_millis() }),
        }
    }

    /// Forgets the compiled code of a component no deployed slice uses any more, in memory and in
    /// the cache. Slices still running on it keep it until they are dropped.
    pub fn forget(&self, hash: &str) {
        self.inner.components.lock().expect("components lock").remove(hash);
        if let Some(cache) = &self.inner.cache {
            cache.remove(hash);
        }
    }

    /// Reads and loads a component file.
    pub async fn load_file(&self, path: &std::path::Path) -> Result<Slice, LoadError> {
        let wasm = tokio::fs::read(path).await.map_err(|e| LoadError::Io(format!("reading {}: {e}", path.display())))?;
        self.load(wasm).await
    }

    pub fn limits(&self) -> &InvocationLimits {
        &self.inner.limits
    }

    /// Calls waiting for an instance slot now (every slot in use).
    pub fn slot_waiters(&self) -> i64 {
        self.inner.slot_waiters.load(Ordering::Relaxed)
    }

    /// Instance slots in use now, across all slices.
    pub fn live_instances(&self) -> i64 {
        (self.inner.max_instances as usize - self.inner.slots.available_permits()) as i64
    }
}

/// A component prepared for instantiation, and where its exports are.
pub(crate) struct Exports {
    pre: wasmtime::component::InstancePre<InvocationState>,
    slice: guest::GuestIndices,
    /// The slice interface's `execute`, which most invocations call and look up alone.
    execute: wasmtime::component::ComponentExportIndex,
    read_models: Option<read_models_guest::GuestIndices>,
}

/// The hash a slice is known by: SHA-256 of the component's bytes, hex.
pub fn hash_of(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
