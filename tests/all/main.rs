//! Counterpoint's integration tests: one binary, a module per feature.

mod api;
mod automations;
mod effects;
mod leases;
mod polyglot;
mod readmodels;
mod slices;
mod store;
