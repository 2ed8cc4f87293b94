//! The writer's in-memory copy of every balance, and the operations on it.
//!
//! Only the writer task touches a [`Book`], one operation at a time, so each
//! operation's check-and-update is atomic: no interleaving of callers can
//! overspend. Every operation validates everything before it mutates
//! anything, so an operation that returns an error has changed nothing.
//! Mutations are recorded in [`Effects`], which the writer persists in one
//! transaction per batch (see `store.rs`); if that transaction fails, the
//! writer reloads the book from the database.
//!
//! The arithmetic (what covers what, what a settle charges, what a request
//! or a roll-over does) is [`delta_budget_rules`]'s, shared with the
//! control plane and the node; this file applies it to the book and records
//! the entries.

use std::collections::{BTreeMap, HashMap, HashSet};

use delta_budget_rules as rules;
use delta_host_api::LedgerError;
use delta_host_api::budget::{BudgetError, RequestStatus, TokenRequest};

use crate::model::{
    AccountKind, Decision, Error, RequestLimits, RollOverReport, TokenRequestRecord, check_period,
    req_id, res_id, to_i64, to_u64,
};

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub tier: String,
    pub monthly_allocation: i64,
    pub carved: i64,
    pub period: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub kind: AccountKind,
    pub parent: Option<String>,
    pub user_id: String,
    pub grant: i64,
    pub allocated: i64,
    pub spent: i64,
    pub reserved: i64,
    pub auto_approve_limit: i64,
    pub max_request: i64,
    pub period: String,
    pub created_at: i64,
}

impl Account {
    pub fn available(&self) -> i64 {
        rules::available(self.allocated, self.spent, self.reserved)
    }

    fn bal(&self) -> Bal {
        Bal {
            allocated: self.allocated,
            spent: self.spent,
            reserved: self.reserved,
        }
    }
}

