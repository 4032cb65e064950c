//! Counterpoint's integration tests: one binary, a module per feature.

mod automations;
mod effects;
mod slices;
mod store;
