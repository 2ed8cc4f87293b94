//! Bounty verification: one run of a `verifier` component on a
//! specification and a submission (`POST /v1/verifications`).
//!
//! A verification is a pure function of its inputs: no deployment, no run
//! record, no usage report, and no capability beyond `log` (the runtime's
//! `run_verifier` grants nothing else). It runs under the node's limits
//! (fuel, memory, deadline, clamped like a run's); how it ended is answered
//! as the runtime's outcome, which the control plane judges.

use std::time::Duration;

use delta_host_api::CallContext;
use delta_node_api::{VerificationRequest, VerificationResult};
use delta_runtime::{Digest, RunError, World};

use crate::node::{Node, NodeError, validate_id};

/// Run `req`'s verifier once.
pub async fn verify(
    node: &Node,
    req: VerificationRequest,
) -> Result<VerificationResult, NodeError> {
    if node.is_draining() {
        return Err(NodeError::Draining);
    }
    validate_id("tenant_id", &req.tenant_id)?;
    let digest: Digest = req
        .component
        .parse()
        .map_err(|_| NodeError::Invalid("the component id must be 64 hex digits".into()))?;
    let component = node.runtime().get(&digest).ok_or_else(|| {
        NodeError::Invalid(format!(
            "component {} is not on this node: upload it first",
            req.component
        ))
    })?;
    if component.world() != World::Verifier {
        return Err(NodeError::BadComponent(format!(
            "component {} is a {} component, not a verifier",
            req.component,
            component.world().name()
        )));
    }
    let limits = node.limits().for_run(
        req.limits.fuel,
        req.limits.memory_bytes,
        req.limits.timeout_ms,
    );
    let context = CallContext {
        tenant_id: req.tenant_id.as_str().into(),
        agent_id: "verifier".into(),
        run_id: format!("vrf_{}", uuid::Uuid::now_v7().simple()).into(),
    };
    // Instances outliving their runs briefly can fill the pool: retry a
    // little, as runs do.
    let mut backoff = Duration::from_millis(2);
    let report = loop {
        match node
            .runtime()
            .run_verifier(
                &component,
                context.clone(),
                req.spec.clone(),
                req.submission.clone(),
                limits,
            )
            .await
        {
            Err(RunError::Busy) if backoff < Duration::from_secs(1) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(RunError::InvalidInput(m)) => {
                return Err(NodeError::Invalid(format!("not a JSON document: {m}")));
            }
            Err(e) => return Err(NodeError::Internal(e.to_string())),
            Ok(report) => break report,
        }
    };
    Ok(VerificationResult {
        outcome: serde_json::to_value(&report.outcome)
            .map_err(|e| NodeError::Internal(e.to_string()))?,
        fuel_used: report.usage.fuel_used,
        wall_time_us: report.usage.wall_time_us,
    })
}
