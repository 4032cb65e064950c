//! Logs into a stream: each tenant's whole log, host records included, read as one snapshot.

use std::io::Write;

use super::{StreamWriter, TransferError};
use crate::store::{EventStore, Query, ReadOptions, Tenant};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub tenants: u64,
    pub events: u64,
}

/// Writes the logs of `tenants`, in that order, and the end record.
pub async fn export<W: Write>(store: &dyn EventStore, tenants: &[Tenant], mut writer: StreamWriter<W>) -> Result<(W, ExportSummary), TransferError> {
    let written = |source| TransferError::Write { what: "the export", source };
    let mut summary = ExportSummary::default();
    for tenant in tenants {
        let failed = |source| TransferError::Store { tenant: tenant.clone(), source };
        // Where the log stood as the export began (for people); the done record says where the
        // read's snapshot was.
        let head = store.head(tenant).await.map_err(failed)?;
        let mut read = store.read(tenant, Query::all(), ReadOptions::default()).await.map_err(failed)?;
        writer.tenant(tenant, head).map_err(written)?;
        let mut events = 0u64;
        while let Some(batch) = read.next_batch().await.map_err(failed)? {
            for event in &batch {
                writer.event(event).map_err(written)?;
            }
            events += batch.len() as u64;
        }
        writer.done(tenant, events, read.consistency_position()).map_err(written)?;
        summary.tenants += 1;
        summary.events += events;
    }
    let out = writer.finish(summary.tenants).map_err(written)?;
    Ok((out, summary))
}
