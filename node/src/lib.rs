//! `delta node`: the daemon an operator runs on each machine.
//!
//! It serves the runtime over an authenticated HTTP(S) API ([`api`]), queues
//! runs fairly across tenants ([`scheduler`]), executes them on
//! `delta-runtime` with capability backends built from the node's
//! configuration and each deployment's grants, keeps deployments, runs and a
//! durable usage outbox in SQLite ([`store`]), ships usage to the control
//! plane exactly once ([`reporter`]) and exports Prometheus metrics
//! ([`metrics`]).
//!
//! Dependency rule: this crate may use the runtime and the capability
//! backends; nothing below it (runtime, host-api, backends) may know about
//! HTTP, tenants' storage or the control plane.

pub mod agents;
pub mod api;
pub mod capabilities;
pub mod config;
pub mod journal;
pub mod kv;
pub mod leases;
pub mod metrics;
pub mod model;
pub mod node;
pub mod outbound;
pub mod reporter;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod verify;
