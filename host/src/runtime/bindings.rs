//! Rust bindings of the WIT contract in `wit/`, generated at compile time.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "slice-world",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::counterpoint::slice::types;
pub use self::exports::counterpoint::slice::slice as guest;
