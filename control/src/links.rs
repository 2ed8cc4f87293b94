//! OpenAPI links (issue 19): from each operation that creates something to
//! the operations that read or act on it, so that a stateful tester
//! (schemathesis' stateful phase) and generated clients can follow
//! create → read/act chains. The created object's `id` fills the next
//! operation's `{id}` path parameter; from a list, the first item's.
//!
//! One table here rather than `links(...)` in each handler's
//! `#[utoipa::path]`: a link names two operations, and the test below
//! checks every one of them against the finished document (both operations
//! exist, the target takes `id`, the source's answer has an `id`), which
//! per-handler attributes could not.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::{OpenApi, RefOr};

/// Where the id is in a created object's answer, and in a page of a list.
const CREATED: &str = "/id";
const FIRST_ITEM: &str = "/items/0/id";

/// (operation, its success statuses, where the id is in its answer,
/// operations taking that id as `{id}`).
type LinkRow = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static [&'static str],
);

const LINKS: &[LinkRow] = &[
    (
        "create_agent",
        &["201"],
        CREATED,
        &[
            "get_agent",
            "update_agent",
            "delete_agent",
            "pause_agent",
            "resume_agent",
            "get_agent_budget",
            "set_agent_budget",
            "create_run",
            "list_schedules",
            "create_schedule",
            "list_webhooks",
            "create_webhook",
            "get_recipients",
            "agent_reputation",
            "create_token_request",
        ],
    ),
    (
        "create_run",
        &["200", "202"],
        CREATED,
        &["get_run", "run_logs", "retry_run"],
    ),
    (
        "create_template",
        &["201"],
        CREATED,
        &[
            "get_template",
            "update_template",
            "approve_template",
            "reject_template",
            "delete_template",
        ],
    ),
    ("create_api_key", &["201"], CREATED, &["revoke_api_key"]),
    (
        "create_bounty",
        &["201"],
        CREATED,
        &[
            "get_bounty",
            "fund_bounty",
            "cancel_bounty",
            "list_submissions",
            "create_submission",
        ],
    ),
    (
        "create_submission",
        &["201"],
        CREATED,
        &[
            "get_submission",
            "approve_submission",
            "reject_submission",
            "verify_again",
        ],
    ),
    (
        "create_schedule",
        &["201"],
        CREATED,
        &[
            "get_schedule",
            "patch_schedule",
            "delete_schedule",
            "list_schedule_fires",
        ],
    ),
    (
        "create_webhook",
        &["201"],
        CREATED,
        &["rotate_webhook_secret", "delete_webhook", "deliver_webhook"],
    ),
    (
        "create_webhook_endpoint",
        &["201"],
        CREATED,
        &["delete_webhook_endpoint"],
    ),
    (
        "create_token_request",
        &["201"],
        CREATED,
        &[
            "get_token_request",
            "approve_token_request",
            "deny_token_request",
        ],
    ),
    // Lists: what was made elsewhere (an invitation from another tenant, a
    // delivery of an event) is reached from its list.
    (
        "list_invitations",
        &["200"],
        FIRST_ITEM,
        &["accept", "decline"],
    ),
    (
        "list_webhook_deliveries",
        &["200"],
        FIRST_ITEM,
        &["replay_webhook_delivery"],
    ),
    (
        "list_token_requests",
        &["200"],
        FIRST_ITEM,
        &[
            "get_token_request",
            "approve_token_request",
            "deny_token_request",
        ],
    ),
];

/// Add the links of [`LINKS`] to the document's responses.
pub fn document(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let Some(id) = op.operation_id.as_deref() else {
                continue;
            };
            let Some((_, statuses, pointer, targets)) =
                LINKS.iter().find(|(source, ..)| *source == id)
            else {
                continue;
            };
            for status in *statuses {
                let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else {
                    continue;
                };
                for target in *targets {
                    // utoipa 5.5 serializes `Link::operation_id` as
                    // `operation_id` (its Link has no camelCase rename), a
                    // key OpenAPI tools ignore: `operationId` is written
                    // through the flattened extensions map instead.
                    let link = LinkBuilder::new()
                        .parameter("id", format!("$response.body#{pointer}"))
                        .description(format!(
                            "`{target}` of the id at `{pointer}` in this answer"
                        ))
                        .extensions(Some(Extensions::from_iter([("operationId", *target)])))
                        .build();
                    response.links.insert((*target).to_owned(), RefOr::T(link));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::LINKS;
    use crate::config::ControlConfig;

    /// Every link names operations that exist, its target takes an `id` in
    /// its path, and the source's answer (the schema of each linked status)
    /// has an `id` property: a link a tester follows never dangles.
    #[test]
    fn every_link_joins_real_operations_on_an_id() {
        let doc =
            serde_json::to_value(crate::app::openapi(&ControlConfig::default())).expect("document");
        let mut ops: BTreeMap<String, Value> = BTreeMap::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("item").values() {
                if let Some(id) = op["operationId"].as_str() {
                    ops.insert(id.to_owned(), op.clone());
                }
            }
        }
        let schemas = &doc["components"]["schemas"];
        let resolve = |s: &Value| -> Value {
            let s = match s["$ref"].as_str() {
                Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
                None => s.clone(),
            };
            // `allOf` (an object with its secret): the parts' properties.
            match s["allOf"].as_array() {
                Some(parts) => {
                    let mut merged = serde_json::Map::new();
                    for part in parts {
                        let part = match part["$ref"].as_str() {
                            Some(r) => {
                                schemas[r.trim_start_matches("#/components/schemas/")].clone()
                            }
                            None => part.clone(),
                        };
                        if let Some(p) = part["properties"].as_object() {
                            merged.extend(p.clone());
                        }
                    }
                    serde_json::json!({ "properties": merged })
                }
                None => s,
            }
        };
        // The schema at a JSON pointer into an answer, if the document has it.
        let at = |schema: &Value, pointer: &str| -> Option<Value> {
            let mut s = resolve(schema);
            for segment in pointer.trim_start_matches('/').split('/') {
                let next = if segment.parse::<usize>().is_ok() {
                    s.get("items")?.clone()
                } else {
                    s.get("properties")?.get(segment)?.clone()
                };
                s = resolve(&next);
            }
            Some(s)
        };
        let mut links = 0;
        for (source, statuses, pointer, targets) in LINKS {
            let op = ops
                .get(*source)
                .unwrap_or_else(|| panic!("no operation {source}"));
            for status in *statuses {
                let response = &op["responses"][*status];
                let schema = &response["content"]["application/json"]["schema"];
                let id = at(schema, pointer);
                assert!(
                    id.is_some_and(|id| id["type"] == "string"),
                    "{source} {status} has no string at {pointer}: {schema}"
                );
                for target in *targets {
                    let t = ops
                        .get(*target)
                        .unwrap_or_else(|| panic!("no operation {target}"));
                    let takes_id = t["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == "id" && p["in"] == "path")
                    });
                    assert!(takes_id, "{target} takes no path id");
                    let link = &response["links"][*target];
                    assert_eq!(
                        link["operationId"], *target,
                        "{source} {status}: {response}"
                    );
                    assert_eq!(
                        link["parameters"]["id"],
                        format!("$response.body#{pointer}")
                    );
                    links += 1;
                }
            }
        }
        assert!(links >= 50, "{links} links");
    }
}
