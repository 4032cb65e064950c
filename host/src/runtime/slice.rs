//! A loaded slice: its compiled component, prepared for instantiation once, and what it
//! says about itself. Every invocation gets a fresh instance.

use std::sync::Arc;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::TypedFunc;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{guest, read_models_guest, types};
use super::invocation::{from_wit_options, from_wit_query, to_wit_event, to_wit_position, Access, InvocationState, ReadAppender};
use super::limits::Limiter;
use super::output::{flush, LogBudget};
use super::read_model_state::KvSession;
use super::{Exports, InvocationLimits, InvokeError, LoadError, RuntimeInner, WaitSlots};
use crate::store::{Query, ReadOptions, SequencedEvent};

/// A named input of a command or projection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    pub name: String,
    pub description: String,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionInfo {
    pub name: String,
    pub description: String,
    pub params: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationInfo {
    pub name: String,
    pub description: String,
    pub query: Query,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModelInfo {
    pub name: String,
    pub description: String,
    /// The events that update it.
    pub query: Query,
    pub params: Vec<Field>,
}

/// What a slice says about itself when it is loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceDescription {
    pub name: String,
    pub version: String,
    pub commands: Vec<CommandInfo>,
    pub projections: Vec<ProjectionInfo>,
    pub emits: Vec<String>,
    pub automations: Vec<AutomationInfo>,
    /// Persistent read models (empty for components built without them).
    #[serde(default)]
    pub read_models: Vec<ReadModelInfo>,
}

/// A command an automation asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCall {
    pub slice: String,
    pub command: String,
    pub payload: Vec<u8>,
}

fn fields(fields: Vec<guest::Field>) -> Vec<Field> {
    fields.into_iter().map(|f| Field { name: f.name, kind: f.kind }).collect()
}

impl SliceDescription {
    fn from_wit(d: guest::Description) -> Self {
        SliceDescription {
            name: d.name,
            version: d.version,
            commands: d
                .commands
                .into_iter()
                .map(|c| CommandInfo { name: c.name, description: c.description, fields: fields(c.fields) })
                .collect(),
            projections: d
                .projections
                .into_iter()
                .map(|p| ProjectionInfo { name: p.name, description: p.description, params: fields(p.params) })
                .collect(),
            emits: d.emits,
            automations: d
                .automations
                .into_iter()
                .map(|a| AutomationInfo { name: a.name, description: a.description, query: from_wit_query(a.query) })
                .collect(),
            read_models: Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let invalid = |m: String| Err(LoadError::InvalidDescription(m));
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !name_ok(&self.name) {
            return invalid(format!("slice name {:?} must be 1 to 64 characters of a-z, 0-9, '-' and '_'", self.name));
        }
        let mut seen = std::collections::HashSet::new();
        for (kind, name) in self
            .commands
            .iter()
            .map(|c| ("command", &c.name))
            .chain(self.projections.iter().map(|p| ("projection", &p.name)))
            .chain(self.automations.iter().map(|a| ("automation", &a.name)))
            .chain(self.read_models.iter().map(|r| ("read model", &r.name)))
        {
            if name.is_empty() {
                return invalid(format!("a {kind} has an empty name"));
            }
            if !seen.insert((kind, name.clone())) {
                return invalid(format!("{kind} {name:?} is declared twice"));
            }
        }
        Ok(())
    }
}

pub(super) fn from_wit_error(err: types::Error) -> InvokeError {
    match err {
        types::Error::Rejected(m) => InvokeError::Rejected(m),
        types::Error::InvalidInput(m) => InvokeError::InvalidInput(m),
        types::Error::Conflict(m) => InvokeError::Conflict(m),
        types::Error::NotFound(m) => InvokeError::NotFound(m),
        types::Error::Store(m) => InvokeError::Store(m),
    }
}

/// A slice ready to be invoked.
pub struct Slice {
    runtime: Arc<RuntimeInner>,
    limits: InvocationLimits,
    /// Whether the component imports `effects`, and what it is granted.
    imports_effects: bool,
    grants: Option<Arc<super::effects::Grants>>,
    /// The outbound HTTP client when the grants add authorities to trust (else the runtime's).
    http: Option<super::effects::HttpClient>,
    exports: Exports,
    description: SliceDescription,
    hash: String,
    size: usize,
    log_budget: LogBudget,
}

impl Slice {
    pub(super) async fn new(
        runtime: Arc<RuntimeInner>,
        limits: InvocationLimits,
        imports_effects: bool,
        exports: Exports,
        hash: String,
        size: usize,
    ) -> Result<Self, LoadError> {
        // Described by the slice itself just below, before anyone else sees it.
        let mut slice = Slice { runtime, limits, imports_effects, grants: None, http: None, exports, description: SliceDescription::default(), hash, size, log_budget: LogBudget::new() };
        let io = slice.detached(Access::ReadOnly);
        let mut instance = slice.instantiate(io).await.map_err(|e| LoadError::Describe(e.to_string()))?;
        instance.arm();
        let bindings = instance.bindings("describe").map_err(|e| LoadError::Describe(e.to_string()))?;
        let described = within(instance.deadline(), bindings.call_describe(&mut instance.store)).await;
        let description = described.map_err(|e| LoadError::Describe(instance.failure("describe", e).to_string()))?;
        let mut description = SliceDescription::from_wit(description);
        if slice.exports.read_models.is_some() {
            let read_models = instance.read_models_export().map_err(|e| LoadError::Describe(e.to_string()))?;
            instance.arm();
            let listed = within(instance.deadline(), read_models.call_read_models(&mut instance.store)).await;
            let listed = listed.map_err(|e| LoadError::Describe(instance.failure("read-models", e).to_string()))?;
            description.read_models = listed
                .into_iter()
                .map(|r| ReadModelInfo {
                    name: r.name,
                    description: r.description,
                    query: from_wit_query(r.query),
                    params: r.params.into_iter().map(|p| Field { name: p.name, kind: p.kind }).collect(),
                })
                .collect();
        }
        instance.finish();
        description.validate()?;
        slice.description = description;
        Ok(slice)
    }

    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// Whether the component imports the `effects` interface.
    pub fn imports_effects(&self) -> bool {
        self.imports_effects
    }

