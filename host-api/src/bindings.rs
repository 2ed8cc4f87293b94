//! Host bindings generated from `wit/agent.wit`.
//!
//! Every import is async (backends do I/O) and trappable (a host call that
//! outlives the run's deadline ends the run with a trap instead of returning
//! to the guest).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "agent",
    imports: { default: async | trappable },
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

/// Bindings for the `verifier` world, sharing the agent world's interface
/// types so one linker serves both.
pub mod verifier {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "verifier",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "delta:agent/types": super::delta::agent::types,
            "delta:agent/log": super::delta::agent::log,
        },
    });
}
