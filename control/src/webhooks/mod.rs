//! Outbound webhooks (issue 17, phase 2): one mechanism for every event the
//! control plane tells a tenant's own servers about: bounty events
//! (`bounty.*`, `submission.*`), agents' results (`run.completed`,
//! `run.failed`, issue 14; see `results`) and workflow runs' ends
//! (`workflow.completed`, `workflow.failed`, `workflow.cancelled`, queued
//! by `crate::workflows::engine` in the transaction that ends the run).
//!
//! # Flow
//! 1. A tenant admin registers an endpoint (`POST /v1/webhook-endpoints`):
//!    a URL, the event types it subscribes to, and a signing secret
//!    (`whsec_...`) that is shown once and kept sealed (AES-256-GCM under a
//!    key derived from the access-token secret, bound to the endpoint id).
//! 2. A state change that others care about calls [`enqueue`] **inside its
//!    own transaction**: one outbox message (`webhook_messages`, its id is
//!    the `webhook-id`) and one delivery per subscribed endpoint. The event
//!    exists if and only if the change committed.
//! 3. The worker ([`spawn`], every replica runs one) claims due deliveries
//!    with a conditional `UPDATE` that takes a lease (`lease_until_ms`), so
//!    one replica at a time attempts a given delivery, and POSTs the body
//!    signed as Standard Webhooks specifies (`webhook-id`,
//!    `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(secret,
//!    "<id>.<timestamp>.<body>")>`). A 2xx is delivered; anything else
//!    (status, timeout, refused address) waits 1, 2, 4, 8 × base
//!    (`webhook_retry_base_ms`, 1 s) before the next try, and the fifth
//!    failure makes it `dead`. `POST /v1/webhook-deliveries/{id}/replay`
//!    puts a dead (or delivered) one back, with five fresh tries and the
//!    same `webhook-id`, so receivers can deduplicate.
//!
//! # Result webhooks
//! An endpoint subscribed to `run.completed` / `run.failed` gets one event
//! per end of each run of the tenant's agents, optionally only of the
//! agents in its `agent_ids` and/or the schedules and inbound webhooks in
//! its `trigger_ids` (validated as the tenant's own at registration). The
//! body's `data` carries `run_id`, `agent_id`, `node_id`, `status`
//! (`finished` or `dead`), `outcome` (`completed`, `trap`, `out-of-fuel`,
//! ..., `dead`), `output` (completed; the guest's JSON, when the node
//! reported it: up to 16 KiB, else `output_omitted` and `GET
//! /v1/runs/{id}` has it while the node keeps it) or `error` (`code` and
//! the outcome's message), `usage`, `trigger` (`{kind, id}`: `api`,
//! `schedule`, `webhook`, `bounty_attempt`), `deliveries`,
//! `created_at_ms` and `finished_at_ms`. A finished run's `webhook-id` is
//! `msg_<run id>`: one per run, however often it was delivered.
//!
//! # Retention
//! Deliveries that finished (delivered or dead) are deleted
//! `record_retention_secs` after they finished, and then their messages;
//! the worker does it once a minute (see [`delete_expired`]).
//!
//! # Addresses
//! A URL's host is resolved and every address checked, at registration and
//! again at every attempt (DNS can change in between); the attempt then
//! connects to exactly the addresses checked (no second lookup, so a
//! rebinding name cannot slip a private address in). Loopback, private,
//! link-local, shared (CGNAT), unique-local, multicast and unspecified
//! addresses are refused unless `allow_private_webhook_urls` is set.
//! Redirects are not followed.
//!
//! # Files
//! - `model`: event types, shapes, validation;
//! - `crypto`: secrets (generation, sealing) and signatures;
//! - `outbox`: [`enqueue`], called by the operations that change state, and
//!   the endpoints' filters;
//! - `results`: [`run_ended`], the result webhooks of runs;
//! - `store`: endpoints and deliveries, tenant-scoped;
//! - `deliver`: the address check and the worker;
//! - `handlers`: the HTTP API.

mod crypto;
mod deliver;
mod handlers;
mod model;
mod outbox;
mod results;
mod store;

pub use crypto::{sign, signature_header};
pub use deliver::{MAX_ATTEMPTS, delete_expired, deliver_due, retry_delay_ms, spawn};
pub use handlers::routes;
pub use model::{Delivery, Endpoint, EventType, NewEndpoint};
pub use outbox::enqueue;
pub use results::{Endpoints, RunEnd, run_ended};