    /// Grants the slice its effects (before it is shared).
    pub fn grant(&mut self, grants: super::effects::Grants) {
        // The configuration was validated when it was loaded, so the client builds.
        self.http = grants.http_ca_pem.as_deref().and_then(|pem| match super::effects::http_client(Some(pem)) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(slice = self.name(), "{err}; using the public authorities only");
                None
            }
        });
        self.grants = Some(Arc::new(grants));
    }

    pub fn description(&self) -> &SliceDescription {
        &self.description
    }

    /// The SHA-256 of the component's bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A ReadAppender over no tenant's log, for calls that have none.
    fn detached(&self, access: Access) -> ReadAppender {
        let (store, tenant) = &self.runtime.detached;
        ReadAppender::new(store.clone(), tenant.clone(), access)
    }

    /// The span of one call into the slice: `call` (`execute`, `react`, `update`, ...) of `name`
    /// (the command, automation, read model or projection).
    pub(crate) fn span(&self, call: &'static str, name: &str) -> tracing::Span {
        let empty = tracing::field::Empty;
        tracing::info_span!("slice.invoke", slice = self.name(), call, name, outcome = empty, otel.status_code = empty)
    }

    /// A fresh instance whose `store` import is bound to `io`.
    pub(crate) async fn instantiate(&self, io: ReadAppender) -> Result<Instance<'_>, InvokeError> {
        self.instantiate_with(io, None).await
    }

    /// A fresh instance, with a read model's state bound to the `read-model-state` import.
    async fn instantiate_with(&self, mut io: ReadAppender, kv: Option<KvSession>) -> Result<Instance<'_>, InvokeError> {
        let slot = self.slot().await?;
        let limits = self.limits.clone();
        io.set_read_limit(limits.read_bytes);
        let http = self.http.clone().unwrap_or_else(|| self.runtime.http.clone());
        let state = InvocationState::new(io, Limiter::new(limits), self.grants.clone(), http)
            .map_err(InvokeError::Store)?;
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Every epoch tick past the deadline check yields to tokio, so a busy guest never holds a
        // worker thread for long; past the wall-time deadline it is interrupted. Not a command
        // that has just had its turn on a hot boundary, waiting in a read: it held no worker
        // meanwhile, its deadline for the tick is stale, and everyone queued there waits for it
        // to decide (a yield puts it behind all other ready work, for up to ~60 polls).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let now = Instant::now();
            let state = ctx.data_mut();
            if now >= state.deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if state.io.take_waited().is_some_and(|at| now.duration_since(at) < super::EPOCH_TICK) {
                return Ok(UpdateDeadline::Continue(1));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let deadline = Instant::now() + self.limits.deadline;
        store.data_mut().deadline = deadline;
        store.data_mut().kv = kv;
        let instantiated = async {
            let instance = self.exports.pre.instantiate_async(&mut store).await?;
            wasmtime::Result::Ok(instance)
        };
        // The deadline covers instantiation too (a start function may wait on the host).
        let instantiated: wasmtime::Result<_> = within(deadline, instantiated).await;
        match instantiated {
            Ok(instance) => {
                Ok(Instance { slice: self, store, instance, bindings: None, _slot: slot })
            }
            Err(err) => {
                if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
                    tracing::warn!(slice = self.name(), "{full}");
                    return Err(self.busy());
                }
                let mut instance_less = Failure { slice: self, store: &store };
                Err(instance_less.classify("instantiate", err))
            }
        }
    }

    /// An instance slot of the runtime (held from before instantiation until the instance is
    /// gone): at once when one is free, else the first to free up, in arrival order, waiting
    /// at most the runtime's `slot_wait`.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, InvokeError> {
        let slots = &self.runtime.slots;
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let waiting = Waiting::new(&self.runtime.slot_waiters);
        let acquired = tokio::time::timeout(self.runtime.slot_wait, slots.clone().acquire_owned()).await;
        drop(waiting);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                tracing::warn!(slice = self.name(), wait_ms = self.runtime.slot_wait.as_millis(), "no instance slot freed up");
                Err(self.busy())
            }
        }
    }

    fn busy(&self) -> InvokeError {
        InvokeError::Busy { slice: self.name().into(), capacity: self.runtime.max_instances }
    }

    /// The instances of this slice's runtime that may wait on the host inside a call.
    pub fn wait_slots(&self) -> WaitSlots {
        self.runtime.waits.clone()
    }

    /// How long one call into the guest may take, waits on the host included.
    pub fn call_deadline(&self) -> std::time::Duration {
        self.limits.deadline
    }

    /// Runs a command once in a fresh instance. On success, returns its output, what the host
    /// recorded for it (reads, staged events) for the caller to commit, and the spent instance.
    pub async fn execute(&self, io: ReadAppender, command: &str, payload: &[u8]) -> Result<(Vec<u8>, ReadAppender, SpentInstance), InvokeError> {
        // Boxed, so that the span's wrapper and the caller move a pointer, not the call's state.
        crate::telemetry::invoke(self.span("execute", command), Box::pin(self.execute_untraced(io, command, payload))).await
    }

    async fn execute_untraced(&self, io: ReadAppender, command: &str, payload: &[u8]) -> Result<(Vec<u8>, ReadAppender, SpentInstance), InvokeError> {
        let mut instance = self.instantiate(io).await?;
        instance.arm();
        let result = match instance.execute_export() {
            Ok(execute) => within(instance.deadline(), execute.call_async(&mut instance.store, (command, payload))).await.map(|(result,)| result),
            Err(err) => Err(err),
        };
        let result = match result {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(err)) => Err(from_wit_error(err)),
            Err(trap) => Err(instance.failure("execute", trap)),
        };
        let (io, spent) = instance.spend();
        result.map(|output| (output, io, spent))
    }

    /// The tags of an event of one of this slice's types.
    pub async fn tags(&self, io: ReadAppender, event_type: &str, data: &[u8]) -> Result<Vec<String>, InvokeError> {
        crate::telemetry::invoke(self.span("tags", event_type), self.tags_untraced(io, event_type, data)).await
    }

    async fn tags_untraced(&self, io: ReadAppender, event_type: &str, data: &[u8]) -> Result<Vec<String>, InvokeError> {
        let mut instance = self.instantiate(io).await?;
        instance.arm();
        let bindings = instance.bindings("tags")?;
        let result = within(instance.deadline(), bindings.call_tags(&mut instance.store, event_type, data)).await;
        let result = match result {
            Ok(result) => result.map_err(from_wit_error),
            Err(trap) => Err(instance.failure("tags", trap)),
        };
        instance.finish();
        result
    }

    /// What an automation does about one event.
    pub async fn react(&self, io: ReadAppender, automation: &str, event: SequencedEvent) -> Result<Vec<CommandCall>, InvokeError> {
        crate::telemetry::invoke(self.span("react", automation), self.react_untraced(io, automation, event)).await
    }

    async fn react_untraced(&self, io: ReadAppender, automation: &str, event: SequencedEvent) -> Result<Vec<CommandCall>, InvokeError> {
        let mut instance = self.instantiate(io).await?;
        instance.arm();
        let event = types::SequencedEvent { position: to_wit_position(event.position), event: to_wit_event(event.event) };
        let bindings = instance.bindings("react")?;
        let result = within(instance.deadline(), bindings.call_react(&mut instance.store, automation, &event)).await;
        let result = match result {
            Ok(Ok(calls)) => Ok(calls
                .into_iter()
                .map(|c| CommandCall { slice: c.slice, command: c.command, payload: c.payload })
                .collect()),
            Ok(Err(err)) => Err(from_wit_error(err)),
            Err(trap) => Err(instance.failure("react", trap)),
        };
        instance.finish();
        result
    }
}

