//! The FoundationDB backend (cargo feature `fdb`): every host on a cluster shares the logs.
//!
//! Events are keyed by versionstamp, so positions come from FDB's commit order and no host
//! has to hand them out; append conditions are checked inside the append transaction by
//! non-snapshot reads of the indexes, so FDB's optimistic concurrency control fails a racing
//! append that would break a condition. `docs/fdb.md` explains the layout and the argument.
//!
//! - [`keys`]: the key layout and versionstamp ↔ position;
//! - [`index`]: which index serves a query item, and the append condition probe;
//! - [`append`]: limits, the condition probe, the versionstamped writes;
//! - [`read`]: reads streamed in batches, one short transaction per batch;
//! - [`tail`]: the per-tenant watch of the head key that drives subscriptions.

mod append;
mod index;
mod keys;
mod read;
mod tail;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use foundationdb::options::DatabaseOption;
use foundationdb::tuple::Subspace;
use foundationdb::{Database, FdbBindingError, FdbError, RangeOption, Transaction};
use tokio::sync::watch;

pub(crate) use self::keys::strinc;
use self::keys::TenantKeys;
use super::{
    AppendCondition, Event, EventStore, Limits, Position, Query, ReadOptions, ReadStream, StoreError, Subscription,
    Tenant,
};

/// How to reach the cluster and where in it this deployment's data lives.
#[derive(Clone, Debug)]
pub struct FdbOptions {
    /// The cluster file; `None`: FDB's default (`FDB_CLUSTER_FILE`, then
    /// `/etc/foundationdb/fdb.cluster`).
    pub cluster_file: Option<PathBuf>,
    /// Separates deployments sharing one cluster: every key is under `("counterpoint", prefix)`.
    pub prefix: String,
    pub limits: Limits,
    /// Index entries the append transaction examines per condition range; a condition that
    /// needs more is examined further in read-only transactions first (see `docs/fdb.md`,
    /// "The condition probe"). The answer is the same either way.
    pub probe_cap: usize,
    /// Milliseconds before an FDB transaction gives up (so an unreachable cluster is an error,
    /// not a hang).
    pub transaction_timeout_ms: i32,
}

impl FdbOptions {
    pub fn new(prefix: impl Into<String>) -> Self {
        FdbOptions {
            cluster_file: None,
            prefix: prefix.into(),
            limits: default_limits(),
            probe_cap: 10_000,
            transaction_timeout_ms: 10_000,
        }
    }
}

/// The shared limits, with an append's data capped below FDB's 10 MB transaction limit (keys,
/// index entries and conflict ranges count too: an append is also refused when its whole
/// transaction is estimated over 9,000,000 bytes).
pub fn default_limits() -> Limits {
    Limits { max_append_bytes: 8 << 20, ..Limits::default() }
}

/// An event store on a FoundationDB cluster. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct FdbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    prefix: String,
    limits: Limits,
    probe_cap: usize,
    /// Per tenant, the head as last seen by the watch task (for subscriptions).
    heads: Mutex<HashMap<Tenant, watch::Sender<Position>>>,
}

/// FDB's client network: started once per process, never stopped (it cannot be restarted).
fn network() -> Result<(), StoreError> {
    static NETWORK: OnceLock<Result<(), String>> = OnceLock::new();
    NETWORK
        .get_or_init(|| {
            let builder = foundationdb::api::FdbApiBuilder::default()
                .build()
                .map_err(|e| format!("cannot select the FoundationDB API version: {}", fdb_error(e)))?;
            // SAFETY: called at most once per process (this OnceLock), as `boot` requires.
            let network = unsafe { builder.boot() }
                .map_err(|e| format!("cannot start the FoundationDB network: {}", fdb_error(e)))?;
            // The network thread runs for the life of the process: stopping it is final.
            std::mem::forget(network);
            Ok(())
        })
        .clone()
        .map_err(StoreError::Unavailable)
}

impl FdbStore {
    /// Connects to the cluster. Fails if the client library cannot start; an unreachable
    /// cluster shows up as `Unavailable` on the first request, after the transaction timeout.
    pub fn open(options: FdbOptions) -> Result<Self, StoreError> {
        if options.prefix.is_empty() {
            return Err(StoreError::InvalidInput("the FoundationDB key prefix must not be empty".into()));
        }
        network()?;
        let path = match &options.cluster_file {
            Some(path) => Some(
                path.to_str()
                    .ok_or_else(|| StoreError::InvalidInput(format!("cluster file {} is not UTF-8", path.display())))?
                    .to_string(),
            ),
            None => None,
        };
        let db = Database::new(path.as_deref()).map_err(|e| unavailable("cannot open the FoundationDB database", e))?;
        db.set_option(DatabaseOption::TransactionTimeout(options.transaction_timeout_ms))
            .map_err(|e| unavailable("cannot set the transaction timeout", e))?;
        Ok(FdbStore {
            inner: Arc::new(Inner {
                db: Arc::new(db),
                prefix: options.prefix,
                limits: options.limits,
                probe_cap: options.probe_cap.max(1),
                heads: Mutex::default(),
            }),
        })
    }

