//! JavaScript agents through the control plane: a module uploaded with
//! `Content-Type: text/javascript` is prepared into a component, stored and
//! deployed like any other; bad scripts are 422 `invalid_script` with the
//! reason, oversized ones 413.

use crate::common;

use common::{Control, start_node_in_process};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HELLO_JS: &str = include_str!("../../../examples/js/hello.js");

async fn upload_script(ctl: &Control, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(token)
        .header("content-type", "text/javascript; charset=utf-8")
        // An oversized upload is answered before its body is read.
        .header("connection", "close")
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

both!(
    javascript_agents_deploy_and_run_through_the_api,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let node = start_node_in_process(&ctl, "js-node", "").await;

        let (status, component) = upload_script(&ctl, &alice.access, HELLO_JS.into()).await;
        assert_eq!(status, StatusCode::CREATED, "{component}");
        let sha = component["sha256"].as_str().expect("sha256").to_owned();
        // Content-addressed: the same script again is the same component.
        let (status, again) = upload_script(&ctl, &alice.access, HELLO_JS.into()).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["sha256"], sha.as_str());

        let agent = common::bounties::post_agent(
            &ctl,
            &alice,
            json!({ "name": "hello-js", "kind": "main", "component": sha }),
        )
        .await;
        let id = agent["id"].as_str().expect("id");
        let (status, run) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{id}/runs?wait=true"),
                Some(&alice.access),
                Some(json!({ "input": { "name": "Ada" } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(run["outcome"]["status"], "completed", "{run}");
        assert_eq!(
            run["outcome"]["output"], r#"{"greeting":"Hello, Ada!"}"#,
            "{run}"
        );

        // Bad scripts: refused with the reason, nothing stored.
        let (status, err) = upload_script(
            &ctl,
            &alice.access,
            b"export function run() {\n  return 1 +;\n}\n".to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["code"], "invalid_script", "{err}");
        assert_eq!(err["details"]["code"], "js-syntax-error", "{err}");
        assert_eq!(err["details"]["line"], 2, "{err}");
        for (source, detail) in [
            (b"export const x = 1;".to_vec(), "js-no-entry"),
            (
                b"import fs from \"fs\";\nexport function run() {}".to_vec(),
                "js-load-error",
            ),
            (
                b"while (true) {}\nexport function run() {}".to_vec(),
                "js-load-limit",
            ),
        ] {
            let (status, err) = upload_script(&ctl, &alice.access, source).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
            assert_eq!(err["details"]["code"], detail, "{err}");
        }
        let (status, err) = upload_script(&ctl, &alice.access, vec![0xff, 0xfe, 0x00]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["code"], "invalid_script", "{err}");
        // Over the preparer's source limit (4 MiB), under max_component_bytes.
        let big = format!("export function run() {{}}\n//{}", "x".repeat(5 << 20));
        let (status, err) = upload_script(&ctl, &alice.access, big.into_bytes()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        let (_, page) = ctl
            .call(Method::GET, "/v1/components", Some(&alice.access), None)
            .await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
        node.shutdown().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_without_a_preparer_are_not_configured_and_components_still_upload() {
    let ctl = Control::start_without_scripts(common::Dialect::Sqlite).await;
    let alice = ctl.register("alice").await;
    let (status, body) = upload_script(&ctl, &alice.access, HELLO_JS.into()).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["code"], "not_configured", "{body}");
    let resp = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice.access)
        .header("content-type", "application/wasm")
        .body(common::fake_component("no-scripts"))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
}
