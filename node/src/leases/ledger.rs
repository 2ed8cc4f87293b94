//! [`BudgetLedger`] over the lease book and client.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use delta_budget_rules as rules;
use delta_host_api::budget::{Balance, BudgetError, TokenRequest};
use delta_host_api::{BudgetLedger, CallContext, LedgerError, Reservation, Settlement};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use super::*;

#[async_trait]
impl BudgetLedger for LeaseLedger {
    async fn reserve(
        &self,
        ctx: &CallContext,
        amount: u64,
        _purpose: &str,
    ) -> Result<Reservation, LedgerError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(LedgerError::Storage("the node is shutting down".into()));
        }
        let agent_id = &*ctx.agent_id;
        let agent = inner.agent(agent_id);
        if let Some(r) = inner.try_hold(&agent, agent_id, amount) {
            return inner.journaled(agent, r).await;
        }
        // One acquisition per agent at a time: whoever waited here may find
        // the lease the previous holder obtained. Giving up while waiting
        // changes nothing.
        let turn = tokio::time::timeout(
            inner.settings.timeout,
            Arc::clone(&agent.acquire).lock_owned(),
        )
        .await
        .map_err(|_| LedgerError::Storage("timed out waiting for a budget lease".into()))?;
        if let Some(r) = inner.try_hold(&agent, agent_id, amount) {
            drop(turn);
            return inner.journaled(agent, r).await;
        }
        if amount == 0 {
            // Nothing to hold: no lease needed.
            let id = inner.reservation_id();
            lock(&agent.book).open.insert(
                id.clone(),
                Open {
                    lease_id: None,
                    amount: 0,
                    detached: Some(Instant::now()),
                },
            );
            return Ok(Reservation {
                id,
                agent_id: agent_id.to_owned(),
                amount: 0,
            });
        }
        // The network part runs as the ledger's own task: if this call is
        // dropped, the leftovers still go back, the lease still lands in the
        // book, and its hold is released by the guard nobody takes.
        let task = inner.tracker.spawn(Arc::clone(inner).acquire(
            agent,
            agent_id.to_owned(),
            amount,
            turn,
        ));
        match task.await {
            Ok(Ok(hold)) => inner.journal_hold(hold).await,
            Ok(Err(e)) => Err(e),
            Err(e) => {
                tracing::error!(agent = %agent_id, error = %e, "a lease acquisition task failed");
                Err(LedgerError::Storage(
                    "leasing tokens failed on this node".into(),
                ))
            }
        }
    }

    async fn settle(
        &self,
        reservation: &Reservation,
        used: u64,
    ) -> Result<Settlement, LedgerError> {
        let unknown = || LedgerError::UnknownReservation(reservation.id.clone());
        let agent = self
            .inner
            .existing_agent(&reservation.agent_id)
            .ok_or_else(unknown)?;
        let now = Instant::now();
        let mut wake = false;
        let mut journal_op = None;
        let settlement = {
            let mut book = lock(&agent.book);
            let open = book.open.remove(&reservation.id).ok_or_else(unknown)?;
            let lease = open
                .lease_id
                .as_deref()
                .and_then(|id| book.leases.iter_mut().find(|l| l.id == id));
            match lease {
                Some(lease) => {
                    lease.held = lease.held.saturating_sub(open.amount);
                    lease.open = lease.open.saturating_sub(1);
                    lease.last_used = now;
                    // The control plane took an expired lease's tokens
                    // back: nothing here covers the usage; it is reported
                    // at return and charged there if the budget allows.
                    // Otherwise the hold plus room nobody else holds
                    // (the hold was given back above).
                    let cover = if lease.expired(now) { 0 } else { lease.room() };
                    let rules::Settled { charged, uncovered } = rules::settle_within(cover, used);
                    lease.spent += charged;
                    lease.uncovered = lease.uncovered.saturating_add(uncovered);
                    wake = lease.open == 0 && (lease.room() == 0 || !lease.usable(now));
                    // What was used replaces the journaled hold (also 0).
                    journal_op = Some(JournalOp::Spend {
                        spend_id: spend_id(&lease.id, &reservation.id),
                        lease_id: lease.id.clone(),
                        agent_id: reservation.agent_id.clone(),
                        tokens: used,
                    });
                    Settlement { charged, uncovered }
                }
                // A zero-token hold made without a lease: nothing covers
                // the usage.
                None => Settlement {
                    charged: 0,
                    uncovered: used,
                },
            }
        };
        // Durable before the caller (and so the guest) sees the result: a
        // node killed now reports this spend when it starts again.
        if let (Some(journal), Some(op)) = (self.inner.journal.get(), journal_op)
            && let Err(e) = journal.write(op).await
        {
            // The journaled hold stays (its whole amount counts if the
            // node dies before returning the lease); nothing else to do.
            tracing::error!(agent = %reservation.agent_id, reservation = %reservation.id,
                error = %e, "journaling a settlement failed");
        }
        if settlement.uncovered > 0 {
            tracing::warn!(agent = %reservation.agent_id, reservation = %reservation.id, used,
                uncovered = settlement.uncovered, "usage not covered by a live lease");
        }
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(settlement)
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let agent = self.inner.existing_agent(&reservation.agent_id);
        if agent.is_some_and(|agent| self.inner.end_hold(&agent, &reservation.id)) {
            Ok(())
        } else {
            Err(LedgerError::UnknownReservation(reservation.id.clone()))
        }
    }

    async fn remaining(&self, ctx: &CallContext) -> Result<Balance, BudgetError> {
        let inner = &self.inner;
        let url = inner.url(&["v1", "nodes", "budgets", &ctx.agent_id]);
        let remote: RemoteBalance = match inner.call(Method::GET, url, None).await {
            Ok(b) => b,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                return Err(BudgetError::NotConfigured);
            }
            Err(e) => return Err(budget_error(&e)),
        };
        // The control plane counts this node's leases as reserved; what was
        // spent on them is spent, and their free room is available. The
        // local view is read after the remote one, so a lease returned in
        // between is missing from both rather than counted twice.
        let (mut spent, mut room) = (0u64, 0u64);
        if let Some(agent) = inner.existing_agent(&ctx.agent_id) {
            let now = Instant::now();
            for l in lock(&agent.book).leases.iter().filter(|l| !l.expired(now)) {
                spent = spent.saturating_add(l.spent);
                if l.usable(now) {
                    room = room.saturating_add(l.room());
                }
            }
        }
        let b = rules::fold_leases(
            remote.allocated,
            remote.spent,
            remote.available,
            spent,
            room,
        );
        Ok(Balance {
            allocated: b.allocated,
            spent: b.spent,
            reserved: b.reserved,
            available: b.available,
        })
    }

    async fn request(
        &self,
        ctx: &CallContext,
        amount: u64,
        reason: String,
    ) -> Result<TokenRequest, BudgetError> {
        let inner = &self.inner;
        let url = inner.url(&["v1", "nodes", "token-requests"]);
        let body = json!({
            "node_id": inner.node_id,
            "agent_id": &*ctx.agent_id,
            "amount": amount,
            "reason": reason,
        });
        match inner
            .call::<RemoteRequest>(Method::POST, url, Some(&body))
            .await
        {
            Ok(r) => to_request(r),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Err(BudgetError::NotConfigured),
            Err(e) => Err(budget_error(&e)),
        }
    }

    async fn poll_request(
        &self,
        ctx: &CallContext,
        id: String,
    ) -> Result<TokenRequest, BudgetError> {
        let inner = &self.inner;
        let mut url = inner.url(&["v1", "nodes", "token-requests", &id]);
        url.query_pairs_mut().append_pair("agent_id", &ctx.agent_id);
        match inner.call::<RemoteRequest>(Method::GET, url, None).await {
            Ok(r) => to_request(r),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Err(BudgetError::UnknownRequest),
            Err(e) => Err(budget_error(&e)),
        }
    }
}
