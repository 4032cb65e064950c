//! Counterpoint's integration tests: one binary, a module per feature.

mod automations;
mod slices;
mod store;