impl Slice {
    /// Folds a batch of events into read model `name` in a fresh instance. Returns the batch's
    /// writes, for the caller to commit with the checkpoint.
    pub async fn update_read_model(&self, kv: KvSession, name: &str, events: Vec<SequencedEvent>) -> Result<KvSession, InvokeError> {
        crate::telemetry::invoke(self.span("update", name), self.update_untraced(kv, name, events)).await
    }

    async fn update_untraced(&self, kv: KvSession, name: &str, events: Vec<SequencedEvent>) -> Result<KvSession, InvokeError> {
        let mut instance = self.instantiate_with(self.detached(Access::None), Some(kv)).await?;
        let read_models = instance.read_models_export()?;
        instance.arm();
        let events: Vec<types::SequencedEvent> = events
            .into_iter()
            .map(|e| types::SequencedEvent { position: to_wit_position(e.position), event: to_wit_event(e.event) })
            .collect();
        let result = match within(instance.deadline(), read_models.call_update(&mut instance.store, name, &events)).await {
            Ok(result) => result.map_err(from_wit_error),
            Err(trap) => Err(instance.failure("read model update", trap)),
        };
        let kv = instance.store.data_mut().kv.take().expect("the session stays for the call");
        instance.finish();
        result.map(|()| kv)
    }

