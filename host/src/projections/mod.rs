//! On-demand projections, run by the host: the slice names what to read (a query with
//! `limit`/`backwards` for "the last N"), the host streams the events into the guest's
//! projection state in batches, and the slice returns the result. A projection never appends.

use crate::runtime::{Access, InvokeError, ReadAppender, Slice};
use crate::store::{SharedStore, Tenant};

/// Runs projection `name` of `slice` with `params` (MessagePack); returns its result (MessagePack).
pub async fn run(slice: &Slice, store: &SharedStore, tenant: &Tenant, name: &str, params: &[u8]) -> Result<Vec<u8>, InvokeError> {
    crate::telemetry::invoke(slice.span("projection", name), run_untraced(slice, store, tenant, name, params)).await
}

async fn run_untraced(slice: &Slice, store: &SharedStore, tenant: &Tenant, name: &str, params: &[u8]) -> Result<Vec<u8>, InvokeError> {
    let io = ReadAppender::new(store.clone(), tenant.clone(), Access::ReadOnly);
    let mut instance = slice.instantiate(io).await?;
    let result = async {
        let handle = instance.open_projection(name, params).await?;
        let (query, options) = instance.projection_source(&handle).await?;
        let mut events = crate::telemetry::store_call(crate::telemetry::store_read(tenant), store.read(tenant, query, options)).await?;
        while let Some(batch) = events.next_batch().await? {
            instance.projection_fold(&handle, batch).await?;
        }
        instance.projection_finish(&handle).await
    }
    .await;
    instance.finish();
    result
}
