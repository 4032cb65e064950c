//! Tenants: who may call the server, and how much each may use.
//!
//! The server's configuration is a TOML file (plus environment overrides). Tokens are stored
//! hashed (SHA-256, hex): the file never holds a usable secret. `counterpoint hash-token`
//! prints the hash of a token.
//!
//! ```toml
//! listen = "127.0.0.1:7070"
//! data_dir = ".counterpoint"
//! admin_token_sha256 = "…"          # may manage every tenant's slices
//! metrics_token_sha256 = "…"        # may read /metrics (so may the admin token)
//!
//! [telemetry]                       # traces over OTLP/HTTP; none without an endpoint
//! otlp_endpoint = "http://localhost:4318"
//!
//! [defaults]                        # every tenant's limits unless it says otherwise
//! requests_per_second = 1000
//!
//! [tenants.acme]
//! tokens_sha256 = ["…"]
//! [tenants.acme.limits]
//! concurrent_invocations = 32
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

use crate::runtime::Grants;
use crate::store::Tenant;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The server's configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// SHA-256 (hex) of the admin token. `COUNTERPOINT_ADMIN_TOKEN` adds a plain one.
    #[serde(default)]
    pub admin_token_sha256: Option<String>,
    /// SHA-256 (hex) of the token that reads `/metrics` (so does the admin token; a tenant's
    /// does not: the metrics name every tenant and slice). `COUNTERPOINT_METRICS_TOKEN` adds a
    /// plain one.
    #[serde(default)]
    pub metrics_token_sha256: Option<String>,
    /// Serves `/metrics` without a token: only where no one but the scraper reaches the listen
    /// address.
    #[serde(default)]
    pub metrics_public: bool,
    /// How long an `Idempotency-Key` keeps returning the first result, in seconds.
    #[serde(default = "default_idempotency_retention")]
    pub idempotency_retention_s: u64,
    /// Slice instances alive at once on this host, across tenants and slices (commands,
    /// projections, automations, read models): the pooling allocator's slots, reserved (as
    /// address space) at start. Past it, an invocation waits for a slot (in arrival order) for
    /// `instance_slot_wait_ms` (0: not at all), then gets `slice_busy`.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    #[serde(default = "default_instance_slot_wait_ms")]
    pub instance_slot_wait_ms: u64,
    /// Uploaded components compiled at once on this host (more wait their turn), and how long
    /// an upload may wait and compile before it is refused with `compile_timeout`.
    #[serde(default = "default_compile_concurrency")]
    pub compile_concurrency: usize,
    #[serde(default = "default_compile_timeout_ms")]
    pub compile_timeout_ms: u64,
    #[serde(default)]
    pub defaults: LimitOverrides,
    #[serde(default)]
    pub tenants: HashMap<String, TenantConfig>,
    /// Where the logs, read models, deployed slices and leases live.
    #[serde(default)]
    pub store: StoreConfig,
    /// Traces over OTLP (off without an endpoint).
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
}

/// `[store]`: the embedded default (the data directory), or a FoundationDB cluster that several
/// hosts share.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` or `fdb` (a build with the cargo feature `fdb`).
    #[serde(default = "default_store_kind")]
    pub kind: String,
    /// The cluster file; none: FoundationDB's default (`FDB_CLUSTER_FILE`, then
    /// `/etc/foundationdb/fdb.cluster`).
    pub cluster_file: Option<PathBuf>,
    /// Separates deployments that share a cluster; every host of one deployment uses the same.
    #[serde(default = "default_store_prefix")]
    pub prefix: String,
    /// How long a host that stops renewing keeps its workers' leases, in milliseconds.
    #[serde(default = "default_lease_ttl_ms")]
    pub lease_ttl_ms: u64,
    /// The embedded store's group commit window, in microseconds
    /// ([`EmbeddedOptions::group_commit_window`](crate::store::EmbeddedOptions)).
    #[serde(default = "default_group_commit_window_us")]
    pub group_commit_window_us: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: default_store_kind(),
            cluster_file: None,
            prefix: default_store_prefix(),
            lease_ttl_ms: default_lease_ttl_ms(),
            group_commit_window_us: default_group_commit_window_us(),
        }
    }
}