    /// Deletes every key of this deployment prefix, all tenants' logs: for tests and for
    /// decommissioning a deployment. Hosts still running on the prefix see empty logs.
    pub async fn clear(&self) -> Result<(), StoreError> {
        let (begin, end) = Subspace::from(("counterpoint", self.inner.prefix.as_str())).range();
        let (begin, end) = (&begin, &end);
        self.inner
            .db
            .run(|trx, _| async move {
                trx.clear_range(begin, end);
                Ok(())
            })
            .await
            .map_err(|e| binding("cannot clear the deployment", e))
    }

    /// The cluster connection, for the deployment's other parts on the same cluster (read-model
    /// state, leases, the slice catalog): one connection per host.
    pub fn database(&self) -> Arc<Database> {
        self.inner.db.clone()
    }

    fn keys(&self, tenant: &Tenant) -> TenantKeys {
        TenantKeys::new(&self.inner.prefix, tenant)
    }
}

#[async_trait]
impl EventStore for FdbStore {
    async fn read(&self, tenant: &Tenant, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.inner.limits.check_read(&query, &options)?;
        let batches = read::FdbBatches::new(self.inner.clone(), self.keys(tenant), query, options);
        Ok(ReadStream::new(Box::new(batches)))
    }

    async fn append(
        &self,
        tenant: &Tenant,
        mut events: Vec<Event>,
        conditions: Vec<AppendCondition>,
    ) -> Result<Vec<Position>, StoreError> {
        self.inner.limits.check_append(&mut events, &conditions)?;
        let keys = self.keys(tenant);
        let plan = append::Plan::new(&keys, &events, &conditions)?;
        let positions = append::append(&self.inner, &keys, &plan, &conditions).await?;
        if let Some(&head) = positions.last() {
            // Local subscribers learn at once; the watch task tells everyone else.
            if let Some(heads) = self.inner.heads.lock().expect("heads lock").get(tenant) {
                heads.send_if_modified(|seen| advance(seen, head));
            }
        }
        Ok(positions)
    }

    async fn head(&self, tenant: &Tenant) -> Result<Position, StoreError> {
        let key = self.keys(tenant).head();
        let key = &key;
        self.inner
            .db
            .run(|trx, _| async move { Ok(trx.get(key, true).await?) })
            .await
            .map_err(|e| binding("cannot read the head", e))
            .and_then(|value| read::head_position(value.as_deref()))
    }

    async fn event_count(&self, tenant: &Tenant) -> Result<u64, StoreError> {
        let key = self.keys(tenant).count();
        let key = &key;
        let value = self
            .inner
            .db
            .run(|trx, _| async move { Ok(trx.get(key, true).await?) })
            .await
            .map_err(|e| binding("cannot read the event count", e))?;
        Ok(value.map_or(0, |v| u64::try_from(index::decode_count(&v)).unwrap_or(0)))
    }

    async fn subscribe(&self, tenant: &Tenant, query: Query, after: Option<Position>) -> Result<Subscription, StoreError> {
        self.inner.limits.check_query(&query)?;
        let heads = tail::heads(&self.inner, self.keys(tenant), tenant).await?;
        Ok(Subscription::new(Arc::new(self.clone()), tenant.clone(), query, after, heads))
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

/// Moves a published head forward only: appends and the watch task race to publish.
fn advance(seen: &mut Position, head: Position) -> bool {
    if head > *seen {
        *seen = head;
        true
    } else {
        false
    }
}

fn fdb_error(err: FdbError) -> String {
    format!("{} (FoundationDB error {})", err.message(), err.code())
}

/// A failed FDB call outside the retry loop.
fn unavailable(context: &str, err: FdbError) -> StoreError {
    StoreError::Unavailable(format!("{context}: {}", fdb_error(err)))
}

/// The error of a `Database::run`: our own `StoreError` (a failed condition, a corrupt record)
/// comes back as it was; anything else is FDB failing in a way its retry loop could not fix.
pub(crate) fn binding(context: &str, err: FdbBindingError) -> StoreError {
    match err {
        FdbBindingError::CustomError(custom) => match custom.downcast::<StoreError>() {
            Ok(store) => *store,
            Err(other) => StoreError::Unavailable(format!("{context}: {other}")),
        },
        other => match other.get_fdb_error() {
            Some(fdb) => unavailable(context, fdb),
            None => StoreError::Unavailable(format!("{context}: {other}")),
        },
    }
}

/// Every key and value of `range`, read page by page in one transaction (which must stay well
/// inside FDB's 5 s: callers bound the range). `limit` in `range` counts across the pages.
pub(crate) async fn read_range(trx: &Transaction, range: RangeOption<'static>, snapshot: bool) -> Result<Vec<(Vec<u8>, Vec<u8>)>, FdbError> {
    let mut out = Vec::new();
    let mut range = Some(range);
    let mut iteration = 1;
    while let Some(current) = range {
        let page = trx.get_range(&current, iteration, snapshot).await?;
        out.extend(page.iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())));
        range = current.next_range(&page);
        iteration += 1;
    }
    Ok(out)
}

/// Carries a `StoreError` out of a `Database::run` closure; custom errors are never retried.
pub(crate) fn abort(err: StoreError) -> FdbBindingError {
    FdbBindingError::CustomError(Box::new(err))
}
