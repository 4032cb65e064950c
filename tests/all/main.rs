//! Counterpoint's integration tests: one binary, a module per feature.

mod api;
mod automations;
mod cluster;
mod effects;
mod leases;
mod polyglot;
mod readmodels;
mod slices;
mod state_conformance;
mod store;