/// The balance columns as they were before a batch touched an account; the
/// writer updates the row only if it still holds these values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bal {
    pub allocated: i64,
    pub spent: i64,
    pub reserved: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct OpenRes {
    pub agent_id: String,
    pub amount: i64,
    pub period: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ResRow {
    pub agent_id: String,
    pub amount: i64,
    pub purpose: String,
    pub run_id: String,
    pub period: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct ReqRow {
    pub bot_id: String,
    pub parent_id: String,
    pub amount: i64,
    pub reason: String,
    pub status: RequestStatus,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

impl ReqRow {
    pub fn record(&self, id: i64) -> TokenRequestRecord {
        TokenRequestRecord {
            id: req_id(id),
            bot_id: self.bot_id.clone(),
            parent_id: self.parent_id.clone(),
            amount: to_u64(self.amount),
            reason: self.reason.clone(),
            status: self.status,
            created_at_ms: self.created_at,
            decided_at_ms: self.decided_at,
            decided_by: self.decided_by.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub at: i64,
    pub period: String,
    pub user_id: String,
    pub agent_id: Option<String>,
    pub kind: &'static str,
    pub amount: i64,
    pub d_allocated: i64,
    pub d_spent: i64,
    pub d_reserved: i64,
    pub reservation_id: Option<i64>,
    pub request_id: Option<i64>,
    pub counterparty: Option<String>,
    pub note: String,
}

impl Entry {
    /// A user's allocation for `period` (set, changed or rolled over).
    fn user_allocation(at: i64, user_id: &str, period: &str, amount: i64, note: String) -> Self {
        let mut e = Entry::new(at, (user_id, period), None, "user_allocation");
        e.amount = amount;
        e.note = note;
        e
    }

    fn new(at: i64, acc_or_user: (&str, &str), agent: Option<&str>, kind: &'static str) -> Self {
        Self {
            at,
            period: acc_or_user.1.to_owned(),
            user_id: acc_or_user.0.to_owned(),
            agent_id: agent.map(str::to_owned),
            kind,
            amount: 0,
            d_allocated: 0,
            d_spent: 0,
            d_reserved: 0,
            reservation_id: None,
            request_id: None,
            counterparty: None,
            note: String::new(),
        }
    }

    /// An entry about `agent`'s account.
    fn account(at: i64, agent: &str, acc: &Account, kind: &'static str, amount: i64) -> Self {
        let mut e = Self::new(at, (&acc.user_id, &acc.period), Some(agent), kind);
        e.amount = amount;
        e
    }
}

/// What one batch changed, to be written in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Users to upsert with their current in-memory state.
    pub users: HashSet<String>,
    /// Accounts created in this batch, in creation order (parents first).
    pub new_accounts: Vec<String>,
    new_set: HashSet<String>,
    /// Existing accounts changed in this batch, with their pre-batch balance.
    pub dirty_accounts: HashMap<String, Bal>,
    /// Reservations made in this batch and still open at its end.
    pub res_insert: BTreeMap<i64, ResRow>,
    /// Reservations from earlier batches finished in this batch.
    pub res_delete: Vec<i64>,
    /// Token requests to upsert with their final state.
    pub requests: BTreeMap<i64, ReqRow>,
    /// Ledger entries, in order.
    pub entries: Vec<Entry>,
    /// Filled by [`Effects::seal`]: final state of every user in `users`.
    pub user_rows: Vec<(String, User)>,
    /// Filled by [`Effects::seal`]: final state of every account in
    /// `new_accounts` (with `None`) and `dirty_accounts` (with the
    /// pre-batch balance), new ones first and in creation order.
    pub account_rows: Vec<(String, Account, Option<Bal>)>,
}

impl Effects {
    /// Copy the final state of every user and account the batch changed, so
    /// the batch can be written while the book moves on to the next one.
    pub fn seal(&mut self, book: &Book) {
        for id in &self.users {
            if let Some(u) = book.users.get(id) {
                self.user_rows.push((id.clone(), u.clone()));
            }
        }
        for id in &self.new_accounts {
            if let Some(a) = book.accounts.get(id) {
                self.account_rows.push((id.clone(), a.clone(), None));
            }
        }
        for (id, before) in &self.dirty_accounts {
            if let Some(a) = book.accounts.get(id) {
                self.account_rows
                    .push((id.clone(), a.clone(), Some(*before)));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.new_accounts.is_empty()
            && self.dirty_accounts.is_empty()
            && self.res_insert.is_empty()
            && self.res_delete.is_empty()
            && self.requests.is_empty()
            && self.entries.is_empty()
    }

    /// Remember `acc`'s balance before this batch changes it.
    fn touch(&mut self, agent: &str, acc: &Account) {
        if !self.new_set.contains(agent) && !self.dirty_accounts.contains_key(agent) {
            self.dirty_accounts.insert(agent.to_owned(), acc.bal());
        }
    }

    fn finish_res(&mut self, id: i64) {
        // A hold made and finished within one batch never reaches the table.
        if self.res_insert.remove(&id).is_none() {
            self.res_delete.push(id);
        }
    }
}

/// Every balance, open hold and pending request, as committed plus the
/// current batch's changes.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub users: HashMap<String, User>,
    pub accounts: HashMap<String, Account>,
    pub reservations: HashMap<i64, OpenRes>,
    pub pending: HashMap<i64, ReqRow>,
    pub next_res: i64,
    pub next_req: i64,
}

impl Book {
    pub fn create_user(
        &mut self,
        fx: &mut Effects,
        now: i64,
        user_id: &str,
        tier: &str,
        monthly_allocation: u64,
        period: &str,
    ) -> Result<(), Error> {
        check_period(period)?;
        let alloc = to_i64(monthly_allocation)?;
        if self.users.contains_key(user_id) {
            return Err(Error::AlreadyExists(user_id.to_owned()));
        }
        self.users.insert(
            user_id.to_owned(),
            User {
                tier: tier.to_owned(),
                monthly_allocation: alloc,
                carved: 0,
                period: period.to_owned(),
                created_at: now,
            },
        );
        fx.users.insert(user_id.to_owned());
        fx.entries.push(Entry::user_allocation(
            now,
            user_id,
            period,
            alloc,
            format!("tier {tier}"),
        ));
        Ok(())
    }

    pub fn update_user(
        &mut self,
        fx: &mut Effects,
        now: i64,
        user_id: &str,
        tier: &str,
        monthly_allocation: u64,
    ) -> Result<(), Error> {
        let alloc = to_i64(monthly_allocation)?;
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| Error::UnknownUser(user_id.to_owned()))?;
        if alloc < user.carved {
            return Err(Error::AllocationBelowCarved {
                allocation: monthly_allocation,
                carved: to_u64(user.carved),
            });
        }
        user.tier = tier.to_owned();
        user.monthly_allocation = alloc;
        fx.users.insert(user_id.to_owned());
        fx.entries.push(Entry::user_allocation(
            now,
            user_id,
            &user.period,
            alloc,
            format!("tier {tier}"),
        ));
        Ok(())
    }

    pub fn create_main(
        &mut self,
        fx: &mut Effects,
        now: i64,
        agent: &str,
        user_id: &str,
        budget: u64,
        limits: RequestLimits,
    ) -> Result<(), Error> {
        let amount = to_i64(budget)?;
        let auto = to_i64(limits.auto_approve_limit)?;
        let max = to_i64(limits.max_request)?;
        if self.accounts.contains_key(agent) {
            return Err(Error::AlreadyExists(agent.to_owned()));
        }
        let user = self
            .users
            .get_mut(user_id)
            .ok_or_else(|| Error::UnknownUser(user_id.to_owned()))?;
        let pool = user.monthly_allocation - user.carved;
        rules::carve(pool, amount).map_err(|s| Error::InsufficientReserve {
            needed: budget,
            available: s.available,
        })?;
        user.carved += amount;
        let acc = Account {
            kind: AccountKind::Main,
            parent: None,
            user_id: user_id.to_owned(),
            grant: amount,
            allocated: amount,
            spent: 0,
            reserved: 0,
            auto_approve_limit: auto,
            max_request: max,
            period: user.period.clone(),
            created_at: now,
        };
        fx.users.insert(user_id.to_owned());
        fx.entries
            .push(Entry::account(now, agent, &acc, "allocate", amount).with_alloc(amount));
        self.accounts.insert(agent.to_owned(), acc);
        fx.new_set.insert(agent.to_owned());
        fx.new_accounts.push(agent.to_owned());
        Ok(())
    }

    pub fn create_bot(
        &mut self,
        fx: &mut Effects,
        now: i64,
        agent: &str,
        parent: &str,
        budget: u64,
    ) -> Result<(), Error> {
        let amount = to_i64(budget)?;
        if self.accounts.contains_key(agent) {
            return Err(Error::AlreadyExists(agent.to_owned()));
        }
        let p = self
            .accounts
            .get_mut(parent)
            .ok_or_else(|| Error::UnknownAccount(parent.to_owned()))?;
        if p.kind != AccountKind::Main {
            return Err(Error::NotAMainAgent(parent.to_owned()));
        }
        rules::carve(p.available(), amount).map_err(|s| Error::Insufficient {
            needed: budget,
            available: s.available,
        })?;
        fx.touch(parent, p);
        p.allocated -= amount;
        let bot = Account {
            kind: AccountKind::Bot,
            parent: Some(parent.to_owned()),
            user_id: p.user_id.clone(),
            grant: amount,
            allocated: amount,
            spent: 0,
            reserved: 0,
            auto_approve_limit: 0,
            max_request: 0,
            period: p.period.clone(),
            created_at: now,
        };
        let mut out = Entry::account(now, parent, p, "carve_out", amount).with_alloc(-amount);
        out.counterparty = Some(agent.to_owned());
        let mut inn = Entry::account(now, agent, &bot, "carve_in", amount).with_alloc(amount);
        inn.counterparty = Some(parent.to_owned());
        fx.entries.push(out);
        fx.entries.push(inn);
        self.accounts.insert(agent.to_owned(), bot);
        fx.new_set.insert(agent.to_owned());
        fx.new_accounts.push(agent.to_owned());
        Ok(())
    }

    pub fn set_limits(
        &mut self,
        fx: &mut Effects,
        agent: &str,
        auto_approve_limit: u64,
        max_request: u64,
    ) -> Result<(), Error> {
        let auto = to_i64(auto_approve_limit)?;
        let max = to_i64(max_request)?;
        let acc = self
            .accounts
            .get_mut(agent)
            .ok_or_else(|| Error::UnknownAccount(agent.to_owned()))?;
        if acc.kind != AccountKind::Main {
            return Err(Error::NotAMainAgent(agent.to_owned()));
        }
        fx.touch(agent, acc);
        acc.auto_approve_limit = auto;
        acc.max_request = max;
        Ok(())
    }

    pub fn reserve(
        &mut self,
        fx: &mut Effects,
        now: i64,
        agent: &str,
        amount: u64,
        purpose: &str,
        run_id: &str,
    ) -> Result<i64, LedgerError> {
        let acc = self
            .accounts
            .get_mut(agent)
            .ok_or_else(|| LedgerError::UnknownAccount(agent.to_owned()))?;
        let a = rules::hold(acc.available(), amount).map_err(|s| LedgerError::Insufficient {
            needed: s.needed,
            available: s.available,
        })?;
        fx.touch(agent, acc);
        acc.reserved += a;
        let id = self.next_res;
        self.next_res += 1;
        let mut e = Entry::account(now, agent, acc, "reserve", a);
        e.d_reserved = a;
        e.reservation_id = Some(id);
        e.note = purpose.to_owned();
        fx.entries.push(e);
        fx.res_insert.insert(
            id,
            ResRow {
                agent_id: agent.to_owned(),
                amount: a,
                purpose: purpose.to_owned(),
                run_id: run_id.to_owned(),
                period: acc.period.clone(),
                created_at: now,
            },
        );
        self.reservations.insert(
            id,
            OpenRes {
                agent_id: agent.to_owned(),
                amount: a,
                period: acc.period.clone(),
            },
        );
        Ok(id)
    }

    /// Take the open reservation `id` made by `agent` out of the book, with
    /// the tokens it still holds in the account's current period.
    fn take_res(&mut self, id: i64, agent: &str, shown: &str) -> Result<i64, LedgerError> {
        let unknown = || LedgerError::UnknownReservation(shown.to_owned());
        let r = self.reservations.get(&id).ok_or_else(unknown)?;
        // The host passes the reservation it got back; still, never let one
        // agent's id finish another agent's hold.
        if r.agent_id != agent {
            return Err(unknown());
        }
        let acc = self.accounts.get(agent).ok_or_else(unknown)?;
        // A hold from before a roll-over no longer holds anything: the
        // roll-over returned its tokens.
        let held = if r.period == acc.period { r.amount } else { 0 };
        self.reservations.remove(&id);
        Ok(held)
    }

    pub fn settle(
        &mut self,
        fx: &mut Effects,
        now: i64,
        id: i64,
        shown: &str,
        agent: &str,
        used: u64,
    ) -> Result<(u64, u64), LedgerError> {
        let held = self.take_res(id, agent, shown)?;
        let acc = self
            .accounts
            .get_mut(agent)
            .ok_or_else(|| LedgerError::UnknownReservation(shown.to_owned()))?;
        fx.touch(agent, acc);
        // Charge what was used, but never past the budget: the excess is
        // recorded as uncovered instead of driving the balance negative.
        let rules::Settled { charged, uncovered } = rules::settle(acc.available(), held, used);
        acc.reserved -= held;
        let c = i64::try_from(charged).unwrap_or(i64::MAX);
        acc.spent += c;
        let mut e = Entry::account(now, agent, acc, "settle", c);
        e.d_spent = c;
        e.d_reserved = -held;
        e.reservation_id = Some(id);
        if held == 0 {
            e.note = "hold from an earlier period".to_owned();
        }
        fx.entries.push(e);
        if uncovered > 0 {
            let mut e = Entry::account(
                now,
                agent,
                acc,
                "uncovered",
                i64::try_from(uncovered).unwrap_or(i64::MAX),
            );
            e.reservation_id = Some(id);
            e.note = format!("used {used}, charged {charged}");
            fx.entries.push(e);
        }
        fx.finish_res(id);
        Ok((charged, uncovered))
    }

    pub fn release(
        &mut self,
        fx: &mut Effects,
        now: i64,
        id: i64,
        shown: &str,
        agent: &str,
    ) -> Result<(), LedgerError> {
        let held = self.take_res(id, agent, shown)?;
        let acc = self
            .accounts
            .get_mut(agent)
            .ok_or_else(|| LedgerError::UnknownReservation(shown.to_owned()))?;
        fx.touch(agent, acc);
        acc.reserved -= held;
        let mut e = Entry::account(now, agent, acc, "release", held);
        e.d_reserved = -held;
        e.reservation_id = Some(id);
        fx.entries.push(e);
        fx.finish_res(id);
        Ok(())
    }

    /// Move `amount` from a main agent to its bot for an approved request.
    fn transfer(
        &mut self,
        fx: &mut Effects,
        now: i64,
        parent: &str,
        bot: &str,
        amount: i64,
        req: i64,
    ) -> Result<(), Error> {
        // Check both sides before changing either.
        let p = self
            .accounts
            .get(parent)
            .ok_or_else(|| Error::UnknownAccount(parent.to_owned()))?;
        rules::carve(p.available(), amount).map_err(|s| Error::Insufficient {
            needed: s.needed,
            available: s.available,
        })?;
        if !self.accounts.contains_key(bot) {
            return Err(Error::UnknownAccount(bot.to_owned()));
        }
        if let Some(p) = self.accounts.get_mut(parent) {
            fx.touch(parent, p);
            p.allocated -= amount;
            let mut e = Entry::account(now, parent, p, "request_out", amount).with_alloc(-amount);
            e.request_id = Some(req);
            e.counterparty = Some(bot.to_owned());
            fx.entries.push(e);
        }
        if let Some(b) = self.accounts.get_mut(bot) {
            fx.touch(bot, b);
            b.allocated += amount;
            let mut e = Entry::account(now, bot, b, "request_in", amount).with_alloc(amount);
            e.request_id = Some(req);
            e.counterparty = Some(parent.to_owned());
            fx.entries.push(e);
        }
        Ok(())
    }

    pub fn request(
        &mut self,
        fx: &mut Effects,
        now: i64,
        bot: &str,
        amount: u64,
        reason: &str,
    ) -> Result<TokenRequest, BudgetError> {
        let Some(acc) = self.accounts.get(bot) else {
            // The WIT has no "unknown account" error: an agent without an
            // account has no budget configured.
            tracing::warn!(
                agent = bot,
                "token request from an agent without a budget account"
            );
            return Err(BudgetError::NotConfigured);
        };
        let Some(parent) = acc.parent.clone() else {
            return Err(BudgetError::NoParent);
        };
        let Some(p) = self.accounts.get(&parent) else {
            tracing::error!(agent = bot, parent, "bot's parent account is missing");
            return Err(BudgetError::NotConfigured);
        };
        let (a, outcome) =
            rules::request_outcome(amount, p.max_request, p.auto_approve_limit, p.available())
                .map_err(|e| BudgetError::InvalidAmount(e.limit))?;
        let auto = outcome == rules::RequestOutcome::Approved;
        let id = self.next_req;
        self.next_req += 1;
        let mut row = ReqRow {
            bot_id: bot.to_owned(),
            parent_id: parent.clone(),
            amount: a,
            reason: reason.to_owned(),
            status: RequestStatus::Pending,
            created_at: now,
            decided_at: None,
            decided_by: None,
        };
        if auto {
            // Checked above: the parent exists and can cover the amount.
            if let Err(e) = self.transfer(fx, now, &parent, bot, a, id) {
                tracing::error!(agent = bot, error = %e, "auto-approval transfer failed");
                return Err(BudgetError::NotConfigured);
            }
            row.status = RequestStatus::Approved;
            row.decided_at = Some(now);
            row.decided_by = Some("auto".to_owned());
        } else if let Some(b) = self.accounts.get(bot) {
            let mut e = Entry::account(now, bot, b, "request_pending", a);
            e.request_id = Some(id);
            e.counterparty = Some(parent.clone());
            e.note = reason.to_owned();
            fx.entries.push(e);
            self.pending.insert(id, row.clone());
        }
        let out = TokenRequest {
            id: req_id(id),
            amount,
            reason: reason.to_owned(),
            status: row.status,
        };
        fx.requests.insert(id, row);
        Ok(out)
    }

    pub fn decide(
        &mut self,
        fx: &mut Effects,
        now: i64,
        id: i64,
        shown: &str,
        decision: Decision,
        decided_by: &str,
    ) -> Result<TokenRequestRecord, Error> {
        let row = self
            .pending
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotPending(shown.to_owned()))?;
        let status = match decision {
            Decision::Approve => {
                self.transfer(fx, now, &row.parent_id, &row.bot_id, row.amount, id)?;
                RequestStatus::Approved
            }
            Decision::Deny => {
                self.status_entry(fx, now, &row, id, "request_denied", decided_by);
                RequestStatus::Denied
            }
        };
        self.pending.remove(&id);
        let row = ReqRow {
            status,
            decided_at: Some(now),
            decided_by: Some(decided_by.to_owned()),
            ..row
        };
        let rec = row.record(id);
        fx.requests.insert(id, row);
        Ok(rec)
    }

    fn status_entry(
        &self,
        fx: &mut Effects,
        now: i64,
        row: &ReqRow,
        id: i64,
        kind: &'static str,
        by: &str,
    ) {
        if let Some(b) = self.accounts.get(&row.bot_id) {
            let mut e = Entry::account(now, &row.bot_id, b, kind, row.amount);
            e.request_id = Some(id);
            e.counterparty = Some(by.to_owned());
            fx.entries.push(e);
        }
    }

    /// Expire pending requests matching `pick`; returns how many.
    fn expire_where(
        &mut self,
        fx: &mut Effects,
        now: i64,
        by: &str,
        pick: impl Fn(&ReqRow) -> bool,
    ) -> u64 {
        let mut ids: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, r)| pick(r))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in &ids {
            if let Some(row) = self.pending.remove(id) {
                self.status_entry(fx, now, &row, *id, "request_expired", by);
                fx.requests.insert(
                    *id,
                    ReqRow {
                        status: RequestStatus::Expired,
                        decided_at: Some(now),
                        decided_by: Some(by.to_owned()),
                        ..row
                    },
                );
            }
        }
        ids.len() as u64
    }

    pub fn expire(&mut self, fx: &mut Effects, now: i64, cutoff: i64) -> u64 {
        self.expire_where(fx, now, "expiry", |r| r.created_at <= cutoff)
    }

    pub fn roll_over(
        &mut self,
        fx: &mut Effects,
        now: i64,
        period: &str,
    ) -> Result<RollOverReport, Error> {
        check_period(period)?;
        if let Some(cur) = self
            .users
            .values()
            .map(|u| u.period.as_str())
            .max()
            .filter(|cur| !rules::rolls_over(cur, period))
        {
            return Err(Error::PeriodNotAfter {
                current: cur.to_owned(),
                requested: period.to_owned(),
            });
        }
        // Compute every new allocation before changing anything. Holds go
        // back at a roll-over (they stay open, detached), so nothing stays
        // held over.
        let mut to_bots: HashMap<&str, i64> = HashMap::new();
        for a in self.accounts.values() {
            if let Some(p) = &a.parent {
                let e = to_bots.entry(p.as_str()).or_default();
                *e = e.saturating_add(rules::rollover_bot(a.grant, 0));
            }
        }
        let mut plan: Vec<(String, i64)> = Vec::with_capacity(self.accounts.len());
        for (id, a) in &self.accounts {
            let new_alloc = match a.kind {
                AccountKind::Bot => rules::rollover_bot(a.grant, 0),
                AccountKind::Main => {
                    rules::rollover_main(a.grant, to_bots.get(id.as_str()).copied().unwrap_or(0))
                        .map_err(|_| {
                            Error::Storage(format!(
                                "roll-over: bots of {id} hold more than its grant"
                            ))
                        })?
                }
            };
            plan.push((id.clone(), new_alloc));
        }
        plan.sort();
        let mut report = RollOverReport::default();
        for (user_id, u) in &mut self.users {
            fx.entries.push(Entry::user_allocation(
                now,
                user_id,
                period,
                u.monthly_allocation,
                format!("roll-over from {}", u.period),
            ));
            u.period = period.to_owned();
            fx.users.insert(user_id.clone());
            report.users += 1;
        }
        report.detached_reservations = self
            .reservations
            .values()
            .filter(|r| r.period.as_str() < period)
            .count() as u64;
        for (id, new_alloc) in plan {
            if let Some(a) = self.accounts.get_mut(&id) {
                fx.touch(&id, a);
                let old_period = std::mem::replace(&mut a.period, period.to_owned());
                let mut e = Entry::account(now, &id, a, "rollover", new_alloc);
                e.d_allocated = new_alloc - a.allocated;
                e.d_spent = -a.spent;
                e.d_reserved = -a.reserved;
                e.note = format!("from {old_period}");
                fx.entries.push(e);
                a.allocated = new_alloc;
                a.spent = 0;
                a.reserved = 0;
                report.accounts += 1;
            }
        }
        report.expired_requests = self.expire_where(fx, now, "roll-over", |_| true);
        Ok(report)
    }
}

impl Entry {
    fn with_alloc(mut self, d: i64) -> Self {
        self.d_allocated = d;
        self
    }
}

/// The ids [`Book::reserve`] hands out, as strings.
pub(crate) fn reservation_name(id: i64) -> String {
    res_id(id)
}
