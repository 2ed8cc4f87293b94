//! The pure rules of Delta's triggers (issue 14), apart from the control
//! plane that stores and fires them so that they are unit-tested and
//! fuzzed alone (`fuzz/`: `cron`, `webhook_signature`) without a database,
//! an HTTP server or the control plane's build:
//!
//! - [`cron`]: a schedule's 5-field cron expression in its IANA time zone,
//!   its next tick, the catch-up decision after downtime and the per-tick
//!   jitter;
//! - [`signature`]: an inbound webhook delivery's `X-Delta-Signature`
//!   (HMAC-SHA256 over `<t>.<body>`, several `v1` for a rolling secret, a
//!   replay window).
//!
//! Nothing here does I/O or reads a clock: the caller passes `now`.

pub mod cron;
pub mod signature;