    /// Answers a query of read model `name` from its state; `params` and the answer are MessagePack.
    pub async fn answer_read_model(&self, kv: KvSession, name: &str, params: &[u8]) -> Result<Vec<u8>, InvokeError> {
        crate::telemetry::invoke(self.span("answer", name), self.answer_untraced(kv, name, params)).await
    }

    async fn answer_untraced(&self, kv: KvSession, name: &str, params: &[u8]) -> Result<Vec<u8>, InvokeError> {
        let mut instance = self.instantiate_with(self.detached(Access::None), Some(kv)).await?;
        let read_models = instance.read_models_export()?;
        instance.arm();
        let result = match within(instance.deadline(), read_models.call_answer(&mut instance.store, name, params)).await {
            Ok(result) => result.map_err(from_wit_error),
            Err(trap) => Err(instance.failure("read model answer", trap)),
        };
        instance.finish();
        result
    }
}

/// The slice interface's `execute(command, payload) -> result<list<u8>, error>`.
type ExecuteFunc<'p> = TypedFunc<(&'p str, &'p [u8]), (Result<Vec<u8>, types::Error>,)>;

/// One live instance of a slice, for the duration of one invocation.
pub(crate) struct Instance<'a> {
    slice: &'a Slice,
    store: Store<InvocationState>,
    instance: wasmtime::component::Instance,
    /// The slice interface's exports, looked up at the first call that needs them.
    bindings: Option<guest::Guest>,
    /// Declared after `store`, so dropped after it: the pool's slot is free before the permit is.
    _slot: OwnedSemaphorePermit,
}

