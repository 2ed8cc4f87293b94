//! An agent's deploy history (`GET /v1/agents/{id}/deployments`) and the
//! audit log's filters (`GET /v1/audit?action=&user_id=&since_ms=&until_ms=`),
//! tenant-scoped, on SQLite and PostgreSQL.

use std::time::Duration;

use delta_guest_artifacts as guests;

use super::common::{create_agent, start_node_in_process};
use super::*;

async fn get(ctl: &Control, who: &Session, path: &str) -> (StatusCode, Value) {
    ctl.call(Method::GET, path, Some(&who.access), None).await
}

both!(
    deployments_are_listed_newest_first_per_tenant,
    |ctl: Control| async move {
        let _node = start_node_in_process(&ctl, "history-node", "").await;
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let hello = std::fs::read(guests::HELLO_AGENT).expect("guest");
        let agent = create_agent(&ctl, &alice.access, "historian", &hello, json!({})).await;
        let id = agent["id"].as_str().expect("id").to_owned();
        let path = format!("/v1/agents/{id}/deployments");
        // A change of limits redeploys it.
        let (status, updated) = ctl
            .call(
                Method::PATCH,
                &format!("/v1/agents/{id}"),
                Some(&alice.access),
                Some(json!({ "limits": { "fuel": 5_000_000 } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");

        let (status, page) = get(&ctl, &alice, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        let reasons: Vec<&str> = items.iter().filter_map(|d| d["reason"].as_str()).collect();
        assert_eq!(reasons, ["updated", "created"], "{page}");
        assert_eq!(items[0]["limits"]["fuel"], 5_000_000, "{page}");
        assert_eq!(items[0]["node_id"], "history-node");
        assert_eq!(items[0]["component"], agent["component"]);
        assert_eq!(items[1]["user_id"].as_str(), Some(alice.user_id.as_str()));
        assert!(items[0]["request_id"].is_string(), "{page}");
        // One a page: the cursor reaches the older one.
        let (_, first) = get(&ctl, &alice, &format!("{path}?limit=1")).await;
        assert_eq!(first["items"][0]["reason"], "updated");
        let cursor = first["next_cursor"]
            .as_str()
            .expect("a next page")
            .to_owned();
        let (_, second) = get(&ctl, &alice, &format!("{path}?limit=1&cursor={cursor}")).await;
        assert_eq!(second["items"][0]["reason"], "created", "{second}");
        // Another tenant's agent is not there for bob, like a missing one.
        let (status, e) = get(&ctl, &bob, &path).await;
        assert_eq!(
            (status, e["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{e}"
        );
        let (status, _) = get(&ctl, &alice, "/v1/agents/agt_nope/deployments").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

both!(
    the_audit_log_filters_by_action_user_and_time,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        // Past the registration's own entries (same millisecond otherwise).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = now_ms();
        // Two keys made and one revoked: three entries of two actions.
        let mut keys = Vec::new();
        for name in ["one", "two"] {
            let (status, key) = ctl
                .call(
                    Method::POST,
                    "/v1/api-keys",
                    Some(&alice.access),
                    Some(json!({ "name": name })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{key}");
            keys.push(key["id"].as_str().expect("id").to_owned());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let middle = now_ms();
        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/api-keys/{}", keys[0]),
                Some(&alice.access),
                None,
            )
            .await;
        assert!(status.is_success());
        let actions = |v: &Value| -> Vec<String> {
            v["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|e| e["action"].as_str().map(str::to_owned))
                .collect()
        };
        let (status, created) = get(&ctl, &alice, "/v1/audit?action=api_key_created").await;
        assert_eq!(status, StatusCode::OK, "{created}");
        assert_eq!(actions(&created), ["api_key_created", "api_key_created"]);
        let (_, revoked) = get(&ctl, &alice, &format!("/v1/audit?since_ms={middle}")).await;
        assert_eq!(actions(&revoked), ["api_key_revoked"], "{revoked}");
        let (_, early) = get(
            &ctl,
            &alice,
            &format!("/v1/audit?since_ms={before}&until_ms={middle}"),
        )
        .await;
        assert_eq!(
            actions(&early),
            ["api_key_created", "api_key_created"],
            "{early}"
        );
        let (_, mine) = get(
            &ctl,
            &alice,
            &format!("/v1/audit?user_id={}&action=api_key_revoked", alice.user_id),
        )
        .await;
        assert_eq!(actions(&mine), ["api_key_revoked"]);
        let (_, nobody) = get(&ctl, &alice, "/v1/audit?user_id=usr_nobody").await;
        assert_eq!(actions(&nobody), Vec::<String>::new());
        // Filters page like the whole log.
        let (_, one) = get(&ctl, &alice, "/v1/audit?action=api_key_created&limit=1").await;
        let cursor = one["next_cursor"].as_str().expect("next").to_owned();
        let (_, two) = get(
            &ctl,
            &alice,
            &format!("/v1/audit?action=api_key_created&limit=1&cursor={cursor}"),
        )
        .await;
        assert_eq!(actions(&two), ["api_key_created"]);
        assert_ne!(one["items"][0]["id"], two["items"][0]["id"]);
        // Bad filters are refused, never 500s: out of their pattern 422 (as
        // the message log's), not a number at all 400.
        for (bad, want) in [
            ("action=DROP%20TABLE", StatusCode::UNPROCESSABLE_ENTITY),
            ("user_id=a%20b", StatusCode::UNPROCESSABLE_ENTITY),
            ("since_ms=-1", StatusCode::UNPROCESSABLE_ENTITY),
            ("since_ms=soon", StatusCode::BAD_REQUEST),
        ] {
            let (status, e) = get(&ctl, &alice, &format!("/v1/audit?{bad}")).await;
            assert_eq!(status, want, "{bad}: {e}");
        }
    }
);
