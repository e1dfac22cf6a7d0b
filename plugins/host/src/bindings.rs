//! Host-side bindings for the three worlds of `sdk/wit/plugin.wit`.
//!
//! The host interfaces (`log`, `kv`, `http`, ...) are generated once, with
//! the trigger world, and shared by the other two through `with`.

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "trigger",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub mod power_up {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "power-up",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "baton:plugin": super::trigger::baton::plugin },
    });
}

pub mod action {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "action",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "baton:plugin": super::trigger::baton::plugin },
    });
}

pub use trigger::baton::plugin as host;
