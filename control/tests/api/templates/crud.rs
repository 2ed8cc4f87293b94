//! CRUD and validation, lists, and the approval flow (an edit returns a
//! template to draft; only admins review).

use super::*;

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
