//! Counterpoint's integration tests: one binary, a module per feature.

mod automations;
mod effects;
mod polyglot;
mod slices;
mod store;
