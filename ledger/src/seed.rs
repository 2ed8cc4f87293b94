//! Accounts declared in a configuration file (`[budget]` of `delta.toml` or
//! `node.toml`), created in the ledger on first start and left as they are
//! after, so balances persist across restarts.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{Error, RequestLimits, SqliteLedger};

/// `[budget]`: where the ledger lives and which accounts it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// SQLite database file.
    pub database: PathBuf,
    /// Budget period for new users, `YYYY-MM` (default: the current month, UTC).
    pub period: Option<String>,
    /// Users to create if missing.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Agents to create if missing, parents before their bots.
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
}

/// A `[[budget.users]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// User id.
    pub id: String,
    /// Tier name, e.g. `developer`.
    pub tier: String,
    /// Tokens per month.
    pub monthly_allocation: u64,
}

/// A `[[budget.agents]]` entry: a main agent (`user`) or a bot (`parent`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// Agent id.
    pub id: String,
    /// Owning user, for a main agent.
    pub user: Option<String>,
    /// Parent main agent, for a bot.
    pub parent: Option<String>,
    /// Tokens per period.
    pub budget: u64,
    /// Main agents: requests up to this size are approved at once (default 0).
    #[serde(default)]
    pub auto_approve_limit: u64,
    /// Main agents: largest request a bot may make (default 0: none).
    #[serde(default)]
    pub max_request: u64,
}

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The database directory could not be made.
    #[error("creating {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The ledger did not open.
    #[error("opening the ledger {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: Error,
    },
    /// An entry is neither a main agent nor a bot.
    #[error("budget agent {0}: give exactly one of `user` (main agent) or `parent` (bot)")]
    Ambiguous(String),
    /// Creating a user or agent failed.
    #[error("creating {id}: {source}")]
    Create {
        /// The user or agent.
        id: String,
        /// What failed.
        source: Error,
    },
}

/// Open the ledger at `config.database` and create the accounts it lacks.
pub async fn open_seeded(config: &BudgetConfig) -> Result<SqliteLedger, SeedError> {
    if let Some(dir) = config.database.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| SeedError::Directory {
            path: dir.to_owned(),
            source,
        })?;
    }
    let ledger = SqliteLedger::open(&config.database)
        .await
        .map_err(|source| SeedError::Open {
            path: config.database.clone(),
            source,
        })?;
    let period = config.period.clone().unwrap_or_else(current_period);
    let created = |id: &str, result: Result<(), Error>| match result {
        Ok(()) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(source) => Err(SeedError::Create {
            id: id.to_owned(),
            source,
        }),
    };
    for user in &config.users {
        let result = ledger
            .create_user(&user.id, &user.tier, user.monthly_allocation, &period)
            .await;
        created(&user.id, result)?;
    }
    for agent in &config.agents {
        let result = match (&agent.user, &agent.parent) {
            (Some(user), None) => {
                let limits = RequestLimits {
                    auto_approve_limit: agent.auto_approve_limit,
                    max_request: agent.max_request,
                };
                ledger
                    .create_main_agent(&agent.id, user, agent.budget, limits)
                    .await
                    .map(|_| ())
            }
            (None, Some(parent)) => ledger
                .create_bot(&agent.id, parent, agent.budget)
                .await
                .map(|_| ()),
            _ => return Err(SeedError::Ambiguous(agent.id.clone())),
        };
        created(&agent.id, result)?;
    }
    Ok(ledger)
}

/// `YYYY-MM` of today in UTC. Written out (the civil-from-days algorithm)
/// rather than pulling in a date crate for this one conversion.
pub fn current_period() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_is_year_and_month() {
        let p = current_period();
        assert_eq!(p.len(), 7, "{p}");
        assert!(p.starts_with("20"), "{p}");
        let month: u32 = p[5..].parse().expect("month");
        assert!((1..=12).contains(&month));
    }

    #[tokio::test]
    async fn seeding_twice_keeps_balances_and_refuses_ambiguous_agents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config: BudgetConfig = toml_like(&dir.path().join("sub/ledger.db"));
        let ledger = open_seeded(&config).await.expect("seed");
        let before = ledger.balance("main").await.expect("main");
        assert_eq!(before.allocated, 2_900);
        drop(ledger);
        let again = open_seeded(&config).await.expect("reseed");
        assert_eq!(again.balance("bot").await.expect("bot").allocated, 100);
        assert_eq!(again.balance("main").await.expect("main"), before);

        let mut bad = config.clone();
        bad.agents.push(AgentEntry {
            id: "orphan".into(),
            user: None,
            parent: None,
            budget: 1,
            auto_approve_limit: 0,
            max_request: 0,
        });
        assert!(matches!(
            open_seeded(&bad).await,
            Err(SeedError::Ambiguous(id)) if id == "orphan"
        ));
    }

    fn toml_like(database: &std::path::Path) -> BudgetConfig {
        BudgetConfig {
            database: database.to_owned(),
            period: Some("2026-11".into()),
            users: vec![UserEntry {
                id: "dev".into(),
                tier: "developer".into(),
                monthly_allocation: 10_000,
            }],
            agents: vec![
                AgentEntry {
                    id: "main".into(),
                    user: Some("dev".into()),
                    parent: None,
                    budget: 3_000,
                    auto_approve_limit: 200,
                    max_request: 1_000,
                },
                AgentEntry {
                    id: "bot".into(),
                    user: None,
                    parent: Some("main".into()),
                    budget: 100,
                    auto_approve_limit: 0,
                    max_request: 0,
                },
            ],
        }
    }
}