impl StoreConfig {
    /// The embedded store's options this section sets.
    pub fn embedded_options(&self) -> crate::store::EmbeddedOptions {
        crate::store::EmbeddedOptions { group_commit_window: std::time::Duration::from_micros(self.group_commit_window_us), ..Default::default() }
    }
}

fn default_store_kind() -> String {
    "embedded".into()
}
fn default_store_prefix() -> String {
    "default".into()
}
fn default_lease_ttl_ms() -> u64 {
    10_000
}
fn default_group_commit_window_us() -> u64 {
    crate::store::DEFAULT_GROUP_COMMIT_WINDOW.as_micros() as u64
}

fn default_listen() -> String {
    "127.0.0.1:7070".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".counterpoint")
}
fn default_idempotency_retention() -> u64 {
    24 * 3600
}
fn default_max_instances() -> u32 {
    crate::runtime::RuntimeConfig::default().max_instances
}
fn default_instance_slot_wait_ms() -> u64 {
    crate::runtime::RuntimeConfig::default().slot_wait.as_millis() as u64
}
fn default_compile_concurrency() -> usize {
    crate::runtime::RuntimeConfig::default().compile_concurrency
}
fn default_compile_timeout_ms() -> u64 {
    crate::runtime::RuntimeConfig::default().compile_timeout.as_millis() as u64
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub tokens_sha256: Vec<String>,
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Effects granted per slice name: `[tenants.acme.effects.orders]`.
    #[serde(default)]
    pub effects: HashMap<String, Grants>,
}

/// Limits as written in the file: any may be left out.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub requests_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub concurrent_invocations: Option<u32>,
    pub memory_bytes: Option<usize>,
    pub max_log_events: Option<u64>,
    pub max_slices: Option<usize>,
    pub deadline_ms: Option<u64>,
    pub command_deadline_ms: Option<u64>,
    pub max_component_bytes: Option<usize>,
    pub uploads_per_minute: Option<u32>,
    pub max_streams: Option<u32>,
}

impl LimitOverrides {
    pub fn validate(&self) -> Result<(), String> {
        if self.deadline_ms.is_some_and(|ms| !(1..=3_600_000).contains(&ms)) {
            return Err("deadline_ms: between 1 and 3600000".into());
        }
        if self.command_deadline_ms.is_some_and(|ms| !(1..=3_600_000).contains(&ms)) {
            return Err("command_deadline_ms: between 1 and 3600000".into());
        }
        if self.max_component_bytes.is_some_and(|b| !(1..=64 << 20).contains(&b)) {
            return Err("max_component_bytes: between 1 and 67108864 (64 MiB)".into());
        }
        Ok(())
    }
}

/// What one tenant may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantLimits {
    /// Requests per second, sustained, and the burst above it.
    pub requests_per_second: u32,
    pub burst: u32,
    /// Commands and projections running at once; more wait, then get `rate_limited`.
    pub concurrent_invocations: u32,
    /// Linear memory per slice instance.
    pub memory_bytes: usize,
    /// Events the tenant's log may hold; appends past it are refused.
    pub max_log_events: u64,
    pub max_slices: usize,
    /// Wall time of each call into a slice, in milliseconds; past it, `slice_timeout`.
    pub deadline_ms: u64,
    /// How long a command may go on re-running after failed append conditions (a hot
    /// boundary) before it ends in `conflict`, in milliseconds.
    pub command_deadline_ms: u64,
    /// Bytes of one uploaded component; past it, `payload_too_large` (before it is read whole).
    pub max_component_bytes: usize,
    /// Component uploads per minute with the tenant's token (the admin's are not counted),
    /// accepted or not; past it, `upload_rate_limited`.
    pub uploads_per_minute: u32,
    /// Live event streams (SSE) open at once; past it, `too_many_streams`.
    pub max_streams: u32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            requests_per_second: 10_000,
            burst: 20_000,
            concurrent_invocations: 256,
            memory_bytes: 64 << 20,
            max_log_events: 1 << 40,
            max_slices: 100,
            deadline_ms: 1_000,
            command_deadline_ms: 10_000,
            // A componentize-py slice (CPython inside) is about 18 MiB.
            max_component_bytes: 32 << 20,
            uploads_per_minute: 30,
            max_streams: 64,
        }
    }
}

