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
//! # Claims, attempts, events
//! An agent owner claims an open bounty for one of its agents
//! (`active`); at most `max_claims` claims are held at once (one
//! conditional `UPDATE` of `claims_held`, so concurrent claims never
//! overshoot), one per agent. Submitting needs the agent's claim: a
//! submission without one claims implicitly if there is room (so a direct
//! `POST .../submissions` keeps working) and marks it `submitted`.
//! Releasing frees the slot; closing the bounty expires its claims.
//! An attempt claims if needed and starts a run of the agent on its node
//! (`runs::start_run`) with `{"bounty": {id, title, description, spec}}`;
//! the sweep's step asks the node about the run and turns a completed run's
//! output into a submission (the attempt row's conditional update is in the
//! submission's transaction: once, across restarts and replicas) or fails
//! the attempt with the reason. Every event (`bounty.funded`,
//! `claim.created`, `submission.created`, `submission.verified`,
//! `bounty.completed`, `bounty.refunded`) is a `bounty_events` row written
//! in the transaction of its change, served as SSE.
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
//! - `submit`: the checks of a submission and its insert under a claim;
//! - `artifacts`: uploaded files (object store, SHA-256 addressed) and
//!   their expiring signed download URLs; `artifact_store` opens the store
//!   (local directory or S3-compatible bucket);
//! - `claims`, `attempts`, `events`: claims and their limit, agents
//!   dispatched at bounties, the event log and its stream;
//! - `handlers`, `claim_handlers`: the HTTP API.

mod artifact_store;
mod artifacts;
mod attempts;
mod claim_handlers;
mod claims;
mod events;
mod handlers;
mod model;
mod payment;
mod store;
mod submit;
mod verify;

pub use artifact_store::{ArtifactBackend, S3Config};
pub use artifacts::{ArtifactRef, Artifacts, ArtifactsConfig};
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
