//! Payments providers behind bounty escrow (issue 17).
//!
//! The ledger (`crate::money`) books every movement whatever the backend;
//! the backend decides where the money really is:
//! - `ledger` (default): the business's ledger balance, filled by operator
//!   top-ups, is escrowed by a pending transfer; nothing leaves the
//!   database.
//! - `stripe`: funding creates a PaymentIntent with manual capture and
//!   hands its client secret to the business, whose browser confirms the
//!   card. Stripe's signed `payment_intent.amount_capturable_updated`
//!   event (`POST /v1/payments/stripe/webhook`) opens the bounty: the
//!   ledger books the authorized amount in from `external` and escrows it.
//!   Approval captures the whole reward (the agent owner's share and the
//!   platform's fee are then split in the ledger); a cancellation, the
//!   deadline or a lapsed authorization cancels the PaymentIntent, and the
//!   ledger books the amount back out.
//!
//! The two differ in when money arrives (at once, or when Stripe says so)
//! and in what a settlement must also do outside the database, so they
//! are one `match` on the bounty's `payment_provider` in the bounty
//! operations rather than a trait with a do-nothing ledger half.
//!
//! # Never twice, never lost
//! Calls that settle (capture, cancel) are decided in the same database
//! transaction as the bounty's status change and written to `payment_ops`
//! ([`ops`]); the sweep makes them after the commit and retries them with
//! the same `Idempotency-Key` until Stripe answers. A crash between the
//! decision and the call loses nothing, a retried call is answered by
//! Stripe with the first result, and the status claim lets only one of
//! approve / cancel / expire decide. Stripe events are remembered by id
//! (`stripe_events`), so a redelivered or replayed event changes nothing;
//! signatures older than 300 s are refused.
//!
//! # Files
//! - `config`: `[payments]`;
//! - `stripe`: the HTTP client;
//! - `ops`: the outbox of provider calls;
//! - `webhook`: Stripe's events in.

pub mod config;
pub mod ops;
pub mod stripe;
mod webhook;

use std::sync::Arc;

pub use config::{PaymentsBackend, PaymentsConfig, StripeConfig};
pub use webhook::routes;

/// What the control plane needs to speak to Stripe.
#[derive(Debug)]
pub struct Stripe {
    /// The API client.
    pub client: stripe::StripeClient,
    /// The webhook endpoint's signing secret.
    pub webhook_secret: String,
    /// How long a card authorization lasts, milliseconds.
    pub authorization_window_ms: i64,
}

impl Stripe {
    /// Read `config`'s key files.
    pub fn open(config: &StripeConfig) -> Result<Arc<Self>, stripe::StripeError> {
        let webhook_secret = delta_http::config::read_secret(&config.webhook_secret_file)
            .map_err(|e| stripe::StripeError::Key(e.to_string()))?;
        Ok(Arc::new(Self {
            client: stripe::StripeClient::new(config)?,
            webhook_secret,
            authorization_window_ms: i64::try_from(config.authorization_window_secs)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        }))
    }
}