impl TenantLimits {
    fn with(&self, o: &LimitOverrides) -> Self {
        TenantLimits {
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            burst: o.burst.unwrap_or(self.burst),
            concurrent_invocations: o.concurrent_invocations.unwrap_or(self.concurrent_invocations),
            memory_bytes: o.memory_bytes.unwrap_or(self.memory_bytes),
            max_log_events: o.max_log_events.unwrap_or(self.max_log_events),
            max_slices: o.max_slices.unwrap_or(self.max_slices),
            deadline_ms: o.deadline_ms.unwrap_or(self.deadline_ms),
            command_deadline_ms: o.command_deadline_ms.unwrap_or(self.command_deadline_ms),
            max_component_bytes: o.max_component_bytes.unwrap_or(self.max_component_bytes),
            uploads_per_minute: o.uploads_per_minute.unwrap_or(self.uploads_per_minute),
            max_streams: o.max_streams.unwrap_or(self.max_streams),
        }
    }
}

/// What a token holds open (a live stream) keeps one of these, to end when access goes.
pub struct AccessWatch {
    tenants: Arc<Tenants>,
    changes: watch::Receiver<u64>,
    token_sha256: String,
    tenant: Tenant,
    state: Arc<TenantState>,
}

impl AccessWatch {
    /// Resolves once the token no longer gives access to the tenant: revoked or replaced, or
    /// the tenant removed. Cancel-safe: it checks again each time it is polled anew.
    pub async fn lost(&mut self) {
        loop {
            // Marked seen before the check, so a change during it wakes the wait below.
            self.changes.borrow_and_update();
            if !self.tenants.grants(&self.token_sha256, &self.tenant, &self.state) {
                return;
            }
            if self.changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A new random token (64 hex digits).
fn new_token() -> Result<String, TenantError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| TenantError::Io(format!("no randomness for a token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The SHA-256 of a token, hex: what configuration files hold.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Config {
    /// Reads the file (if any), then applies `COUNTERPOINT_LISTEN`, `COUNTERPOINT_DATA`,
    /// `COUNTERPOINT_ADMIN_TOKEN` and `COUNTERPOINT_METRICS_TOKEN`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.into(), message })?
            }
            None => Self::parse("").expect("the empty configuration is valid"),
        };
        if let Ok(listen) = std::env::var("COUNTERPOINT_LISTEN") {
            config.listen = listen;
        }
        if let Ok(dir) = std::env::var("COUNTERPOINT_DATA") {
            config.data_dir = dir.into();
        }
        if let Ok(token) = std::env::var("COUNTERPOINT_ADMIN_TOKEN") {
            config.admin_token_sha256 = Some(hash_token(&token));
        }
        if let Ok(token) = std::env::var("COUNTERPOINT_METRICS_TOKEN") {
            config.metrics_token_sha256 = Some(hash_token(&token));
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, tenant) in &config.tenants {
            Tenant::new(name.clone()).map_err(|e| format!("tenants.{name}: {e}"))?;
            for hash in &tenant.tokens_sha256 {
                check_hash(hash).map_err(|e| format!("tenants.{name}.tokens_sha256: {e}"))?;
            }
            for (slice, grants) in &tenant.effects {
                grants.validate().map_err(|e| format!("tenants.{name}.effects.{slice}: {e}"))?;
            }
        }
        check_nested_dirs(&config)?;
        let limits = std::iter::once(("defaults".to_string(), &config.defaults))
            .chain(config.tenants.iter().map(|(name, t)| (format!("tenants.{name}.limits"), &t.limits)));
        for (section, limits) in limits {
            limits.validate().map_err(|e| format!("{section}.{e}"))?;
        }
        if let Some(hash) = &config.admin_token_sha256 {
            check_hash(hash).map_err(|e| format!("admin_token_sha256: {e}"))?;
        }
        if let Some(hash) = &config.metrics_token_sha256 {
            check_hash(hash).map_err(|e| format!("metrics_token_sha256: {e}"))?;
        }
        config.telemetry.validate().map_err(|e| format!("telemetry.{e}"))?;
        match config.store.kind.as_str() {
            "embedded" | "fdb" => {}
            other => return Err(format!("store.kind: {other:?} is not a store; use \"embedded\" or \"fdb\"")),
        }
        if !(1..=100_000).contains(&config.max_instances) {
            return Err(format!("max_instances: {} is not between 1 and 100000", config.max_instances));
        }
        if config.instance_slot_wait_ms > 60_000 {
            return Err(format!("instance_slot_wait_ms: {} is more than 60000", config.instance_slot_wait_ms));
        }
        if !(1..=64).contains(&config.compile_concurrency) || config.compile_timeout_ms == 0 {
            return Err("compile_concurrency must be between 1 and 64, compile_timeout_ms more than 0".into());
        }
        if config.store.prefix.is_empty() || config.store.lease_ttl_ms < 100 {
            return Err("store: the prefix must not be empty and lease_ttl_ms must be at least 100".into());
        }
        let longest = crate::store::MAX_GROUP_COMMIT_WINDOW.as_micros();
        if u128::from(config.store.group_commit_window_us) > longest {
            return Err(format!("store.group_commit_window_us: {} is more than {longest}", config.store.group_commit_window_us));
        }
        Ok(config)
    }
}

/// No granted directory may lie inside a writable one (of any slice of any tenant): the slice
/// that may write there could replace it with a link to anywhere.
fn check_nested_dirs(config: &Config) -> Result<(), String> {
    let granted: Vec<(String, &crate::runtime::DirGrant)> = config
        .tenants
        .iter()
        .flat_map(|(tenant, t)| t.effects.iter().flat_map(move |(slice, g)| g.dirs.iter().map(move |d| (format!("tenants.{tenant}.effects.{slice}"), d))))
        .collect();
    for (writer, writable) in granted.iter().filter(|(_, d)| d.writable) {
        if let Some((inner, dir)) = granted.iter().find(|(_, d)| d.host != writable.host && d.host.starts_with(&writable.host)) {
            return Err(format!(
                "{inner}.dirs: {} lies inside {}, which {writer} may write: grant directories side by side",
                dir.host.display(),
                writable.host.display()
            ));
        }
    }
    Ok(())
}

fn check_hash(hash: &str) -> Result<(), String> {
    if hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{hash:?} is not a SHA-256 in hex (use `counterpoint hash-token TOKEN`)"))
    }
}

