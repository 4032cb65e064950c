//! `counterpoint export` and `counterpoint import`: a tenant's log (or every tenant's) as a
//! stream, and that stream appended to any backend, which is how a deployment moves between the
//! embedded store and FoundationDB.
//!
//! - [`format`]: the stream, as JSON lines or checksummed binary blocks;
//! - [`export()`]: reads logs through [`EventStore`](crate::store::EventStore) into a stream;
//! - [`import()`]: appends a stream, in order, in batches; resumable (a re-run verifies what
//!   the target already holds and goes on after it); writes the old-to-new position mapping;
//! - [`PositionMap`]: old positions to new ones, as runs.
//!
//! The host's own records (`counterpoint.*`) travel too: idempotency records keep answering
//! retried commands, and automations' checkpoints and dead letters are rewritten to name the
//! moved positions, so automations neither react again nor skip anything.

mod export;
pub mod format;
mod import;
mod position_map;

pub use export::{export, ExportSummary};
pub use format::{Encoding, FormatError, Record, StreamReader, StreamWriter};
pub use import::{import, ImportOptions, ImportSummary};
pub use position_map::{MappingFile, PositionMap};

use crate::store::{EventStore, Position, StoreError, Tenant};

/// Why an export or an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("tenant {tenant}: {source}")]
    Store { tenant: Tenant, source: StoreError },
    #[error("tenant {tenant}: appending the stream's events from position {at}: {source}")]
    Append { tenant: Tenant, at: Position, source: StoreError },
    #[error("writing {what}: {source}")]
    Write { what: &'static str, source: std::io::Error },
    /// The records are well formed but do not make a stream (order, counts).
    #[error("the stream is inconsistent: {0}")]
    Inconsistent(String),
    /// The target tenant holds events that are not the start of this stream.
    #[error(
        "tenant {tenant} on the target is not empty and does not hold the start of this stream ({detail}); \
         import into an empty tenant, or re-run with the stream whose import was interrupted"
    )]
    NotAPrefix { tenant: Tenant, detail: String },
    /// Someone else appended to the target tenant during the import.
    #[error(
        "tenant {tenant} on the target was written by someone else during the import (an event at position {position}); \
         stop every host and client writing to it, then import again into an empty tenant"
    )]
    TargetChanged { tenant: Tenant, position: Position },
    /// An export names a tenant nobody configured or created, whose log is empty: most likely
    /// a misspelt name, which would otherwise export nothing without a word.
    #[error(
        "no tenant {tenant}: it is not in the configuration, was not created over the API and has no events \
         (check the name, or pass the host's --config)"
    )]
    UnknownTenant { tenant: Tenant },
}

/// Whether `tenant` can be exported: it is one of `known` (configured or created; its log may be
/// empty), or its log holds events.
pub async fn check_exportable(store: &dyn EventStore, tenant: &Tenant, known: &[Tenant]) -> Result<(), TransferError> {
    if known.contains(tenant) {
        return Ok(());
    }
    let head = store.head(tenant).await.map_err(|source| TransferError::Store { tenant: tenant.clone(), source })?;
    if head == Position::ZERO {
        return Err(TransferError::UnknownTenant { tenant: tenant.clone() });
    }
    Ok(())
}
