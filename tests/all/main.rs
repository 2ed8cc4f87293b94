//! The `delta` binary's integration tests, one binary (each module was its
//! own, and each linked the node, the control plane and Wasmtime again:
//! issue 13, CI time): the CLI, `delta up`, the node daemon, the control
//! plane driving real node processes, tenant isolation, economics, systemd
//! units.

// `#[macro_use]`: its `both!`, `both_with!` reach every module below.
#[macro_use]
#[path = "../../control/tests/common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod api_cli;
mod bots;
mod bounties_cli;
mod cli;
mod control_fleet;
mod economics;
mod isolation;
mod node;
mod systemd;
mod up;
mod workflows_cli;
