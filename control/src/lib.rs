//! Delta's control plane: the small service platforms, dashboards and
//! scripts talk to. It is the authority for identity (users, sessions, API
//! keys), tenants and roles, agents and where they run, and it drives nodes
//! over their HTTP API.
//!
//! Storage is sqlx's `Any` driver over SQLite (the embedded default) or
//! PostgreSQL, with one migration folder per backend under
//! `migrations/control/`. Every query that touches tenant data is scoped by
//! the caller's tenant; another tenant's ids answer 404.
//!
//! Dependency rule: the control plane talks to nodes only over HTTP, with
//! the wire types of `delta-node-api`; it never depends on `delta-node` and
//! never links Wasmtime (JavaScript uploads go through the
//! [`scripts::ScriptPreparer`] the binary installs). `cargo xtask tidy`
//! checks this.

pub mod agent_messages;
pub mod agents;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bounties;
pub mod budgets;
pub mod components;
pub mod config;
pub mod contract;
pub mod dashboard;
pub mod db;
pub mod deployments;
pub mod dispatch;
pub mod guard;
pub mod idempotency;
pub mod identity;
pub mod invitations;
pub mod keycache;
pub mod kv;
pub mod links;
pub mod mailer;
pub mod messages;
pub mod metrics;
pub mod money;
pub mod node_enrolment;
pub mod nodeauth;
pub mod nodeclient;
pub mod nodes;
pub mod pagination;
pub mod payments;
pub mod quotas;
pub mod ratelimit;
pub mod reputation;
pub mod run_cancel;
pub mod run_end;
pub mod runs;
pub mod scripts;
pub mod secrets;
pub mod sse;
pub mod state;
pub mod sweep;
pub mod template_review;
pub mod templates;
pub mod tenants;
pub mod triggers;
pub mod usage;
pub mod vault;
pub mod verification;
pub mod webhooks;
pub mod workflows;