/// Who a token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(Tenant),
}

/// The tenants at run time: token lookup, limits, rate limiters, invocation slots. Tenants come
/// from the configuration file, and from the admin API (kept in `<data dir>/tenants/created.toml`,
/// in the configuration file's format, tokens hashed).
pub struct Tenants {
    inner: RwLock<TenantTable>,
    defaults: TenantLimits,
    /// Where tenants created at run time are kept; `None`: they are not kept.
    created_file: Option<PathBuf>,
    /// Counts changes of who may access what (a tenant removed, its tokens replaced), so what a
    /// token holds open can check whether it still may.
    access: watch::Sender<u64>,
}

#[derive(Default)]
struct TenantTable {
    by_token: HashMap<String, Principal>,
    tenants: HashMap<Tenant, Arc<TenantState>>,
    /// Tenants created through the admin API, as they are written back to `created_file`.
    created: BTreeMap<String, TenantConfig>,
}

/// Why the admin API could not create or remove a tenant.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} exists already")]
    Exists(Tenant),
    #[error("no tenant named {0}")]
    Unknown(Tenant),
    #[error("tenant {0} is defined in the configuration file; remove it there")]
    Configured(Tenant),
    #[error("keeping the tenants failed: {0}")]
    Io(String),
}

pub struct TenantState {
    pub limits: TenantLimits,
    /// Effects granted per slice name.
    pub effects: HashMap<String, Grants>,
    bucket: Mutex<(f64, Instant)>,
    pub invocations: Arc<Semaphore>,
    /// One permit per live stream open.
    pub streams: Arc<Semaphore>,
}

