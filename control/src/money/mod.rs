//! The money ledger in the control plane's database (issue 17): accounts
//! and immutable transfers in integer minor units, with the rules of
//! `delta-money` (`money/`).
//!
//! # Accounts
//! Per currency: each tenant's balance (`tenant:<id>:<CUR>`, which cannot be
//! overdrawn), each tenant's escrow (`escrow:<id>:<CUR>`), the platform's
//! fees (`platform:<CUR>`), and one `external:<CUR>` account, debited by
//! operator top-ups: it goes negative by what entered the system, which is
//! what keeps the sum over all accounts at zero. Accounts are created the
//! first time they are needed.
//!
//! # Transfers and concurrency
//! [`store::apply_transfers`] applies a list of transfers inside the
//! caller's database transaction: it locks the union of their accounts first
//! (PostgreSQL: `SELECT ... ORDER BY id FOR UPDATE`, so two operations that
//! touch the same accounts always lock them in the same order and cannot
//! deadlock; SQLite: the in-process writer turn shared with the budgets, and
//! a write before any read), then for each transfer answers a retry from the
//! stored transfer (same id and fields) or applies `delta_money::apply` and
//! writes the accounts, the transfer and the pending state back. A refusal
//! rolls the whole transaction back. Three guards make a pending transfer
//! settle once: the rules (`pending_already_posted` / `_voided`), the
//! `money_pending` row read under the lock, and a unique index on
//! `money_transfers.pending_id`.
//!
//! # Files
//! - `store`: account ids, the write transaction, applying transfers, reads;
//! - `handlers`: `POST /v1/operator/ledger/topups`, `GET /v1/ledger/accounts`.

mod handlers;
pub mod store;

pub use handlers::{AccountView, TopUp, money_error, routes};
pub use store::{AccountKind, MoneyError, Write, account_id, apply_transfers, ensure_account};
