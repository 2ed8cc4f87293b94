//! Agents' durable state and outbound tools (issue 14, "State and tools"),
//! over real HTTP, each test on SQLite and on PostgreSQL: the `kv` API
//! (public and node-facing, with its scope checks), `kv` from real guests
//! on in-process nodes (a counter that survives the agent's move to another
//! node, compare-and-swap under concurrent runs, quotas and grants), and
//! `kv`, `http` and `agents` from a JavaScript agent.

#[path = "../common/mod.rs"]
mod common;

mod js_tools;
mod kv_api;
mod kv_fleet;
mod outbound;
mod secrets;