impl TenantState {
    fn new(limits: TenantLimits, effects: HashMap<String, Grants>) -> Self {
        TenantState {
            effects,
            bucket: Mutex::new((limits.burst as f64, Instant::now())),
            invocations: Arc::new(Semaphore::new(limits.concurrent_invocations as usize)),
            streams: Arc::new(Semaphore::new(limits.max_streams as usize)),
            limits,
        }
    }

    /// Takes one request from the tenant's token bucket; `false` when it is empty.
    pub fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock().expect("bucket lock");
        let (tokens, last) = &mut *bucket;
        let now = Instant::now();
        let rate = self.limits.requests_per_second as f64;
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(self.limits.burst.max(1) as f64);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl TenantTable {
    fn add(&mut self, tenant: Tenant, config: &TenantConfig, defaults: &TenantLimits) {
        for hash in &config.tokens_sha256 {
            self.by_token.insert(hash.to_ascii_lowercase(), Principal::Tenant(tenant.clone()));
        }
        self.tenants.insert(tenant, Arc::new(TenantState::new(defaults.with(&config.limits), config.effects.clone())));
    }
}

impl Tenants {
    pub fn from_config(config: &Config) -> Tenants {
        let defaults = TenantLimits::default().with(&config.defaults);
        let mut table = TenantTable::default();
        if let Some(hash) = &config.admin_token_sha256 {
            table.by_token.insert(hash.to_ascii_lowercase(), Principal::Admin);
        }
        for (name, tenant_config) in &config.tenants {
            table.add(Tenant::new(name.clone()).expect("validated when parsed"), tenant_config, &defaults);
        }
        Tenants { inner: RwLock::new(table), defaults, created_file: None, access: watch::Sender::new(0) }
    }

    /// Adds the tenants created through the admin API, kept under `data_dir`, and keeps the
    /// ones created from now on there too.
    pub fn with_created(mut self, data_dir: &Path) -> Result<Tenants, ConfigError> {
        let path = data_dir.join("tenants").join("created.toml");
        crate::durable::remove_leftover_temp_files(&data_dir.join("tenants"));
        if path.exists() {
            let created = read_created(&path)?;
            let table = self.inner.get_mut().expect("tenants lock");
            for (name, config) in created.tenants {
                let tenant = Tenant::new(name.clone()).expect("validated when parsed");
                if !table.tenants.contains_key(&tenant) {
                    table.add(tenant, &config, &self.defaults);
                    table.created.insert(name, config);
                }
            }
        }
        self.created_file = Some(path);
        Ok(self)
    }

    /// Just `tenant`, with default limits and no tokens: the command line's view.
    pub fn single(tenant: &Tenant) -> Tenants {
        let mut config = Config::parse("").expect("the empty configuration is valid");
        config.tenants.insert(tenant.to_string(), TenantConfig::default());
        Tenants::from_config(&config)
    }

    /// Who holds `token`, if anyone.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        self.inner.read().expect("tenants lock").by_token.get(&hash_token(token)).cloned()
    }

    pub fn get(&self, tenant: &Tenant) -> Option<Arc<TenantState>> {
        self.inner.read().expect("tenants lock").tenants.get(tenant).cloned()
    }

    pub fn names(&self) -> Vec<Tenant> {
        let mut names: Vec<Tenant> = self.inner.read().expect("tenants lock").tenants.keys().cloned().collect();
        names.sort();
        names
    }

    /// Creates a tenant with `limits` and returns its first token (only its hash is kept).
    pub fn create(&self, tenant: &Tenant, limits: LimitOverrides) -> Result<String, TenantError> {
        let token = new_token()?;
        let config = TenantConfig { tokens_sha256: vec![hash_token(&token)], limits, effects: HashMap::new() };
        let mut table = self.inner.write().expect("tenants lock");
        if table.tenants.contains_key(tenant) {
            return Err(TenantError::Exists(tenant.clone()));
        }
        let mut created = table.created.clone();
        created.insert(tenant.to_string(), config.clone());
        self.keep(&created)?;
        table.add(tenant.clone(), &config, &self.defaults);
        table.created = created;
        Ok(token)
    }

