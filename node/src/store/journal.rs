//! The spend journal's tables (`migrations/node/0002_spend_journal.sql`):
//! written in groups by the node's recorder, read once at start.

use sqlx::Row;

use super::{Store, StoreError, to_i64};
use crate::journal::JournalOp;
use crate::model::now_ms;

/// A lease the control plane has not confirmed returned, with what the
/// journal says was spent on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreturnedLease {
    /// Control-plane lease id.
    pub lease_id: String,
    /// Its agent.
    pub agent_id: String,
    /// Tokens granted.
    pub granted: u64,
    /// Settled usage plus reservations still open (at their whole amount).
    pub spent: u64,
}

impl Store {
    /// Apply journal writes in one transaction (one fsync for the group).
    pub async fn journal_write(&self, ops: &[JournalOp]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        for op in ops {
            match op {
                JournalOp::Lease {
                    lease_id,
                    agent_id,
                    granted,
                } => {
                    sqlx::query(
                        "INSERT INTO lease_journal (lease_id, agent_id, granted, created_at_ms) \
                         VALUES (?, ?, ?, ?) ON CONFLICT (lease_id) DO NOTHING",
                    )
                    .bind(lease_id)
                    .bind(agent_id)
                    .bind(to_i64("granted", *granted)?)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalOp::Hold {
                    spend_id,
                    lease_id,
                    agent_id,
                    tokens,
                } => {
                    sqlx::query(
                        "INSERT INTO spend_journal (spend_id, lease_id, agent_id, tokens, \
                         settled, at_ms) VALUES (?, ?, ?, ?, 0, ?) \
                         ON CONFLICT (spend_id) DO NOTHING",
                    )
                    .bind(spend_id)
                    .bind(lease_id)
                    .bind(agent_id)
                    .bind(to_i64("tokens", *tokens)?)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalOp::Spend {
                    spend_id,
                    lease_id,
                    agent_id,
                    tokens,
                } => {
                    sqlx::query(
                        "INSERT INTO spend_journal (spend_id, lease_id, agent_id, tokens, \
                         settled, at_ms) VALUES (?, ?, ?, ?, 1, ?) \
                         ON CONFLICT (spend_id) DO UPDATE SET tokens = excluded.tokens, \
                         settled = 1, at_ms = excluded.at_ms",
                    )
                    .bind(spend_id)
                    .bind(lease_id)
                    .bind(agent_id)
                    .bind(to_i64("tokens", *tokens)?)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                JournalOp::Release { spend_id } => {
                    // A settled row stays: a release after a settlement
                    // (not expected) must not erase spend.
                    sqlx::query("DELETE FROM spend_journal WHERE spend_id = ? AND settled = 0")
                        .bind(spend_id)
                        .execute(&mut *tx)
                        .await?;
                }
                JournalOp::Returned { lease_id } => {
                    sqlx::query("DELETE FROM spend_journal WHERE lease_id = ?")
                        .bind(lease_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM lease_journal WHERE lease_id = ?")
                        .bind(lease_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Leases not confirmed returned, with their journaled spend (open
    /// reservations at their whole amount: their callers died with the
    /// process, and what the provider served them is unknown). Spend rows of
    /// leases no longer journaled (returned while a write was queued) are
    /// deleted first.
    pub async fn journal_unreturned(&self) -> Result<Vec<UnreturnedLease>, StoreError> {
        sqlx::query(
            "DELETE FROM spend_journal WHERE lease_id NOT IN (SELECT lease_id FROM lease_journal)",
        )
        .execute(&self.write)
        .await?;
        let rows = sqlx::query(
            "SELECT l.lease_id, l.agent_id, l.granted, COALESCE(SUM(s.tokens), 0) AS spent \
             FROM lease_journal l LEFT JOIN spend_journal s ON s.lease_id = l.lease_id \
             GROUP BY l.lease_id, l.agent_id, l.granted ORDER BY l.created_at_ms, l.lease_id",
        )
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| {
                let lease_id: String = r.try_get("lease_id")?;
                let granted: i64 = r.try_get("granted")?;
                let spent: i64 = r.try_get("spent")?;
                let corrupt = |what: &str, v: i64| {
                    StoreError::Corrupt(format!("{what} of journaled lease {lease_id}: {v}"))
                };
                Ok(UnreturnedLease {
                    agent_id: r.try_get("agent_id")?,
                    granted: u64::try_from(granted).map_err(|_| corrupt("granted", granted))?,
                    spent: u64::try_from(spent).map_err(|_| corrupt("spent", spent))?,
                    lease_id,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(spend: &str, lease: &str, tokens: u64) -> JournalOp {
        JournalOp::Hold {
            spend_id: spend.into(),
            lease_id: lease.into(),
            agent_id: "agt".into(),
            tokens,
        }
    }

    fn spend(spend: &str, lease: &str, tokens: u64) -> JournalOp {
        JournalOp::Spend {
            spend_id: spend.into(),
            lease_id: lease.into(),
            agent_id: "agt".into(),
            tokens,
        }
    }

    fn lease(id: &str, granted: u64) -> JournalOp {
        JournalOp::Lease {
            lease_id: id.into(),
            agent_id: "agt".into(),
            granted,
        }
    }

    #[tokio::test]
    async fn the_journal_survives_a_reopen_and_counts_open_holds_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("node.db");
        let store = Store::open(&path).await.expect("open");
        store
            .journal_write(&[
                lease("lse_a", 100),
                lease("lse_b", 50),
                lease("lse_c", 10),
                hold("lse_a/1", "lse_a", 20),
                spend("lse_a/1", "lse_a", 7),
                // Settled twice (a retried write): counted once.
                spend("lse_a/1", "lse_a", 7),
                hold("lse_a/2", "lse_a", 30),
                hold("lse_b/3", "lse_b", 5),
                JournalOp::Release {
                    spend_id: "lse_b/3".into(),
                },
                hold("lse_c/4", "lse_c", 4),
                spend("lse_c/4", "lse_c", 4),
            ])
            .await
            .expect("write");
        // Confirmed returned: gone, spend and all.
        store
            .journal_write(&[JournalOp::Returned {
                lease_id: "lse_c".into(),
            }])
            .await
            .expect("returned");
        store.close().await;
        let store = Store::open(&path).await.expect("reopen");
        let got = store.journal_unreturned().await.expect("read");
        let view: Vec<(&str, u64, u64)> = got
            .iter()
            .map(|l| (l.lease_id.as_str(), l.granted, l.spent))
            .collect();
        // lse_a: 7 settled + 30 held (in flight at the crash).
        assert_eq!(view, vec![("lse_a", 100, 37), ("lse_b", 50, 0)]);
        // A release after a settlement does not erase spend.
        store
            .journal_write(&[JournalOp::Release {
                spend_id: "lse_a/1".into(),
            }])
            .await
            .expect("release");
        let got = store.journal_unreturned().await.expect("read");
        assert_eq!(got[0].spent, 37);
    }
}
