//! `delta-messaging` end to end over real loopback servers: the SMTP server
//! and the Twilio-compatible API from `delta-test-servers`, the file outbox,
//! an in-test ledger and the in-memory and JSON-lines audit logs.
//!
//! One test binary (modules by concern): `common` holds the in-test ledger
//! and the set-up every module shares.

mod common;
mod config;
mod delivery;
mod refusals;