    /// Removes a tenant created through the admin API: its tokens stop working at once. Its log
    /// and slices stay in the data directory.
    pub fn remove(&self, tenant: &Tenant) -> Result<(), TenantError> {
        let mut table = self.inner.write().expect("tenants lock");
        if !table.tenants.contains_key(tenant) {
            return Err(TenantError::Unknown(tenant.clone()));
        }
        let mut created = table.created.clone();
        if created.remove(tenant.as_str()).is_none() {
            return Err(TenantError::Configured(tenant.clone()));
        }
        self.keep(&created)?;
        table.tenants.remove(tenant);
        table.by_token.retain(|_, principal| *principal != Principal::Tenant(tenant.clone()));
        table.created = created;
        drop(table);
        self.access.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Replaces every token of a tenant created through the admin API with a new one, returned
    /// once: the old ones stop working at once, and the streams they opened end.
    pub fn replace_tokens(&self, tenant: &Tenant) -> Result<String, TenantError> {
        let token = new_token()?;
        let mut table = self.inner.write().expect("tenants lock");
        if !table.tenants.contains_key(tenant) {
            return Err(TenantError::Unknown(tenant.clone()));
        }
        let mut created = table.created.clone();
        let config = created.get_mut(tenant.as_str()).ok_or_else(|| TenantError::Configured(tenant.clone()))?;
        config.tokens_sha256 = vec![hash_token(&token)];
        self.keep(&created)?;
        table.by_token.retain(|_, principal| *principal != Principal::Tenant(tenant.clone()));
        table.by_token.insert(hash_token(&token), Principal::Tenant(tenant.clone()));
        table.created = created;
        drop(table);
        self.access.send_modify(|n| *n += 1);
        Ok(token)
    }

    /// Watches whether `token` still gives access to `tenant`, whose state `state` is (so a
    /// tenant removed and created again under the same name counts as gone).
    pub fn watch_access(self: &Arc<Self>, token: &str, tenant: &Tenant, state: Arc<TenantState>) -> AccessWatch {
        AccessWatch {
            changes: self.access.subscribe(),
            tenants: self.clone(),
            token_sha256: hash_token(token),
            tenant: tenant.clone(),
            state,
        }
    }

    fn grants(&self, token_sha256: &str, tenant: &Tenant, state: &Arc<TenantState>) -> bool {
        let table = self.inner.read().expect("tenants lock");
        let holder = match table.by_token.get(token_sha256) {
            Some(Principal::Admin) => true,
            Some(Principal::Tenant(own)) => own == tenant,
            None => false,
        };
        holder && table.tenants.get(tenant).is_some_and(|current| Arc::ptr_eq(current, state))
    }

    fn keep(&self, created: &BTreeMap<String, TenantConfig>) -> Result<(), TenantError> {
        let Some(path) = &self.created_file else { return Ok(()) };
        let mut text = String::from("# Tenants created through the admin API; tokens are SHA-256 hashes.\n");
        for (name, config) in created {
            let hashes: Vec<String> = config.tokens_sha256.iter().map(|h| format!("\"{h}\"")).collect();
            text.push_str(&format!("\n[tenants.{name}]\ntokens_sha256 = [{}]\n", hashes.join(", ")));
            let limits = toml::to_string(&config.limits).map_err(|e| TenantError::Io(e.to_string()))?;
            if !limits.trim().is_empty() {
                text.push_str(&format!("[tenants.{name}.limits]\n{limits}"));
            }
        }
        text.push_str(&format!("{CHECKSUM_LINE}{}\n", hash_token(&text)));
        crate::durable::write(path, text.as_bytes()).map_err(|e| TenantError::Io(format!("writing {}: {e}", path.display())))
    }
}

/// The last line of `created.toml`: the SHA-256 of everything before it. TOML has no checksum of
/// its own, and a flipped bit could rename a tenant or change a limit and still parse.
const CHECKSUM_LINE: &str = "# sha256 ";

/// Reads `created.toml`, refusing it if its checksum line does not match (a file without one,
/// edited by hand, is read as it is).
fn read_created(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let damaged = |message: String| ConfigError::Invalid {
        path: path.into(),
        message: format!(
            "the tenants created through the admin API are damaged ({message}); restore the file from a backup, or repair it by hand and delete its last line (`{}…`)",
            CHECKSUM_LINE.trim_end()
        ),
    };
    let body = match text.trim_end_matches('\n').rsplit_once('\n') {
        Some((body, last)) if last.starts_with(CHECKSUM_LINE) => {
            let body = format!("{body}\n");
            if last[CHECKSUM_LINE.len()..] != hash_token(&body) {
                return Err(damaged("its checksum does not match".into()));
            }
            body
        }
        _ => text,
    };
    Config::parse(&body).map_err(damaged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_and_limits_merged() {
        let token_hash = hash_token("s3cret");
        let text = format!(
            "[defaults]\nrequests_per_second = 5\n[tenants.acme]\ntokens_sha256 = [\"{token_hash}\"]\n[tenants.acme.limits]\nburst = 7\n"
        );
        let config = Config::parse(&text).unwrap();
        let tenants = Tenants::from_config(&config);
        let acme = Tenant::new("acme").unwrap();
        assert_eq!(tenants.authenticate("s3cret"), Some(Principal::Tenant(acme.clone())));
        assert_eq!(tenants.authenticate("wrong"), None);
        let limits = &tenants.get(&acme).unwrap().limits;
        assert_eq!((limits.requests_per_second, limits.burst), (5, 7));
        assert!(Config::parse("[tenants.acme]\ntokens_sha256 = [\"plain-token\"]").unwrap_err().contains("hash-token"));
        assert!(Config::parse("[tenants.\"Bad Name\"]").is_err());
        assert!(Config::parse("unknown_key = 1").is_err());
    }

    /// What a token holds open ends when the token is replaced or its tenant removed, and not
    /// when another tenant changes.
    #[tokio::test]
    async fn access_is_lost_when_the_token_is_replaced_or_the_tenant_removed() {
        let tenants = Arc::new(Tenants::single(&Tenant::new("acme").unwrap()));
        let (initech, globex) = (Tenant::new("initech").unwrap(), Tenant::new("globex").unwrap());
        let first = tenants.create(&initech, LimitOverrides::default()).unwrap();
        tenants.create(&globex, LimitOverrides::default()).unwrap();
        let watch = |token: &str, tenant: &Tenant| tenants.watch_access(token, tenant, tenants.get(tenant).unwrap());
        let lost = |mut w: AccessWatch| tokio::spawn(async move { w.lost().await });
        let replaced = lost(watch(&first, &initech));
        let unaffected = lost(watch(&first, &initech));
        tenants.replace_tokens(&globex).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!replaced.is_finished(), "another tenant's change leaves the stream open");
        let second = tenants.replace_tokens(&initech).unwrap();
        replaced.await.unwrap();
        unaffected.await.unwrap();
        assert_eq!(tenants.authenticate(&first), None);

        let removed = lost(watch(&second, &initech));
        tenants.remove(&initech).unwrap();
        removed.await.unwrap();
        // Created again under the same name: the old state's watchers still count it as gone.
        let third = tenants.create(&initech, LimitOverrides::default()).unwrap();
        let mut stale = tenants.watch_access(&third, &initech, Arc::new(TenantState::new(TenantLimits::default(), HashMap::new())));
        tokio::time::timeout(std::time::Duration::from_secs(5), stale.lost()).await.unwrap();
        assert!(matches!(tenants.replace_tokens(&Tenant::new("acme").unwrap()), Err(TenantError::Configured(_))));
    }

    #[test]
    fn the_bucket_refuses_past_the_burst() {
        let state = TenantState::new(TenantLimits { requests_per_second: 1, burst: 3, ..Default::default() }, HashMap::new());
        assert!((0..3).all(|_| state.admit()));
        assert!(!state.admit());
    }
}
