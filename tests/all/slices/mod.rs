//! Real compiled slices in a real host: commands, retries, projections, isolation.

mod commands;
mod courses;
mod deadline;
mod isolation;
mod loading;
mod pool;
mod positions;
mod projections;
mod scenarios;

use std::sync::Arc;

use counterpoint::codec::{json_to_msgpack, msgpack_to_json};
use counterpoint::runner::{CommandOutput, CommandRunner};
use counterpoint::runtime::InvokeError;
use counterpoint::store::{MemoryStore, SharedStore, Tenant};
use counterpoint_tests::slices::slice;
use serde_json::Value;

/// A tenant's view of a host: a store and the runner, slices loaded by crate name.
pub struct Host {
    pub store: SharedStore,
    pub tenant: Tenant,
    pub runner: CommandRunner,
}

impl Host {
    pub fn new() -> Self {
        Self::on(Arc::new(MemoryStore::new()))
    }

    pub fn on(store: SharedStore) -> Self {
        Host { store, tenant: Tenant::new("acme").unwrap(), runner: CommandRunner::default() }
    }

    pub async fn run(&self, slice_name: &str, command: &str, payload: Value) -> Result<(Value, CommandOutput), InvokeError> {
        let slice = slice(slice_name).await;
        let out = self.runner.run(&slice, &self.store, &self.tenant, command, &json_to_msgpack(&payload)).await?;
        let value = msgpack_to_json(&out.output).unwrap_or(Value::Null);
        Ok((value, out))
    }

    pub async fn query(&self, slice_name: &str, projection: &str, params: Value) -> Result<Value, InvokeError> {
        let slice = slice(slice_name).await;
        let out = counterpoint::projections::run(&slice, &self.store, &self.tenant, projection, &json_to_msgpack(&params)).await?;
        Ok(msgpack_to_json(&out).expect("projection results are MessagePack"))
    }

    pub async fn event_types(&self) -> Vec<String> {
        let (events, _) = self
            .store
            .read(&self.tenant, Default::default(), Default::default())
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        events.into_iter().map(|e| e.event.event_type).collect()
    }
}
