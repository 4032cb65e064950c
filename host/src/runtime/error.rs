//! Errors of loading a slice and of invoking one. Each says which slice and which stage.

use crate::store::StoreError;

/// Why a component could not be loaded as a slice. Nothing that was running is affected.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("not a Counterpoint slice: {0}")]
    NotASlice(String),
    #[error(
        "the component was built for counterpoint:slice@{found}; this host implements counterpoint:slice@{supported} \
         (rebuild the slice against the host's WIT contract)"
    )]
    IncompatibleContract { found: String, supported: String },
    #[error("the component needs imports this host does not provide: {0}")]
    Link(String),
    #[error("describing the slice failed: {0}")]
    Describe(String),
    #[error("the slice's description is invalid: {0}")]
    InvalidDescription(String),
    #[error("compiling the component took longer than {ms} ms (waiting for a turn included); try again later")]
    CompileTimeout { ms: u128 },
    #[error("{0}")]
    Io(String),
}

/// Why an invocation (a command, a projection, ...) failed. The first five are the WIT error
/// variants a slice reports itself; the rest are the host's verdict on the slice.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("store: {0}")]
    Store(String),
    /// The store failed underneath the slice: the host knows the precise error.
    #[error(transparent)]
    StoreFailed(#[from] StoreError),
    #[error("slice {slice} trapped in {stage}: {detail}")]
    Trapped { slice: String, stage: &'static str, detail: String },
    #[error("slice {slice} ran past its deadline of {ms} ms in {stage}")]
    Timeout { slice: String, stage: &'static str, ms: u128 },
    #[error("slice {slice} ran out of memory in {stage} (limit {limit_bytes} bytes)")]
    OutOfMemory { slice: String, stage: &'static str, limit_bytes: usize },
    #[error("slice {slice} is busy: all {capacity} instance slots are in use")]
    Busy { slice: String, capacity: u32 },
}

impl InvokeError {
    /// The error's stable kind, as scenario specs, metrics and traces spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Rejected(_) => "rejected",
            InvokeError::InvalidInput(_) => "invalid-input",
            InvokeError::Conflict(_) => "conflict",
            InvokeError::NotFound(_) => "not-found",
            InvokeError::Store(_) | InvokeError::StoreFailed(_) => "store",
            InvokeError::Trapped { .. } => "trapped",
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::OutOfMemory { .. } => "out-of-memory",
            InvokeError::Busy { .. } => "busy",
        }
    }
}
