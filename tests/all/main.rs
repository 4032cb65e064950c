//! Counterpoint's integration tests: one binary, a module per feature.

mod api;
mod automations;
mod backup;
mod catalog;
mod catalog_damage;
mod cluster;
mod effects;
mod leases;
mod migrate;
mod polyglot;
mod process;
mod readmodels;
mod slices;
mod state_conformance;
mod store;
mod traces;

/// `backend_cases!([case, ...]; backend => fixture, #[attr]...; ...)`: for each backend, a module
/// holding one test per case, `case(fixture).await`, with that backend's attributes: a suite
/// written once (the `case` functions) and run on every backend.
#[macro_export]
macro_rules! backend_cases {
    ($cases:tt $(; $backend:ident => $fixture:expr $(, #[$attr:meta])*)+ $(;)?) => {
        $( $crate::backend_cases!(@backend $backend; $fixture; [$(#[$attr])*]; $cases); )+
    };
    (@backend $backend:ident; $fixture:expr; $attrs:tt; [$($case:ident),* $(,)?]) => {
        mod $backend {
            $( $crate::backend_cases!(@case $fixture; $attrs; $case); )*
        }
    };
    (@case $fixture:expr; [$(#[$attr:meta])*]; $case:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            super::$case($fixture).await;
        }
    };
}
