//! Token budgets: the control plane is the **budget authority** (seed 000,
//! issue 7).
//!
//! # Model (the same rules as the SQLite ledger's, in the control plane's tables)
//! The arithmetic is `delta-budget-rules` (`ledger/rules/`), which the
//! SQLite ledger and the node's lease client use too: what a carve needs,
//! what a lease grant and a lease return compute, the token-request
//! decision and the roll-over allocations. This module stores and locks;
//! where a conditional `UPDATE` must check and change in one step (so that
//! concurrent writers queue and re-check), its SQL states the same rule and
//! names it.
//! - A **user** (per tenant) has a tier from `config.tiers` with a monthly
//!   allocation for a period (`YYYY-MM`, UTC). The account is created the
//!   first time it is needed, on the user's tier (their oldest account's,
//!   else the default) with what of it their accounts in other tenants do
//!   not hold: a user's tier is one allocation, and creating tenants does
//!   not mint more. Only platform operators change tiers.
//! - A **main agent**'s allocation is carved from its user's allocation; what
//!   no agent holds is the user's **pool**. A **bot**'s allocation is carved
//!   from its main agent's. `available = allocated - spent - leased`.
//! - Nodes do not own balances: they take **leases** (a slice of an agent's
//!   available tokens with an expiry), spend against them locally and return
//!   them with what they spent. The unspent part goes back to the agent; an
//!   overspend is charged as far as the budget allows and the rest reported
//!   `uncovered`; an expired lease's tokens go back by themselves
//!   ([`expire_leases`]) and a late return charges what the budget has then.
//! - A bot may **request** tokens from its main agent: refused above the main
//!   agent's `max_request` (or 0), approved at once up to its
//!   `auto_approve_limit` when it can cover them, otherwise pending until an
//!   admin or the main agent's owner decides, or it expires.
//! - **Roll-over** ([`roll_over_due`]), when the UTC month changes: spent goes
//!   to 0; a bot's allocation goes back to its grant, a main agent's to its
//!   grant minus its bots' (tokens moved by requests return); tokens out on
//!   leases stay counted (a bot whose leases hold more than its grant keeps
//!   them, its main agent gets that much less); pending requests expire; the
//!   tokens agents deleted during the period had spent come back to the pool.
//!
//! # Invariants
//! Per user, `pool + Σ allocated + retired == monthly_allocation`, where
//! `retired` is what deleted agents spent this period; no `available` and no
//! pool is ever negative. Every change is a row of `budget_entries` (made
//! append-only by triggers) carrying its signed deltas, so an account's rows
//! sum to its balance and a user's to its allocation, `carved` and `retired`.
//!
//! # Concurrency
//! Every check-and-change is a single conditional `UPDATE ... WHERE
//! available >= $n RETURNING`: on PostgreSQL the row lock makes concurrent
//! ones queue and re-check, on SQLite the single writer serializes them.
//! Lease grants and returns, the hot path, are one statement each on
//! PostgreSQL (data-modifying CTEs); on SQLite a writer task groups
//! concurrent ones into one transaction that reads the rows under SQLite's
//! write lock, checks and computes in Rust and writes them back with a few
//! multi-row statements (see `sqlite.rs`). A
//! change that touches several rows takes the user's row first (a no-op
//! `UPDATE`), then leases, then accounts; single-row changes (lease grants)
//! never wait for a second lock, so no cycle can form. On SQLite every write
//! transaction starts with a write (a transaction that reads first cannot be
//! upgraded once another connection has committed), and this module's
//! writers take turns on an in-process lock per database instead of meeting
//! in SQLite's busy handler, which sleeps in milliseconds.
//!
//! The HTTP handlers are thin: the operations are plain functions on a
//! [`Db`] ([`grant_lease`], [`return_lease`], [`request_tokens`], ...) that
//! benchmarks and the sweep call directly.
//!
//! # Files
//! - `model`: errors and the public types (leases, requests, views);
//! - `store`: what every write shares: write transactions (and SQLite's
//!   turns), `budget_entries` rows, user and account rows, users;
//! - `accounts`: opening, allocating and closing agents' accounts;
//! - `leases`: grant, return and expiry, routed to `postgres` (one
//!   statement per operation) or `sqlite` (the grouping writer);
//! - `requests`, `rollover`: token requests and the month's turn;
//! - `views`: read views and the handlers' authorization helpers;
//! - `handlers` (the user API) and `node_api` (what nodes call).
//!
//! SQL goes through sqlx's `Any` driver with `$n` placeholders, which both
//! SQLite and PostgreSQL accept, so each statement is written once; the
//! only dialect split is the lease hot path (`postgres` vs `sqlite`), whose
//! two forms differ in how they batch, not in what they compute (both end
//! in `delta_budget_rules::{grant_lease, return_lease}`). The sibling files
//! import each other's items by glob: they are one module cut by concern,
//! and their items are `pub(super)`.

mod accounts;
mod handlers;
mod lease_views;
mod leases;
mod model;
mod node_api;
mod postgres;
mod requests;
mod rollover;
mod sqlite;
mod store;
mod views;

pub use accounts::{check_creation, close_account, open_account};
pub use handlers::{NewTokenRequest, RequestFilter, SetAgentBudget, SetTier, routes};
pub use lease_views::{LeaseFilter, LeaseList, LeaseView, list_leases};
pub use leases::{expire_leases, grant_lease, return_lease};
pub use model::{
    AgentBudget, BudgetError, Lease, LeaseReturn, NodeBudget, Requester, TokenRequest, UserBudget,
};
pub use node_api::{
    LeaseAsk, LeaseGiveBack, NodeLeasesQuery, NodeTokenAsk, NodeTokenRequest, PollQuery,
    UnreturnedLease, UnreturnedLeases,
};
pub use requests::{decide_request, expire_requests, get_request, request_tokens};
pub use rollover::roll_over_due;
pub use views::{agent_budget, user_budget};
// The money ledger's writers take the same turns as the budgets' (one SQLite
// writer at a time in this process).
pub(crate) use store::sqlite_turn;
