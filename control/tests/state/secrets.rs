//! The secrets vault: write-only values sealed with AES-256-GCM, names and
//! times listed, tenant-scoped; without a vault key every route is 501.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_with;
use crate::common::{Control, with_vault};

both_with!(
    secrets_are_sealed_write_only_and_tenant_scoped,
    with_vault,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let eve = ctl.register("eve").await;
        let plaintext = "sk-live-0123456789-PLAINTEXT";
        let (status, info) = ctl
            .call(
                Method::PUT,
                "/v1/secrets/API_TOKEN",
                Some(&alice.access),
                Some(json!({ "value": plaintext })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{info}");
        assert_eq!(info["name"], "API_TOKEN");
        assert!(!info.to_string().contains(plaintext));
        // Replaced: a fresh nonce, the same creation time.
        let (status, again) = ctl
            .call(
                Method::PUT,
                "/v1/secrets/API_TOKEN",
                Some(&alice.access),
                Some(json!({ "value": plaintext })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["created_at_ms"], info["created_at_ms"]);

        // The row holds no plaintext, in any column.
        let rows = sqlx::query("SELECT tenant_id, name, nonce, ciphertext FROM tenant_secrets")
            .fetch_all(ctl.state.db.pool())
            .await
            .expect("rows");
        assert_eq!(rows.len(), 1);
        use sqlx::Row as _;
        let nonce: Vec<u8> = rows[0].get("nonce");
        let sealed: Vec<u8> = rows[0].get("ciphertext");
        assert_eq!(nonce.len(), 12);
        for column in [&nonce, &sealed] {
            assert!(
                !column
                    .windows(plaintext.len())
                    .any(|w| w == plaintext.as_bytes())
            );
        }
        assert_eq!(sealed.len(), plaintext.len() + 16, "ciphertext and tag");

        let (status, page) = ctl
            .call(Method::GET, "/v1/secrets", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
        assert!(page["items"][0].get("value").is_none());
        assert!(!page.to_string().contains(plaintext));

        // Another tenant sees none of it and cannot delete it.
        let (_, theirs) = ctl
            .call(Method::GET, "/v1/secrets", Some(&eve.access), None)
            .await;
        assert_eq!(theirs["items"], json!([]));
        let (status, _) = ctl
            .call(
                Method::DELETE,
                "/v1/secrets/API_TOKEN",
                Some(&eve.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        for (name, value) in [("bad name", "x"), ("OK", ""), ("OK", "line\nbreak")] {
            let (status, _) = ctl
                .call(
                    Method::PUT,
                    &format!("/v1/secrets/{}", name.replace(' ', "%20")),
                    Some(&alice.access),
                    Some(json!({ "value": value })),
                )
                .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{name:?} {value:?}"
            );
        }
        let (status, _) = ctl
            .call(
                Method::DELETE,
                "/v1/secrets/API_TOKEN",
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(
                Method::DELETE,
                "/v1/secrets/API_TOKEN",
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

both_with!(
    without_a_vault_key_the_secret_routes_answer_501,
    |_c: &mut delta_control::config::ControlConfig| {},
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let (status, err) = ctl
            .call(
                Method::PUT,
                "/v1/secrets/X",
                Some(&alice.access),
                Some(json!({ "value": "v" })),
            )
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::NOT_IMPLEMENTED, Some("not_configured"))
        );
        let (status, _) = ctl
            .call(Method::GET, "/v1/secrets", Some(&alice.access), None)
            .await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    }
);
