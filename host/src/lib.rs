//! Counterpoint: a host for event-sourced backends made of WebAssembly feature slices.
//!
//! - [`store`]: the DCB event store (embedded durable default, in-memory);
//! - [`backup`]: online backup and restore of a data directory on the embedded store;
//! - [`runtime`]: loads slices (WebAssembly components) and runs them, one fresh instance per call;
//! - [`runner`]: the CommandRunner: a command's reads guard its append; conflicts re-run it;
//! - [`projections`]: on-demand projections folded in the guest from a streamed read;
//! - [`tenants`]: the server's configuration: tenants, hashed tokens, limits;
//! - [`deploy`]: deployed slices per tenant, hot deploy by upload or drop zone;
//! - [`durable`]: files in the data directory that survive a power cut;
//! - [`memory`]: how the process takes memory from the kernel (no transparent huge pages);
//! - [`testing`]: given/when/then scenarios for compiled slices (`counterpoint test`);
//! - [`scaffold`]: `counterpoint new`, a slice crate that builds and passes its tests;
//! - [`codec`]: JSON at the edges, MessagePack inside;
//! - [`api`]: `counterpoint serve`, the HTTP/JSON API;
//! - [`automations`]: workers that follow the log and react, with checkpoints and dead letters;
//! - [`delivery`]: what automations and read models are handed of the log (no host records);
//! - [`telemetry`]: traces over OTLP, and the process's log lines;
//! - [`transfer`]: `counterpoint export` and `import`, moving logs between backends;
//! - [`bench`]: the benchmarks behind `counterpoint bench`;
//! - [`workers`]: the async runtime the host runs on, each worker on a processor of its own.

pub mod api;
pub mod automations;
pub mod backup;
pub mod bench;
pub mod codec;
pub mod delivery;
pub mod deploy;
pub mod durable;
mod last_noted;
pub mod leases;
pub mod memory;
pub mod projections;
pub mod readmodels;
pub mod runner;
pub mod runtime;
pub mod scaffold;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod testing;
pub mod transfer;
pub mod workers;
