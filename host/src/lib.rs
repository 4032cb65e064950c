//! Counterpoint: a host for event-sourced backends made of WebAssembly feature slices.
//!
//! - [`store`]: the DCB event store (embedded durable default, in-memory);
//! - [`bench`]: the benchmarks behind `counterpoint bench`.

pub mod bench;
pub mod store;
