//! The store's errors. A failed append condition is its own kind, distinct from every other.

use std::path::PathBuf;

use super::Position;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An event matching condition number `condition` exists at `position`, after the
    /// condition's `after`. Nothing was written; the command runner re-runs the command.
    #[error("append condition {condition} failed: a matching event exists at position {position}")]
    ConditionFailed { condition: usize, position: Position },

    /// The request is malformed: an empty type or tag, `limit = 0`, a bad tenant name, ...
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A configured limit was exceeded. Nothing was written.
    #[error("{what} is {actual}, over the limit of {limit}")]
    LimitExceeded { what: &'static str, limit: u64, actual: u64 },

    /// Another process holds the data directory.
    #[error("data directory {} is locked (pid {pid})", dir.display())]
    Locked { dir: PathBuf, pid: String },

    /// The data directory was written by a format this build does not read.
    #[error("data directory {} has format version {found}; this build reads format version {supported}", dir.display())]
    UnsupportedFormat { dir: PathBuf, found: String, supported: u32 },

    /// The data on disk is damaged somewhere other than an unfinished tail.
    #[error("data directory {} is corrupt: {detail}", dir.display())]
    Corrupt { dir: PathBuf, detail: String },

    /// The store cannot serve the request: I/O failed, or it is shut down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    pub(crate) fn io(context: &str, err: std::io::Error) -> Self {
        StoreError::Unavailable(format!("{context}: {err}"))
    }

    pub fn is_condition_failed(&self) -> bool {
        matches!(self, StoreError::ConditionFailed { .. })
    }
}
