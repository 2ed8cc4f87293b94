//! The control plane's API tests, one binary: each module was its own test
//! binary, and every binary links the whole control plane and the test
//! harness again (issue 13: CI time). Everything runs over real HTTP, on
//! SQLite and PostgreSQL (`common`).

// `#[macro_use]`: its `both!`, `both_with!` reach every module below.
#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod cancel;
mod identity;
mod js;
mod openapi;
mod requeue;
mod results;
mod security;
mod security_fleet;
mod security_messages;
mod security_quotas;
mod sweep;
mod templates;
mod usage;