/// Counts a call as waiting for a slot while it exists (a call dropped while it waits, its
/// client gone, stops counting too).
struct Waiting(Arc<AtomicI64>);

impl Waiting {
    fn new(waiters: &Arc<AtomicI64>) -> Self {
        waiters.fetch_add(1, Ordering::Relaxed);
        Waiting(waiters.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A handle to projection state inside the guest.
pub(crate) struct ProjectionHandle(wasmtime::component::ResourceAny);

impl Instance<'_> {
    /// The slice interface's exports (all type-checked together: a few microseconds).
    fn bindings(&mut self, stage: &'static str) -> Result<guest::Guest, InvokeError> {
        if let Some(bindings) = &self.bindings {
            return Ok(bindings.clone());
        }
        let loaded = self.slice.exports.slice.load(&mut self.store, &self.instance).map_err(|err| self.failure(stage, err))?;
        Ok(self.bindings.insert(loaded).clone())
    }

    /// `execute` alone: a command's instance calls nothing else.
    fn execute_export<'p>(&mut self) -> wasmtime::Result<ExecuteFunc<'p>> {
        self.instance.get_typed_func(&mut self.store, self.slice.exports.execute)
    }

    /// The read models' exports, looked up by the calls that use them only: most instances
    /// run a command, which never does.
    fn read_models_export(&mut self) -> Result<read_models_guest::Guest, InvokeError> {
        let slice = self.slice;
        let Some(indices) = &slice.exports.read_models else {
            return Err(InvokeError::NotFound(format!("slice {} has no read models", slice.name())));
        };
        indices.load(&mut self.store, &self.instance).map_err(|err| self.failure("read models", err))
    }

    /// Starts the wall-time deadline of the next call into the guest.
    fn arm(&mut self) {
        self.store.data_mut().deadline = Instant::now() + self.slice.limits.deadline;
    }

    /// When the current call must end.
    fn deadline(&self) -> Instant {
        self.store.data().deadline
    }

    fn failure(&mut self, stage: &'static str, err: wasmtime::Error) -> InvokeError {
        Failure { slice: self.slice, store: &self.store }.classify(stage, err)
    }

    pub async fn open_projection(&mut self, name: &str, params: &[u8]) -> Result<ProjectionHandle, InvokeError> {
        self.arm();
        let bindings = self.bindings("projection")?;
        let projection = bindings.projection();
        match within(self.deadline(), projection.call_open(&mut self.store, name, params)).await {
            Ok(Ok(handle)) => Ok(ProjectionHandle(handle)),
            Ok(Err(err)) => Err(from_wit_error(err)),
            Err(trap) => Err(self.failure("projection open", trap)),
        }
    }

    pub async fn projection_source(&mut self, handle: &ProjectionHandle) -> Result<(Query, ReadOptions), InvokeError> {
        self.arm();
        let bindings = self.bindings("projection")?;
        let projection = bindings.projection();
        match within(self.deadline(), projection.call_source(&mut self.store, handle.0)).await {
            Ok((query, options)) => Ok((from_wit_query(query), from_wit_options(options))),
            Err(trap) => Err(self.failure("projection source", trap)),
        }
    }

    pub async fn projection_fold(&mut self, handle: &ProjectionHandle, events: Vec<SequencedEvent>) -> Result<(), InvokeError> {
        self.arm();
        let events: Vec<types::SequencedEvent> = events
            .into_iter()
            .map(|e| types::SequencedEvent { position: to_wit_position(e.position), event: to_wit_event(e.event) })
            .collect();
        let bindings = self.bindings("projection")?;
        let projection = bindings.projection();
        match within(self.deadline(), projection.call_fold(&mut self.store, handle.0, &events)).await {
            Ok(result) => result.map_err(from_wit_error),
            Err(trap) => Err(self.failure("projection fold", trap)),
        }
    }

    pub async fn projection_finish(&mut self, handle: &ProjectionHandle) -> Result<Vec<u8>, InvokeError> {
        self.arm();
        let bindings = self.bindings("projection")?;
        let projection = bindings.projection();
        match within(self.deadline(), projection.call_finish(&mut self.store, handle.0)).await {
            Ok(result) => result.map_err(from_wit_error),
            Err(trap) => Err(self.failure("projection finish", trap)),
        }
    }

    /// Ends the invocation: logs what the guest printed, returns what the host did for it.
    pub fn finish(self) -> ReadAppender {
        let Instance { slice, store, _slot, .. } = self;
        let state = store.into_data();
        drop(_slot);
        log_output(slice, &state);
        state.io
    }

    /// Like [`finish`](Self::finish), but the instance's slot is given back only when the
    /// returned [`SpentInstance`] is dropped (a command's: the runner decides when).
    fn spend(self) -> (ReadAppender, SpentInstance) {
        let Instance { slice, mut store, _slot, .. } = self;
        let state = store.data_mut();
        log_output(slice, state);
        let io = std::mem::replace(&mut state.io, slice.detached(Access::None));
        (io, SpentInstance { _store: std::sync::Mutex::new(store), _slot })
    }
}

/// Logs what the guest printed during the invocation.
fn log_output(slice: &Slice, state: &InvocationState) {
    flush(slice.name(), "stdout", &state.stdout, &slice.log_budget);
    flush(slice.name(), "stderr", &state.stderr, &slice.log_budget);
}

/// An instance whose call has returned, still holding its slot. Dropping it gives the slot back,
/// which resets the slot's memory and tables (some microseconds): a command in its turn on a hot
/// boundary drops it only once the next in line has gone on, so that the reset is not part of
/// every turn (see the runner).
pub struct SpentInstance {
    /// Never used again, only dropped: in a `Mutex` so that the runner's state that holds it
    /// between awaits may be shared (`Sync`), which a store is not.
    _store: std::sync::Mutex<Store<InvocationState>>,
    _slot: OwnedSemaphorePermit,
}

/// The wall-clock deadline of a call passed while the guest waited on the host (a sleep, an
/// HTTP effect): the epoch callback only interrupts running wasm, this covers the rest.
#[derive(Debug, thiserror::Error)]
#[error("the wall-clock deadline passed")]
struct DeadlinePassed;

/// Runs one call into the guest until `deadline`. Past it the call's future is dropped, which
/// cancels the guest on its fiber: the caller then drops the store, and its instance slot with it.
async fn within<T>(deadline: Instant, call: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::new(DeadlinePassed)),
    }
}

/// Turns a wasmtime error into the host's verdict on the slice.
struct Failure<'a> {
    slice: &'a Slice,
    store: &'a Store<InvocationState>,
}

impl Failure<'_> {
    fn classify(&mut self, stage: &'static str, err: wasmtime::Error) -> InvokeError {
        let slice = self.slice.name().to_string();
        let state = self.store.data();
        if state.limiter.memory_refused {
            return InvokeError::OutOfMemory { slice, stage, limit_bytes: state.limiter.limits.memory_bytes };
        }
        if err.is::<DeadlinePassed>() {
            return InvokeError::Timeout { slice, stage, ms: self.slice.limits.deadline.as_millis() };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => InvokeError::Timeout { slice, stage, ms: self.slice.limits.deadline.as_millis() },
            Some(Trap::StackOverflow) => InvokeError::Trapped { slice, stage, detail: "stack overflow".into() },
            Some(trap) => InvokeError::Trapped { slice, stage, detail: trap.to_string() },
            None => InvokeError::Trapped { slice, stage, detail: format!("{err:#}") },
        }
    }
}
