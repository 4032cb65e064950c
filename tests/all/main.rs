//! Counterpoint's integration tests: one binary, a module per feature.

mod slices;
mod store;
