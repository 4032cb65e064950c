//! Per-invocation limits: wall time, linear memory, tables and instances.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvocationLimits {
    /// Wall time for each call into the slice, re-armed for every call.
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Bytes of linear memory an instance may grow to.
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// Bytes one `read` may return to the slice.
    pub read_bytes: usize,
}

impl Default for InvocationLimits {
    fn default() -> Self {
        InvocationLimits {
            deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            instances: 32,
            tables: 32,
            memories: 4,
            read_bytes: 32 << 20,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Enforces [`InvocationLimits`] on one instance and remembers a refused growth, so that the
/// trap that follows (a guest's allocator aborts) is reported as running out of memory.
pub(super) struct Limiter {
    pub limits: InvocationLimits,
    pub memory_refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limits.memory_bytes;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.limits.table_elements)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}
