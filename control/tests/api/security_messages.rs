//! What a tenant may send (issue 18), end to end with a node in this
//! process and a guest that sends email, on SQLite and PostgreSQL: with
//! `[templates] operator_review = "first"` a new tenant's approved template
//! waits for a platform operator (and cannot be sent meanwhile), and the
//! tenant's `messages_per_day` is counted before delivery (a refused
//! message is `rate-limited` for the guest and never sent).

use crate::common;

use common::{Control, create_agent, start_node_in_process};
use delta_guest_artifacts as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NODE_ID: &str = "messages-node";

fn welcome(name: &str) -> Value {
    json!({
        "name": name,
        "channel": "email",
        "subject": "Welcome, {{ name }}",
        "body": "Hello {{ name }}!",
        "variables": { "name": 32 },
    })
}

fn outbox_files(ctl: &Control) -> usize {
    std::fs::read_dir(ctl.dir.path().join("node").join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn start_node(ctl: &Control) -> delta_node::server::RunningNode {
    let outbox = ctl.dir.path().join("node").join("outbox");
    let extra = format!(
        r#"[messaging]
[messaging.email]
from = "Delta <noreply@delta.test>"
cost_tokens = 0
rate_limit = {{ per_minute = 600, burst = 100 }}
backend = {{ kind = "outbox", dir = "{outbox}" }}
"#,
        outbox = outbox.display(),
    );
    start_node_in_process(ctl, NODE_ID, &extra).await
}

fn tweak(c: &mut delta_control::config::ControlConfig) {
    c.templates.operator_review = delta_control::config::OperatorReview::First;
    c.quotas.messages_per_day = 2;
}

both_with!(
    a_new_tenant_s_template_waits_for_an_operator_and_messages_stop_at_the_daily_quota,
    tweak,
    |ctl: Control| async move {
        let node = start_node(&ctl).await;
        let alice = ctl.register("alice").await;
        let operator = ctl.operator_token().await;
        let call = |method: Method, path: String, token: String, body: Option<Value>| {
            let ctl = &ctl;
            async move { ctl.call(method, &path, Some(&token), body).await }
        };
        let (status, t) = call(
            Method::POST,
            "/v1/templates".into(),
            alice.access.clone(),
            Some(welcome("welcome")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{t}");
        let id = t["id"].as_str().expect("id").to_owned();
        let agent = create_agent(
            &ctl,
            &alice.access,
            "mailer",
            &std::fs::read(guests::EMAIL_BOT).expect("guest"),
            json!({ "channels": ["email"], "templates": [id], "recipients": ["*@example.com"] }),
        )
        .await;
        let agent_id = agent["id"].as_str().expect("id").to_owned();
        let run = || {
            let path = format!("/v1/agents/{agent_id}/runs?wait=true");
            let token = alice.access.clone();
            let call = &call;
            async move {
                let (status, run) = call(
                    Method::POST,
                    path,
                    token,
                    Some(json!({ "input": { "to": "ada@example.com", "name": "ada" } })),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{run}");
                run
            }
        };

        // The tenant's admin approves: it waits for the operator.
        let (status, t) = call(
            Method::POST,
            format!("/v1/templates/{id}/approve"),
            alice.access.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(t["status"], "pending_operator");
        let refused = run().await;
        assert!(
            refused["outcome"]
                .to_string()
                .contains("template-not-approved"),
            "{refused}"
        );
        assert_eq!(outbox_files(&ctl), 0);
        // Not the tenant admin's to approve again, nor to approve as operator.
        let (status, answer) = call(
            Method::POST,
            format!("/v1/templates/{id}/approve"),
            alice.access.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["code"], "pending_operator");
        let (status, answer) = call(
            Method::POST,
            format!("/v1/operator/templates/{id}/approve"),
            alice.access.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["code"], "operator_only");

        // The operator sees it waiting and approves it: it is sent.
        let (status, page) = call(
            Method::GET,
            "/v1/operator/templates".into(),
            operator.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"][0]["id"], id.as_str(), "{page}");
        let (status, t) = call(
            Method::POST,
            format!("/v1/operator/templates/{id}/approve"),
            operator.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(t["status"], "approved");
        let sent = run().await;
        assert_eq!(sent["outcome"]["status"], "completed", "{sent}");
        assert_eq!(outbox_files(&ctl), 1);

        // Trusted now ("first"): the tenant's next template needs no operator.
        let (_, second) = call(
            Method::POST,
            "/v1/templates".into(),
            alice.access.clone(),
            Some(welcome("second")),
        )
        .await;
        let (status, second) = call(
            Method::POST,
            format!(
                "/v1/templates/{}/approve",
                second["id"].as_str().expect("id")
            ),
            alice.access.clone(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["status"], "approved");

        // The daily quota: one more message goes, the next is refused
        // before delivery and the guest sees it rate-limited.
        let sent = run().await;
        assert_eq!(sent["outcome"]["status"], "completed", "{sent}");
        assert_eq!(outbox_files(&ctl), 2);
        let limited = run().await;
        assert_eq!(
            limited["usage"]["message_log"][0]["reason"], "rate-limited",
            "{limited}"
        );
        assert_eq!(outbox_files(&ctl), 2, "a message past the quota was sent");
        let (status, quotas) = call(
            Method::GET,
            format!("/v1/operator/tenants/{}/quotas", alice.tenant_id),
            operator,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{quotas}");
        assert_eq!(quotas["used"]["messages_per_day"], 2);
        node.shutdown().await;
    }
);

both_with!(
    with_review_of_all_templates_every_approval_waits_and_an_operator_may_reject,
    |c: &mut delta_control::config::ControlConfig| {
        c.templates.operator_review = delta_control::config::OperatorReview::All;
    },
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let operator = ctl.operator_token().await;
        let mut ids = Vec::new();
        for name in ["first", "second"] {
            let (status, t) = ctl
                .call(
                    Method::POST,
                    "/v1/templates",
                    Some(&alice.access),
                    Some(welcome(name)),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{t}");
            let id = t["id"].as_str().expect("id").to_owned();
            let (status, t) = ctl
                .call(
                    Method::POST,
                    &format!("/v1/templates/{id}/approve"),
                    Some(&alice.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{t}");
            assert_eq!(t["status"], "pending_operator", "{name}: {t}");
            ids.push(id);
        }
        // The operator approves the first: the second still waits ("all").
        let (status, t) = ctl
            .call(
                Method::POST,
                &format!("/v1/operator/templates/{}/approve", ids[0]),
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(t["status"], "approved");
        let (_, page) = ctl
            .call(Method::GET, "/v1/operator/templates", Some(&operator), None)
            .await;
        let pending: Vec<&str> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        assert_eq!(pending, vec![ids[1].as_str()], "{page}");
        // Rejected by the operator; an approved one is not theirs to reject.
        let (status, t) = ctl
            .call(
                Method::POST,
                &format!("/v1/operator/templates/{}/reject", ids[1]),
                Some(&operator),
                Some(json!({ "reason": "phishing" })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{t}");
        assert_eq!(t["status"], "rejected");
        assert_eq!(t["rejection_reason"], "phishing");
        let (status, answer) = ctl
            .call(
                Method::POST,
                &format!("/v1/operator/templates/{}/reject", ids[0]),
                Some(&operator),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["code"], "not_pending_operator");
        // The tenant sees both decisions.
        let (_, listed) = ctl
            .call(
                Method::GET,
                "/v1/templates?status=pending_operator",
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(listed["items"], json!([]), "{listed}");
    }
);
