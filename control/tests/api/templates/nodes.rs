//! Recipients and templates reaching a real node: what it may send, what
//! is logged, and a node that missed an approval catching up.

use super::*;

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
