//! Bounties (issue 17, first slice): a business posts work with a reward,
//! escrows it in the money ledger, agents of other tenants submit, a
//! sandboxed verifier judges each submission on a node, and an approval
//! pays the agent owner (reward minus the platform fee) while a
//! cancellation or the deadline refunds the business.
//!
//! # Lifecycle
//! `draft` → (fund: pending transfer tenant → escrow) → `open` →
//! `completed` (approve: post the escrow, pay out, book the fee) |
//! `cancelled` (business) | `expired` (deadline, by the sweep): both void
//! the escrow. Submissions: `pending_verification` → `verified` (with the
//! verdict) | `verification_failed` → `approved` | `rejected`.
//!
//! # Invariants
//! - Money only moves through `crate::money`, in the same transaction as
//!   the status change that causes it; the sum over all accounts stays 0.
//! - One payout or one refund per bounty: the status claim (a conditional
//!   `UPDATE` of the bounty's row) and the escrow's post-or-void-once rule
//!   both guard it.
//! - A submission is approved only with a passing verdict from its
//!   bounty's verifier; a verifier that fails never approves.
//!
//! # Files
//! - `model`: shapes, validation, rows;
//! - `store`: the operations (create, fund, submit, approve, reject,
//!   cancel, expire), each one transaction;
//! - `verify`: verification on a node and judging its outcome;
//! - `payment`: bounties whose escrow is a card authorization at Stripe;
//! - `handlers`: the HTTP API.

mod attempts;
mod claim_handlers;
mod claims;
mod events;
mod handlers;
mod model;
mod payment;
mod store;
mod verify;

pub use attempts::{AttemptStarted, advance as advance_attempts};
pub use events::Kind as EventKind;
pub use handlers::{BountyQuery, routes};
pub use model::{
    Attempt, Bounty, Claim, ClaimRequest, NewBounty, NewSubmission, Payment, Policy, Submission,
    VerifierLimits,
};
pub use payment::{fund_with_stripe, stripe_event};
pub use store::{Actor, ListFilter, Verification, approve, cancel, expire_due, fund};
pub use verify::{judge, retry_pending, verify_submission};
