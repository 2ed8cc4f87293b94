//! What nodes are told: the grants and specs of agents, with the templates
//! granted to them, and their redeployment after a change.

use super::*;

/// Grant entries that name `t`: its id and name (and a previous name).
pub(crate) fn template_keys(t: &Template, previous_name: Option<&str>) -> Vec<String> {
    let mut keys = vec![t.id.clone(), t.name.clone()];
    if let Some(name) = previous_name
        && name != t.name
    {
        keys.push(name.to_owned());
    }
    keys
}

/// The templates of `tenant` that `entries` (ids or names) name, by name.
pub(super) async fn granted_templates(
    db: &Db,
    tenant: &str,
    entries: &[String],
) -> Result<Vec<Template>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let list = (0..entries.len())
        .map(|i| format!("${}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {TEMPLATE_COLUMNS} FROM templates \
         WHERE tenant_id = $1 AND (id IN ({list}) OR name IN ({list})) ORDER BY name"
    );
    let mut query = sqlx::query(&sql).bind(tenant);
    for entry in entries {
        query = query.bind(entry);
    }
    query
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(template_from_row)
        .collect()
}

/// The grants a node gets for `agent`: models, channels and recipients as
/// stored; `templates` the names of the granted templates that exist, and
/// `message_templates` their definitions (approved or not: a draft then
/// answers `template-not-approved`). Always `Some`, so the node never falls
/// back to its own configured templates for a control-plane agent.
pub async fn node_grants(db: &Db, agent: &Agent) -> Result<Grants, sqlx::Error> {
    let templates = granted_templates(db, &agent.tenant_id, &agent.grants.templates).await?;
    Ok(Grants {
        models: agent.grants.models.clone(),
        channels: agent
            .grants
            .channels
            .iter()
            .map(|c| channel_id(*c))
            .collect(),
        templates: templates.iter().map(|t| t.name.clone()).collect(),
        recipients: agent.grants.recipients.clone(),
        message_templates: Some(templates.iter().map(Template::to_config).collect()),
        kv: agent.grants.kv,
        http: agent
            .grants
            .http
            .as_ref()
            .map(|h| delta_node_api::HttpGrant {
                hosts: h.hosts.clone(),
                secrets: h.secrets.clone(),
            }),
        agents: agent.grants.agents.clone(),
    })
}

/// What `agent`'s deployment should be, as the node stores it; the node
/// monitor redeploys a deployment that differs.
pub async fn desired_spec(db: &Db, agent: &Agent) -> Result<AgentSpec, sqlx::Error> {
    Ok(AgentSpec {
        tenant_id: agent.tenant_id.clone(),
        component: agent.component.clone(),
        limits: AgentLimits {
            fuel: agent.limits.fuel,
            memory_bytes: agent.limits.memory_bytes,
            timeout_ms: agent.limits.timeout_ms,
        },
        grants: node_grants(db, agent).await?,
    })
}

/// Redeploy `agent` to its node if the node is up; failures are logged
/// (a node that is down gets the agent's current state when the monitor
/// re-places it, one that is up at its next reconciliation).
pub(super) async fn redeploy(state: &AppState, agent: &Agent) -> bool {
    let Some(node_id) = &agent.node_id else {
        return false;
    };
    match crate::nodes::up_node(state, node_id).await {
        Ok(Some(node)) => match agents::redeploy_current(state, &node, &agent.id).await {
            Ok(deployed) => deployed,
            Err(e) => {
                tracing::warn!(agent = %agent.id, node = %node_id, error = %e,
                    "redeploying after a template or recipient change; reconciliation retries");
                false
            }
        },
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(agent = %agent.id, error = %e, "looking up an agent's node");
            false
        }
    }
}

/// Redeploy the tenant's agents whose grants name any of `keys`.
pub(crate) async fn redeploy_granted(state: &AppState, tenant: &str, keys: &[String]) {
    let rows = match sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND node_id IS NOT NULL"
    ))
    .bind(tenant)
    .fetch_all(state.db.pool())
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "listing agents to redeploy after a template change");
            return;
        }
    };
    let affected: Vec<Agent> = rows
        .iter()
        .filter_map(|row| match agents::agent_from_row(row) {
            Ok(agent) => Some(agent),
            Err(e) => {
                tracing::warn!(error = %e, "an agent row that does not decode");
                None
            }
        })
        .filter(|a| a.grants.templates.iter().any(|g| keys.contains(g)))
        .collect();
    if affected.is_empty() {
        return;
    }
    let total = affected.len();
    // Owned futures: borrowed ones would make the handlers' futures fail
    // the higher-ranked `Send` check axum needs.
    let redeployed = futures_util::stream::iter(affected)
        .map(|agent| {
            let state = state.clone();
            async move { redeploy(&state, &agent).await }
        })
        .buffer_unordered(REDEPLOY_CONCURRENCY)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    tracing::info!(
        tenant,
        agents = total,
        redeployed,
        "agents redeployed after a template change"
    );
}
