//! Per-invocation limits: wall time, linear memory, tables and instances.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InvocationLimits {
    /// Wall time for each call into the slice, re-armed for every call.
    #[serde(with = "millis")]
    pub deadline: Duration,
    /// Bytes of linear memory an instance may grow to, all its memories together.
    pub memory_bytes: usize,
    /// Table elements of an instance, all its tables together.
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
///
/// The memory and table limits are for the whole store (every memory, every table of every
/// core instance of the component), not for each: a component with several memories, each
/// under the limit, cannot add up past it.
pub(super) struct Limiter {
    pub limits: InvocationLimits,
    pub memory_refused: bool,
    /// Bytes of all the store's memories, as granted so far.
    memory_total: usize,
    /// Elements of all the store's tables, as granted so far.
    table_total: usize,
}

impl Limiter {
    pub fn new(limits: InvocationLimits) -> Self {
        Limiter { limits, memory_refused: false, memory_total: 0, table_total: 0 }
    }
}

/// Grows `total` by a growth from `current` to `desired` if the result stays within `limit`.
/// A new memory or table is a growth from 0; they never shrink, and a store never outlives its
/// invocation, so the total only rises.
fn grow(total: &mut usize, current: usize, desired: usize, limit: usize) -> bool {
    let next = total.saturating_sub(current).saturating_add(desired);
    let allowed = desired >= current && next <= limit;
    if allowed {
        *total = next;
    }
    allowed
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = grow(&mut self.memory_total, current, desired, self.limits.memory_bytes);
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(grow(&mut self.table_total, current, desired, self.limits.table_elements))
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

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store};

    use super::super::{Runtime, RuntimeConfig};
    use super::{InvocationLimits, Limiter};

    const MIB: usize = 1 << 20;
    const HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    /// `(memory 10)`: 640 KiB.
    const MEMORY_10: &[u8] = &[0x05, 0x03, 0x01, 0x00, 0x0a];

    /// The runtime's own engine (pooling allocator: one memory and one table per core module,
    /// slots sized by `limits`), and a store limited as an invocation's is.
    fn engine_and_store(limits: InvocationLimits) -> (Runtime, Store<Limiter>) {
        let runtime = Runtime::new(RuntimeConfig { limits: limits.clone(), max_instances: 2, ..Default::default() }).unwrap();
        let mut store = Store::new(&runtime.inner.engine, Limiter::new(limits));
        store.limiter(|limiter| limiter);
        store.set_epoch_deadline(1 << 40);
        (runtime, store)
    }

    /// A core module of `sections` (hand-encoded: the host has no text-format parser).
    fn module(runtime: &Runtime, sections: &[&[u8]]) -> Module {
        let bytes: Vec<u8> = HEADER.iter().chain(sections.iter().flat_map(|s| s.iter())).copied().collect();
        Module::new(&runtime.inner.engine, bytes).unwrap()
    }

    // A component's core instances share its store: two of them, each with a memory under the
    // limit, stand for a component with two memories (the pool allows one per core module).

    #[tokio::test]
    async fn memories_count_together_at_instantiation() {
        let limits = InvocationLimits { memory_bytes: MIB, ..Default::default() };
        let (runtime, mut store) = engine_and_store(limits);
        let memory = module(&runtime, &[MEMORY_10]);
        Instance::new_async(&mut store, &memory, &[]).await.expect("one memory of 640 KiB fits");
        assert!(!store.data().memory_refused);
        let err = Instance::new_async(&mut store, &memory, &[]).await.expect_err("refused: 1.25 MiB together");
        assert!(format!("{err:#}").contains("exceeds memory limits"), "{err:#}");
        assert!(store.data().memory_refused);
    }

    #[tokio::test]
    async fn memories_count_together_when_they_grow() {
        let (runtime, mut store) = engine_and_store(InvocationLimits { memory_bytes: MIB, ..Default::default() });
        Instance::new_async(&mut store, &module(&runtime, &[MEMORY_10]), &[]).await.unwrap();
        // `(memory 1) (func (export "g") (param i32) (result i32) (memory.grow (local.get 0)))`
        let grower = module(
            &runtime,
            &[
                &[0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f],
                &[0x03, 0x02, 0x01, 0x00],
                &[0x05, 0x03, 0x01, 0x00, 0x01],
                &[0x07, 0x05, 0x01, 0x01, b'g', 0x00, 0x00],
                &[0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x40, 0x00, 0x0b],
            ],
        );
        let instance = Instance::new_async(&mut store, &grower, &[]).await.unwrap();
        let grow = instance.get_typed_func::<i32, i32>(&mut store, "g").unwrap();
        // 10 + 6 pages: exactly 1 MiB.
        assert_eq!(grow.call_async(&mut store, 5).await.unwrap(), 1);
        assert!(!store.data().memory_refused);
        // One more page: this memory (7 pages) is small, the total is not.
        assert_eq!(grow.call_async(&mut store, 1).await.unwrap(), -1, "refused past the total");
        assert!(store.data().memory_refused);
    }

    #[tokio::test]
    async fn tables_count_together() {
        let (runtime, mut store) = engine_and_store(InvocationLimits { table_elements: 100_000, ..Default::default() });
        // `(table 60000 funcref)`: under the limit once, not twice.
        let table = module(&runtime, &[&[0x04, 0x06, 0x01, 0x70, 0x00, 0xe0, 0xd4, 0x03]]);
        Instance::new_async(&mut store, &table, &[]).await.expect("one table fits");
        Instance::new_async(&mut store, &table, &[]).await.expect_err("refused: 120000 elements together");
    }
}
