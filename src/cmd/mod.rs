//! The API's command groups, one file each: every group takes the same
//! connection options ([`ApiArgs`]: flags, environment, then the `delta
//! login` profile) and, where it prints API answers, `--json`
//! ([`output::Output`]). Tables, paging and input errors are shared in
//! [`output`].

pub mod access;
pub mod agents;
pub mod bounties;
pub mod budgets;
pub mod events;
pub mod logs;
pub mod nodes;
pub mod output;
pub mod templates;
pub mod token_requests;
pub mod triggers;

use crate::client::{Api, ApiArgs};
use output::Output;

/// The command groups that talk to the control plane.
#[derive(clap::Subcommand, Debug)]
pub enum ApiCommand {
    /// Manage agents through the control plane.
    Agents {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Start and inspect runs through the control plane.
    Runs {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: agents::RunsCommand,
    },
    /// Token budgets: the tree, allocations, bots' auto-approval, tiers.
    Budgets {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: budgets::BudgetsCommand,
    },
    /// Bots' token requests: list, approve, deny (seed 000's approvals).
    TokenRequests {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: token_requests::TokenRequestsCommand,
    },
    /// Usage (runs, fuel, tokens, messages) by day, agent or kind.
    Usage {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        args: token_requests::UsageArgs,
    },
    /// Message templates and their review.
    Templates {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: templates::TemplatesCommand,
    },
    /// The message audit log.
    Messages {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: logs::MessagesCommand,
    },
    /// API keys: create (the secret is shown once), list, revoke.
    Keys {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: access::KeysCommand,
    },
    /// Members of the current tenant and their roles.
    Members {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: access::MembersCommand,
    },
    /// Your invitations to other tenants.
    Invitations {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: access::InvitationsCommand,
    },
    /// The tenant's audit log.
    Audit {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: logs::AuditCommand,
    },
    /// Cron schedules that run agents, and their fires.
    Schedules {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: triggers::SchedulesCommand,
    },
    /// Inbound webhooks that start runs of an agent.
    Webhooks {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: triggers::WebhooksCommand,
    },
    /// Endpoints the tenant's bounty events are sent to.
    WebhookEndpoints {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: events::EndpointsCommand,
    },
    /// Deliveries of events to those endpoints; replay a dead one.
    WebhookDeliveries {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: events::DeliveriesCommand,
    },
    /// Enrol nodes and manage their credentials (platform operators).
    Nodes {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: nodes::NodesCommand,
    },
    /// Post, fund and review bounties, or submit to them.
    Bounties {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: bounties::BountiesCommand,
    },
    /// This tenant's money accounts.
    Ledger {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: Output,
        #[command(subcommand)]
        command: bounties::LedgerCommand,
    },
}

/// Run one API command.
pub async fn run(command: ApiCommand) -> anyhow::Result<()> {
    match command {
        ApiCommand::Agents { api, command } => agents::agents(api, command).await,
        ApiCommand::Runs { api, command } => agents::runs(api, command).await,
        ApiCommand::Nodes { api, command } => nodes::nodes(api, command).await,
        ApiCommand::TokenRequests { api, out, command } => {
            token_requests::token_requests(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Usage { api, out, args } => {
            token_requests::usage(&Api::new(&api)?, out, args).await
        }
        ApiCommand::Bounties { api, out, command } => {
            bounties::bounties(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Ledger { api, out, command } => {
            bounties::ledger(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Budgets { api, out, command } => {
            budgets::run(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Templates { api, out, command } => {
            templates::run(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Messages { api, out, command } => {
            logs::messages(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Audit { api, out, command } => {
            logs::audit(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Keys { api, out, command } => {
            access::keys(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Members { api, out, command } => {
            access::members(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Invitations { api, out, command } => {
            access::invitations(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Schedules { api, out, command } => {
            triggers::schedules(&Api::new(&api)?, out, command).await
        }
        ApiCommand::Webhooks { api, out, command } => {
            triggers::webhooks(&Api::new(&api)?, out, command).await
        }
        ApiCommand::WebhookEndpoints { api, out, command } => {
            events::endpoints(&Api::new(&api)?, out, command).await
        }
        ApiCommand::WebhookDeliveries { api, out, command } => {
            events::deliveries(&Api::new(&api)?, out, command).await
        }
    }
}
