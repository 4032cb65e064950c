//! Rust bindings of the WIT contract in `wit/`, generated at compile time.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "slice-world",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::counterpoint::slice::types;
pub use self::counterpoint::slice::read_model_state;
pub use self::exports::counterpoint::slice::read_models as read_models_guest;
pub use self::exports::counterpoint::slice::slice as guest;
