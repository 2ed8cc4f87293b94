//! Templates, per-agent recipients and the message log, over real HTTP,
//! each test on SQLite and on PostgreSQL: CRUD and validation, the approval
//! flow (an edit returns a template to draft; only admins review), tenant
//! isolation on every route, recipient checks, and the way changes reach a
//! real node (in this process) whose messenger then sends only what was
//! approved and granted, with every attempt in the message log.

use crate::common;

use std::time::Duration;

use common::{
    Control, Dialect, Session, create_agent, eventually, node_api_token, start_node_in_process,
};
use delta_guest_artifacts as guests;
use delta_node::model::{MessageAttempt, RunUsage};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

// ---- helpers -------------------------------------------------------------------

async fn call(
    ctl: &Control,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    ctl.call(method, path, Some(token), body).await
}

fn welcome(name: &str) -> Value {
    json!({
        "name": name,
        "channel": "email",
        "subject": "Welcome, {{ name }}",
        "body": "Hello {{ name | title }}!",
        "variables": { "name": 32 },
    })
}

async fn create_template(ctl: &Control, token: &str, body: Value) -> Value {
    let (status, t) = call(
        ctl,
        Method::POST,
        "/v1/templates",
        token,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}: {t}");
    t
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `who` joins `owner`'s tenant with `role`; answers their token there.
async fn join(ctl: &Control, owner: &Session, who: &Session, role: &str) -> String {
    let (status, body) = ctl.invite_and_accept(&owner.access, who, role).await;
    assert!(status.is_success(), "{body}");
    let (status, login) = ctl
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({ "email": who.email, "password": who.password,
                          "tenant_id": owner.tenant_id })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    s(&login["access_token"])
}

/// An API key of `session` with `scopes`.
async fn api_key(ctl: &Control, session: &Session, scopes: &[&str]) -> String {
    let (status, key) = call(
        ctl,
        Method::POST,
        "/v1/api-keys",
        &session.access,
        Some(json!({ "name": "k", "scopes": scopes })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    s(&key["key"])
}

/// Every item of a list, walking pages of `limit`.
async fn walk(ctl: &Control, token: &str, path: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut url = format!("{path}{sep}limit={limit}");
    for _ in 0..1000 {
        let (status, page) = call(ctl, Method::GET, &url, token, None).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        let batch = page["items"].as_array().expect("items");
        assert!(batch.len() <= limit as usize);
        items.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{path}{sep}limit={limit}&cursor={c}"),
            None => return items,
        }
    }
    panic!("pagination of {path} never ended");
}

/// Actions of the tenant's audit log, oldest first.
async fn audit_actions(ctl: &Control, token: &str) -> Vec<Value> {
    let mut entries = walk(ctl, token, "/v1/audit", 100).await;
    entries.reverse();
    entries
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

/// A node in this process registered with `ctl`, sending email into a file
/// outbox (free of charge, so no budget is involved).
async fn start_node(ctl: &Control) -> delta_node::server::RunningNode {
    let outbox = ctl.dir.path().join("node").join("outbox");
    let extra = format!(
        r#"[messaging]
[messaging.email]
from = "Delta <noreply@delta.test>"
cost_tokens = 0
rate_limit = {{ per_minute = 600, burst = 100 }}
backend = {{ kind = "outbox", dir = "{outbox}" }}
# The node's own template: never used for control-plane agents.
[[messaging.templates]]
id = "welcome"
channel = "email"
subject = "node.toml's"
body = "node.toml's {{{{ name }}}}"
variables = ["name"]
approved = true
"#,
        outbox = outbox.display(),
    );
    start_node_in_process(ctl, NODE_ID, &extra).await
}

/// The id of this suite's node.
const NODE_ID: &str = "templates-node";

/// The deployment as the node holds it.
async fn deployment(ctl: &Control, node: &delta_node::server::RunningNode, agent: &str) -> Value {
    let resp = ctl
        .client
        .get(format!("{}/v1/agents/{agent}", node.url()))
        .bearer_auth(node_api_token(NODE_ID))
        .send()
        .await
        .expect("node");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

fn outbox_files(ctl: &Control) -> usize {
    std::fs::read_dir(ctl.dir.path().join("node").join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---- CRUD and validation ---------------------------------------------------------

both!(crud_validation_and_lists, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let t = create_template(&ctl, &alice.access, welcome("welcome")).await;
    let id = s(&t["id"]);
    assert!(id.starts_with("tpl_"), "{t}");
    assert_eq!(t["status"], "draft");
    assert_eq!(t["version"], 1);
    assert_eq!(t["created_by"], json!(alice.user_id));
    assert_eq!(t["variables"], json!({ "name": 32 }));
    assert_eq!(t["approved_by"], Value::Null);

    let (status, got) = call(
        &ctl,
        Method::GET,
        &format!("/v1/templates/{id}"),
        &alice.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, t);

    // Refused at the API, never on a node.
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "name": "bad name" }), "invalid"),
        (json!({ "name": "tpl_x" }), "invalid"),
        (json!({ "subject": null }), "invalid_template"),
        (json!({ "channel": "sms" }), "invalid_template"),
        (
            json!({ "channel": "sms", "subject": null, "html": true }),
            "invalid_template",
        ),
        (json!({ "body": "Hi {{ other }}" }), "invalid_template"),
        (
            json!({ "body": "{% if name %}unclosed" }),
            "invalid_template",
        ),
        (json!({ "body": "{{ name | nosuch }}" }), "invalid_template"),
        (
            json!({ "body": "{{ name * 100000000 }}" }),
            "invalid_template",
        ),
        (
            json!({ "body": "{% for i in range(9) %}x{% endfor %}" }),
            "invalid_template",
        ),
        (json!({ "subject": "two\nlines" }), "invalid_template"),
        (json!({ "variables": { "name": 0 } }), "invalid"),
        (json!({ "variables": { "name": 5000 } }), "invalid"),
        (
            json!({ "variables": { "not-ident": 4 }, "body": "x" }),
            "invalid_template",
        ),
        (json!({ "body": "x".repeat(70_000) }), "invalid"),
        (json!({ "channel": "fax" }), "invalid_json"),
        (json!({ "extra": 1 }), "invalid_json"),
    ];
    for (change, expected) in cases {
        let mut body = welcome("other");
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = call(
            &ctl,
            Method::POST,
            "/v1/templates",
            &alice.access,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{change}: {answer}"
        );
        assert_eq!(code(&answer), expected, "{change}: {answer}");
    }
    let (_, answer) = call(
        &ctl,
        Method::POST,
        "/v1/templates",
        &alice.access,
        Some(json!({ "name": "x", "channel": "email", "subject": "s", "body": "{{ nope }}" })),
    )
    .await;
    assert!(s(&answer["details"]["reason"]).contains("nope"), "{answer}");

    let (status, answer) = call(
        &ctl,
        Method::POST,
        "/v1/templates",
        &alice.access,
        Some(welcome("welcome")),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "name_taken"),
        "{answer}"
    );

    let otp = create_template(
        &ctl,
        &alice.access,
        json!({ "name": "otp", "channel": "sms", "body": "Code {{ code }}",
                "variables": { "code": 8 } }),
    )
    .await;
    create_template(&ctl, &alice.access, welcome("third")).await;

    // Pages and filters.
    let all = walk(&ctl, &alice.access, "/v1/templates", 1).await;
    let names: Vec<String> = all.iter().map(|t| s(&t["name"])).collect();
    assert_eq!(names, ["welcome", "otp", "third"]);
    let sms = walk(&ctl, &alice.access, "/v1/templates?channel=sms", 10).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["id"], otp["id"]);
    let approved = walk(&ctl, &alice.access, "/v1/templates?status=approved", 10).await;
    assert!(approved.is_empty());
    let drafts = walk(
        &ctl,
        &alice.access,
        "/v1/templates?status=draft&channel=email",
        10,
    )
    .await;
    assert_eq!(drafts.len(), 2);
    for bad in ["/v1/templates?status=live", "/v1/templates?channel=fax"] {
        let (status, _) = call(&ctl, Method::GET, bad, &alice.access, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    // PATCH: a body that changes nothing changes nothing.
    let path = format!("/v1/templates/{id}");
    let (status, same) = call(
        &ctl,
        Method::PATCH,
        &path,
        &alice.access,
        Some(json!({ "body": "Hello {{ name | title }}!" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["version"], 1);
    // A change is a new version; switching to SMS drops the subject.
    let (status, sms) = call(
        &ctl,
        Method::PATCH,
        &path,
        &alice.access,
        Some(json!({ "channel": "sms", "subject": null, "body": "Hi {{ name }}" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sms}");
    assert_eq!(sms["version"], 2);
    assert_eq!(sms["channel"], "sms");
    assert_eq!(sms["subject"], Value::Null);
    // An invalid change is refused and leaves it as it was.
    let (status, answer) = call(
        &ctl,
        Method::PATCH,
        &path,
        &alice.access,
        Some(json!({ "subject": "back?" })),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_template")
    );
    let (status, answer) = call(
        &ctl,
        Method::PATCH,
        &path,
        &alice.access,
        Some(json!({ "name": "otp" })),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "name_taken")
    );
    let (_, now) = call(&ctl, Method::GET, &path, &alice.access, None).await;
    assert_eq!(now, sms);

    let (status, _) = call(&ctl, Method::DELETE, &path, &alice.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&ctl, Method::GET, &path, &alice.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&ctl, Method::DELETE, &path, &alice.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let audit = audit_actions(&ctl, &alice.access).await;
    let ours: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["detail"]["template_id"] == json!(id))
        .map(|e| (s(&e["action"]), s(&e["user_id"])))
        .collect();
    assert_eq!(
        ours,
        [
            ("template_created".to_owned(), alice.user_id.clone()),
            ("template_updated".to_owned(), alice.user_id.clone()),
            ("template_deleted".to_owned(), alice.user_id.clone()),
        ]
    );
});

// ---- approval ----------------------------------------------------------------------

both!(approval_flow_and_roles, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let carol = ctl.register("carol").await;
    let carol_token = join(&ctl, &alice, &carol, "member").await;

    // A member may propose and edit, not review.
    let t = create_template(&ctl, &carol_token, welcome("welcome")).await;
    let id = s(&t["id"]);
    let approve = format!("/v1/templates/{id}/approve");
    let reject = format!("/v1/templates/{id}/reject");
    for path in [&approve, &reject] {
        let (status, answer) = call(&ctl, Method::POST, path, &carol_token, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
    }
    // An admin's key without templates:write may not either.
    let reader = api_key(&ctl, &alice, &["templates:read"]).await;
    let (status, _) = call(&ctl, Method::POST, &approve, &reader, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &ctl,
        Method::PATCH,
        &format!("/v1/templates/{id}"),
        &reader,
        Some(json!({ "body": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &ctl,
        Method::GET,
        &format!("/v1/templates/{id}"),
        &reader,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let agents_only = api_key(&ctl, &alice, &["agents:read"]).await;
    let (status, _) = call(&ctl, Method::GET, "/v1/templates", &agents_only, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Approval names the version it approves when asked to.
    let (status, answer) = call(
        &ctl,
        Method::POST,
        &approve,
        &alice.access,
        Some(json!({ "version": 7 })),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "version_mismatch")
    );
    assert_eq!(answer["details"]["version"], 1);
    let (status, approved) = call(
        &ctl,
        Method::POST,
        &approve,
        &alice.access,
        Some(json!({ "version": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approved_by"], json!(alice.user_id));
    assert!(approved["approved_at_ms"].as_i64().is_some_and(|t| t > 0));
    let (status, answer) = call(&ctl, Method::POST, &approve, &alice.access, None).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "already_approved")
    );

    // An edit returns it to draft; the approval is gone.
    let (status, edited) = call(
        &ctl,
        Method::PATCH,
        &format!("/v1/templates/{id}"),
        &carol_token,
        Some(json!({ "body": "Hello again {{ name }}" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["status"], "draft");
    assert_eq!(edited["version"], 2);
    assert_eq!(edited["approved_by"], Value::Null);
    assert_eq!(edited["updated_by"], json!(carol.user_id));
    let (status, answer) = call(
        &ctl,
        Method::POST,
        &approve,
        &alice.access,
        Some(json!({ "version": 1 })),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "version_mismatch"),
        "stale approval"
    );

    // Rejected with a reason, then approved after all.
    let (status, answer) = call(
        &ctl,
        Method::POST,
        &reject,
        &alice.access,
        Some(json!({ "reason": "x".repeat(1001) })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, rejected) = call(
        &ctl,
        Method::POST,
        &reject,
        &alice.access,
        Some(json!({ "reason": "tone", "version": 2 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["rejection_reason"], "tone");
    assert_eq!(rejected["rejected_by"], json!(alice.user_id));
    let (status, answer) = call(&ctl, Method::POST, &reject, &alice.access, None).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::CONFLICT, "already_rejected")
    );
    let (status, answer) = call(
        &ctl,
        Method::POST,
        &reject,
        &alice.access,
        Some(json!({ "nope": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, again) = call(&ctl, Method::POST, &approve, &alice.access, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "approved");
    assert_eq!(again["rejection_reason"], Value::Null);
    assert_eq!(again["version"], 2);
    let approved = walk(&ctl, &alice.access, "/v1/templates?status=approved", 10).await;
    assert_eq!(approved.len(), 1);

    let audit = audit_actions(&ctl, &alice.access).await;
    let ours: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["detail"]["template_id"] == json!(id))
        .map(|e| (s(&e["action"]), s(&e["user_id"])))
        .collect();
    let (a, c) = (alice.user_id.clone(), carol.user_id.clone());
    assert_eq!(
        ours,
        [
            ("template_created".to_owned(), c.clone()),
            ("template_approved".to_owned(), a.clone()),
            ("template_updated".to_owned(), c),
            ("template_rejected".to_owned(), a.clone()),
            ("template_approved".to_owned(), a),
        ]
    );
});

// ---- the message log ---------------------------------------------------------------

fn attempt(
    template: &str,
    channel: &str,
    status: &str,
    reason: Option<&str>,
    at_ms: i64,
) -> MessageAttempt {
    MessageAttempt {
        channel: channel.into(),
        template_id: template.into(),
        recipient: if channel == "sms" {
            "+14155550100".into()
        } else {
            "ada@example.com".into()
        },
        status: status.into(),
        reason: reason.map(str::to_owned),
        tokens: if status == "sent" { 10 } else { 0 },
        provider_id: (status == "sent").then(|| format!("p-{at_ms}")),
        at_ms,
    }
}

fn usage(run: &str, agent: &str, tenant: &str, log: Vec<MessageAttempt>) -> RunUsage {
    RunUsage {
        run_id: run.into(),
        agent_id: agent.into(),
        tenant_id: tenant.into(),
        outcome: "completed".into(),
        finished_at_ms: 1_000,
        message_log: log,
        ..RunUsage::default()
    }
}

async fn messages(ctl: &Control, token: &str, query: &str) -> Vec<Value> {
    walk(ctl, token, &format!("/v1/messages{query}"), 2).await
}

both!(message_log_records_and_filters, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let records = [
        usage(
            "run_1",
            "agt_a",
            &alice.tenant_id,
            vec![
                attempt("welcome", "email", "sent", None, 1_000),
                attempt(
                    "welcome",
                    "email",
                    "refused",
                    Some("recipient-not-allowed"),
                    2_000,
                ),
                attempt("otp", "sms", "failed", Some("delivery-failed"), 3_000),
            ],
        ),
        usage(
            "run_2",
            "agt_b",
            &alice.tenant_id,
            vec![attempt(
                "draft",
                "email",
                "refused",
                Some("template-not-approved"),
                2_000,
            )],
        ),
        usage(
            "run_3",
            "agt_c",
            &bob.tenant_id,
            vec![attempt("bobs", "sms", "sent", None, 1_500)],
        ),
        usage("run_4", "agt_a", &alice.tenant_id, Vec::new()),
    ];
    let refs: Vec<&RunUsage> = records.iter().collect();
    for _ in 0..2 {
        // Twice: a repeat adds nothing.
        let mut tx = ctl.state.db.pool().begin().await.expect("tx");
        delta_control::messages::record_attempts(&mut tx, "node-1", &refs, 9_999)
            .await
            .expect("record");
        tx.commit().await.expect("commit");
    }

    let all = messages(&ctl, &alice.access, "").await;
    let ids: Vec<String> = all.iter().map(|m| s(&m["id"])).collect();
    assert_eq!(
        ids,
        ["run_1:2", "run_2:0", "run_1:1", "run_1:0"],
        "newest first"
    );
    assert_eq!(
        all[3],
        json!({ "id": "run_1:0", "agent_id": "agt_a", "run_id": "run_1", "node_id": "node-1",
                "channel": "email", "template_id": "welcome", "recipient": "ada@example.com",
                "status": "sent", "reason": null, "tokens": 10, "provider_id": "p-1000",
                "at_ms": 1000 })
    );
    let ids_of = |items: Vec<Value>| items.iter().map(|m| s(&m["id"])).collect::<Vec<_>>();
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?agent_id=agt_b").await),
        ["run_2:0"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?channel=sms").await),
        ["run_1:2"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?status=refused").await),
        ["run_2:0", "run_1:1"]
    );
    assert_eq!(
        ids_of(messages(&ctl, &alice.access, "?since_ms=2000&until_ms=3000").await),
        ["run_2:0", "run_1:1"]
    );
    assert_eq!(
        ids_of(
            messages(
                &ctl,
                &alice.access,
                "?agent_id=agt_a&channel=email&status=sent"
            )
            .await
        ),
        ["run_1:0"]
    );
    assert!(
        messages(&ctl, &alice.access, "?until_ms=1000")
            .await
            .is_empty()
    );
    for bad in ["?channel=fax", "?status=lost"] {
        let (status, _) = call(
            &ctl,
            Method::GET,
            &format!("/v1/messages{bad}"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Bob sees his own only, whatever he asks for.
    assert_eq!(ids_of(messages(&ctl, &bob.access, "").await), ["run_3:0"]);
    assert!(
        messages(&ctl, &bob.access, "?agent_id=agt_a")
            .await
            .is_empty()
    );

    // Readers: templates:read or agents:read; neither is a 403.
    for (scopes, expected) in [
        (&["templates:read"][..], StatusCode::OK),
        (&["agents:read"][..], StatusCode::OK),
        (&["runs:read"][..], StatusCode::FORBIDDEN),
    ] {
        let key = api_key(&ctl, &alice, scopes).await;
        let (status, _) = call(&ctl, Method::GET, "/v1/messages", &key, None).await;
        assert_eq!(status, expected, "{scopes:?}");
    }
});

both!(
    message_log_arrives_with_usage_batches,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "z", Some("node-x")).await;
        let cred = ctl.node_credential("node-x").await;
        let log = vec![
            attempt("welcome", "email", "sent", None, 5_000),
            attempt("welcome", "email", "refused", Some("rate-limited"), 6_000),
        ];
        let batch = json!({
            "batch_id": "batch-1",
            "node_id": "node-x",
            "records": [usage("run_9", &agent, &alice.tenant_id, log)],
        });
        for _ in 0..2 {
            let resp = ctl
                .client
                .post(ctl.url("/v1/nodes/usage"))
                .bearer_auth(&cred)
                .header("Idempotency-Key", "batch-1")
                .json(&batch)
                .send()
                .await
                .expect("usage");
            assert!(
                resp.status().is_success(),
                "{}",
                resp.text().await.unwrap_or_default()
            );
        }
        let all = messages(&ctl, &alice.access, "").await;
        let ids: Vec<String> = all.iter().map(|m| s(&m["id"])).collect();
        assert_eq!(ids, ["run_9:1", "run_9:0"], "stored once, newest first");
        assert_eq!(all[0]["node_id"], "node-x");
        assert_eq!(all[0]["reason"], "rate-limited");
    }
);

// ---- isolation ---------------------------------------------------------------------

both!(another_tenant_s_ids_answer_404, |ctl: Control| async move {
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let t = create_template(&ctl, &alice.access, welcome("welcome")).await;
    let id = s(&t["id"]);
    // An agent row of Alice's (no node is needed to prove isolation).
    sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, kind, parent_agent_id, component, limits, \
         grants, paused, node_id, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, 'a', 'main', NULL, $3, '{}', $4, 0, NULL, 1, 1)",
    )
    .bind("agt_alice")
    .bind(&alice.tenant_id)
    .bind("ab".repeat(32))
    .bind(json!({ "recipients": ["ada@example.com"] }).to_string())
    .execute(ctl.state.db.pool())
    .await
    .expect("agent row");

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/templates/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/templates/{id}"),
            Some(json!({ "body": "mine" })),
        ),
        (Method::DELETE, format!("/v1/templates/{id}"), None),
        (Method::POST, format!("/v1/templates/{id}/approve"), None),
        (
            Method::POST,
            format!("/v1/templates/{id}/reject"),
            Some(json!({ "reason": "r" })),
        ),
        (Method::GET, "/v1/agents/agt_alice/recipients".into(), None),
        (
            Method::PUT,
            "/v1/agents/agt_alice/recipients".into(),
            Some(json!({ "recipients": ["eve@evil.test"] })),
        ),
        (
            Method::PUT,
            "/v1/agents/agt_alice/recipients".into(),
            Some(json!({ "recipients": ["bad"] })),
        ),
        (
            Method::DELETE,
            "/v1/agents/agt_alice/recipients/ada@example.com".into(),
            None,
        ),
    ];
    for (method, path, body) in routes {
        let (status, answer) = call(&ctl, method.clone(), &path, &bob.access, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(!answer.to_string().contains("Welcome"), "{answer}");
    }
    let (_, list) = call(&ctl, Method::GET, "/v1/templates", &bob.access, None).await;
    assert_eq!(list["items"], json!([]));
    // Nothing changed for Alice.
    let (_, mine) = call(
        &ctl,
        Method::GET,
        &format!("/v1/templates/{id}"),
        &alice.access,
        None,
    )
    .await;
    assert_eq!(mine, t);
    let (_, recipients) = call(
        &ctl,
        Method::GET,
        "/v1/agents/agt_alice/recipients",
        &alice.access,
        None,
    )
    .await;
    assert_eq!(recipients["recipients"], json!(["ada@example.com"]));
});

// ---- recipients and the node ---------------------------------------------------------

both!(
    recipients_are_checked_stored_and_deployed,
    |ctl: Control| async move {
        let node = start_node(&ctl).await;
        let alice = ctl.register("alice").await;
        let carol = ctl.register("carol").await;
        let carol_token = join(&ctl, &alice, &carol, "member").await;
        let agent = create_agent(
            &ctl,
            &alice.access,
            "mailer",
            &std::fs::read(guests::EMAIL_BOT).expect("guest"),
            json!({ "channels": ["email"], "recipients": ["ada@example.com"] }),
        )
        .await;
        let id = s(&agent["id"]);
        let path = format!("/v1/agents/{id}/recipients");

        let (status, list) = call(&ctl, Method::GET, &path, &carol_token, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            list,
            json!({ "agent_id": id, "recipients": ["ada@example.com"] })
        );

        for bad in [
            json!(["Ada <ada@example.com>"]),
            json!(["ada@example.com\r\nBcc: eve@evil.test"]),
            json!(["*@"]),
            json!(["+123"]),
            json!(["not an address"]),
            json!([""]),
        ] {
            let (status, answer) = call(
                &ctl,
                Method::PUT,
                &path,
                &alice.access,
                Some(json!({ "recipients": bad })),
            )
            .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {answer}");
            assert_eq!(code(&answer), "invalid");
            assert!(answer["details"]["recipient"].is_string(), "{answer}");
        }
        let many: Vec<String> = (0..257).map(|i| format!("u{i}@example.com")).collect();
        let (status, _) = call(
            &ctl,
            Method::PUT,
            &path,
            &alice.access,
            Some(json!({ "recipients": many })),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, _) = call(
            &ctl,
            Method::PUT,
            &path,
            &carol_token,
            Some(json!({ "recipients": [] })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "members may not change grants"
        );

        let (status, set) = call(
        &ctl,
        Method::PUT,
        &path,
        &alice.access,
        Some(json!({ "recipients": ["bob@example.com", "BOB@example.com", "*@corp.test", "+14155550100"] })),
    )
    .await;
        assert_eq!(status, StatusCode::OK, "{set}");
        let expected = json!(["bob@example.com", "*@corp.test", "+14155550100"]);
        assert_eq!(set["recipients"], expected);
        // Stored in the agent's grants and on its node.
        let (_, stored) = call(
            &ctl,
            Method::GET,
            &format!("/v1/agents/{id}"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(stored["grants"]["recipients"], expected);
        assert_eq!(
            deployment(&ctl, &node, &id).await["grants"]["recipients"],
            expected
        );

        let (status, _) = call(
            &ctl,
            Method::DELETE,
            &format!("{path}/%2A%40CORP.test"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, answer) = call(
            &ctl,
            Method::DELETE,
            &format!("{path}/%2A%40corp.test"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        let (status, _) = call(
            &ctl,
            Method::DELETE,
            &format!("{path}/%2B14155550100"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, list) = call(&ctl, Method::GET, &path, &alice.access, None).await;
        assert_eq!(list["recipients"], json!(["bob@example.com"]));
        assert_eq!(
            deployment(&ctl, &node, &id).await["grants"]["recipients"],
            json!(["bob@example.com"])
        );

        let audit = audit_actions(&ctl, &alice.access).await;
        let actions: Vec<String> = audit
            .iter()
            .filter(|e| e["detail"]["agent_id"] == json!(id))
            .map(|e| s(&e["action"]))
            .collect();
        assert_eq!(
            actions,
            [
                "agent_created",
                "agent_recipients_set",
                "agent_recipient_removed",
                "agent_recipient_removed"
            ]
        );
        node.shutdown().await;
    }
);

both!(
    approved_templates_reach_the_node_and_sends_are_logged,
    |ctl: Control| async move {
        let node = start_node(&ctl).await;
        let alice = ctl.register("alice").await;
        let t = create_template(&ctl, &alice.access, welcome("welcome")).await;
        let id = s(&t["id"]);
        let agent = create_agent(
            &ctl,
            &alice.access,
            "mailer",
            &std::fs::read(guests::EMAIL_BOT).expect("guest"),
            json!({ "channels": ["email"], "templates": [id], "recipients": ["*@example.com"] }),
        )
        .await;
        let agent_id = s(&agent["id"]);
        let run = |name: &'static str| {
            let ctl = &ctl;
            let token = alice.access.clone();
            let path = format!("/v1/agents/{agent_id}/runs?wait=true");
            async move {
                let (status, run) = call(
                    ctl,
                    Method::POST,
                    &path,
                    &token,
                    Some(json!({ "input": { "to": "ada@example.com", "name": name } })),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{run}");
                run
            }
        };
        let error_of = |run: &Value| run["outcome"].to_string();

        // A draft is on the node, but not usable; node.toml's `welcome` is not
        // used for this agent either.
        let spec = deployment(&ctl, &node, &agent_id).await;
        assert_eq!(spec["grants"]["templates"], json!(["welcome"]));
        assert_eq!(spec["grants"]["message_templates"][0]["approved"], false);
        let refused = run("ada").await;
        assert!(
            error_of(&refused).contains("template-not-approved"),
            "{refused}"
        );
        assert_eq!(outbox_files(&ctl), 0);

        // Approved: the node has it at once and the guest sends it.
        let (status, _) = call(
            &ctl,
            Method::POST,
            &format!("/v1/templates/{id}/approve"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let spec = deployment(&ctl, &node, &agent_id).await;
        assert_eq!(spec["grants"]["message_templates"][0]["approved"], true);
        assert_eq!(
            spec["grants"]["message_templates"][0]["max_lengths"],
            json!({ "name": 32 })
        );
        let sent = run("ada lovelace").await;
        assert_eq!(sent["outcome"]["status"], "completed", "{sent}");
        // The node's usage of the run carries the attempt.
        let attempt = &sent["usage"]["message_log"][0];
        assert_eq!(attempt["status"], "sent", "{sent}");
        assert_eq!(attempt["template_id"], "welcome");
        assert_eq!(attempt["recipient"], "ada@example.com");
        assert!(attempt["provider_id"].is_string(), "{sent}");
        assert_eq!(
            refused["usage"]["message_log"][0]["reason"], "template-not-approved",
            "{refused}"
        );
        assert_eq!(outbox_files(&ctl), 1);
        let outbox = std::fs::read_dir(ctl.dir.path().join("node").join("outbox"))
            .expect("outbox")
            .filter_map(Result::ok)
            .map(|e| std::fs::read_to_string(e.path()).expect("file"))
            .collect::<String>();
        assert!(
            outbox.contains("Hello Ada Lovelace!"),
            "the control plane's template: {outbox}"
        );
        // The per-variable limit travels with it.
        let too_long = run("a name longer than thirty-two characters").await;
        assert!(
            error_of(&too_long).contains("variable-invalid"),
            "{too_long}"
        );

        // An edit is a draft again, everywhere.
        let (status, _) = call(
            &ctl,
            Method::PATCH,
            &format!("/v1/templates/{id}"),
            &alice.access,
            Some(json!({ "body": "Changed {{ name }}" })),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let refused_again = run("ada").await;
        assert!(
            error_of(&refused_again).contains("template-not-approved"),
            "{refused_again}"
        );

        // Not granted: the same template is "not found" for the agent.
        let (status, _) = call(
            &ctl,
            Method::POST,
            &format!("/v1/templates/{id}/approve"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, answer) = call(
            &ctl,
            Method::PATCH,
            &format!("/v1/agents/{agent_id}"),
            &alice.access,
            Some(json!({ "grants": { "channels": ["email"], "templates": [],
                                 "recipients": ["*@example.com"] } })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let ungranted = run("ada").await;
        assert!(
            error_of(&ungranted).contains("template-not-found"),
            "{ungranted}"
        );
        // Granted by name this time, and approved: sent.
        let (status, _) = call(
            &ctl,
            Method::PATCH,
            &format!("/v1/agents/{agent_id}"),
            &alice.access,
            Some(
                json!({ "grants": { "channels": ["email"], "templates": ["welcome"],
                                 "recipients": ["*@example.com"] } }),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let sent_again = run("ada").await;
        assert_eq!(sent_again["outcome"]["status"], "completed", "{sent_again}");
        // Deleted: not found.
        let (status, _) = call(
            &ctl,
            Method::DELETE,
            &format!("/v1/templates/{id}"),
            &alice.access,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let deleted = run("ada").await;
        assert!(
            error_of(&deleted).contains("template-not-found"),
            "{deleted}"
        );
        assert_eq!(outbox_files(&ctl), 2);

        // Every attempt reaches the message log through the node's usage
        // reports.
        let log = eventually(
            "the attempts in the message log",
            Duration::from_secs(30),
            || async {
                let items = messages(&ctl, &alice.access, &format!("?agent_id={agent_id}")).await;
                (items.len() == 7).then_some(items)
            },
        )
        .await;
        let summary: Vec<(String, String)> = log
            .iter()
            .rev()
            .map(|m| {
                (
                    s(&m["status"]),
                    m["reason"].as_str().unwrap_or("-").to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            ("refused", "template-not-approved"),
            ("sent", "-"),
            ("refused", "variable-invalid"),
            ("refused", "template-not-approved"),
            ("refused", "template-not-found"),
            ("sent", "-"),
            ("refused", "template-not-found"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        assert_eq!(summary, expected);
        assert!(
            log.iter()
                .all(|m| m["template_id"] == "welcome" && m["channel"] == "email")
        );
        assert!(
            log.iter()
                .filter(|m| m["status"] == "sent")
                .all(|m| m["provider_id"].is_string())
        );
        let sent_only = messages(&ctl, &alice.access, "?status=sent").await;
        assert_eq!(sent_only.len(), 2);
        node.shutdown().await;
    }
);

/// A node that was down when a template was approved gets it when it is
/// back: the monitor's reconciliation compares each deployment with what
/// it should be, not only whether it exists.
async fn a_node_that_missed_an_approval_catches_up(dialect: Dialect) {
    let ctl = Control::start_with(dialect, |c| c.node_heartbeat_timeout_secs = 2).await;
    let node = start_node(&ctl).await;
    let alice = ctl.register("alice").await;
    let operator = ctl.operator().await;
    let t = create_template(&ctl, &alice.access, welcome("welcome")).await;
    let id = s(&t["id"]);
    let agent = create_agent(
        &ctl,
        &alice.access,
        "mailer",
        &std::fs::read(guests::EMAIL_BOT).expect("guest"),
        json!({ "channels": ["email"], "templates": [id], "recipients": ["*@example.com"] }),
    )
    .await;
    let agent_id = s(&agent["id"]);
    node.shutdown().await;
    eventually("the node marked down", Duration::from_secs(30), || async {
        let (_, nodes) = call(&ctl, Method::GET, "/v1/nodes", &operator.access, None).await;
        (nodes["items"][0]["status"] == "down").then_some(())
    })
    .await;
    // Approved while the node is away: nothing to redeploy to.
    let (status, _) = call(
        &ctl,
        Method::POST,
        &format!("/v1/templates/{id}/approve"),
        &alice.access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Back, with its stored deployment (the draft), on a new port (which
    // the harness, as the operator, gives the control plane).
    let node = start_node(&ctl).await;
    eventually(
        "the approval on the node",
        Duration::from_secs(30),
        || async {
            let spec = deployment(&ctl, &node, &agent_id).await;
            (spec["grants"]["message_templates"][0]["approved"] == true).then_some(())
        },
    )
    .await;
    let (status, run) = call(
        &ctl,
        Method::POST,
        &format!("/v1/agents/{agent_id}/runs?wait=true"),
        &alice.access,
        Some(json!({ "input": { "to": "ada@example.com", "name": "ada" } })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["outcome"]["status"], "completed", "{run}");
    node.shutdown().await;
}

mod a_node_that_missed_an_approval_catches_up {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_node_that_missed_an_approval_catches_up(Dialect::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_node_that_missed_an_approval_catches_up(Dialect::Postgres).await;
    }
}
