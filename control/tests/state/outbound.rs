//! `http` from a real guest (`examples/http-caller`) on an in-process node
//! against a loopback server that records what it receives: a secret from
//! the vault arrives in the header and never in the run's output, logs or
//! usage; hosts off the allow-list, ungranted secrets and (by default)
//! loopback addresses, also behind a name, are refused before anything is
//! sent; redirects are returned, not followed.

use delta_guest_artifacts as guests;
use delta_test_servers::echo::EchoServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_with;
use crate::common::with_vault;
use crate::common::{Control, create_agent, start_node_in_process};

const SECRET: &str = "sk-test-5ecr3t-never-in-the-guest";

fn caller() -> Vec<u8> {
    std::fs::read(guests::HTTP_CALLER).expect("http-caller guest")
}

async fn call(ctl: &Control, token: &str, agent: &str, input: Value) -> Value {
    let (status, run) = ctl
        .call(
            Method::POST,
            &format!("/v1/agents/{agent}/runs?wait=true"),
            Some(token),
            Some(json!({ "input": input })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run
}

fn output(run: &Value) -> Value {
    serde_json::from_str(
        run["outcome"]["output"]
            .as_str()
            .unwrap_or_else(|| panic!("{run}")),
    )
    .expect("output JSON")
}

both_with!(
    secrets_reach_the_server_not_the_guest_and_the_allow_list_holds,
    with_vault,
    |ctl: Control| async move {
        let echo = EchoServer::start().await.expect("echo server");
        let base = format!("http://{}", echo.addr());
        let alice = ctl.register("alice").await;
        let (status, _) = ctl
            .call(
                Method::PUT,
                "/v1/secrets/API_TOKEN",
                Some(&alice.access),
                Some(json!({ "value": SECRET })),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let _node =
            start_node_in_process(&ctl, "node-a", "[http]\nallow_private_networks = true\n").await;
        let agent = create_agent(
            &ctl,
            &alice.access,
            "caller",
            &caller(),
            json!({ "http": { "hosts": [base.clone()], "secrets": ["API_TOKEN"] } }),
        )
        .await;
        let id = agent["id"].as_str().expect("id").to_owned();

        let run = call(&ctl, &alice.access, &id, json!({
            "url": format!("{base}/v1/things?x=1"),
            "method": "post",
            "headers": [["authorization", "Bearer {{secret:API_TOKEN}}"], ["x-plain", "visible"]],
            "body": "hello",
        }))
        .await;
        let out = output(&run);
        assert_eq!(out["status"], 200, "{run}");
        let got = echo.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].path, "/v1/things?x=1");
        assert_eq!(
            got[0].header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
        assert_eq!(got[0].header("x-plain"), Some("visible"));
        assert_eq!(got[0].body, b"hello");
        assert!(
            !run.to_string().contains(SECRET),
            "the run shows the secret: {run}"
        );
        let http = &run["usage"]["http"];
        assert_eq!(
            (http["requests"].as_u64(), http["bytes_sent"].as_u64()),
            (Some(1), Some(5)),
            "{run}"
        );

        // Refused before anything is sent: another host, another port,
        // https where http is granted, a secret the grant does not list.
        for (url, headers, code) in [
            ("http://example.com/".to_owned(), json!([]), "not-allowed"),
            (
                format!("http://127.0.0.1:{}/", echo.addr().port() + 1),
                json!([]),
                "not-allowed",
            ),
            (
                format!("https://{}/", echo.addr()),
                json!([]),
                "not-allowed",
            ),
            (
                format!("{base}/x"),
                json!([["authorization", "{{secret:OTHER}}"]]),
                "secret-not-allowed",
            ),
        ] {
            let run = call(
                &ctl,
                &alice.access,
                &id,
                json!({ "url": url, "headers": headers }),
            )
            .await;
            assert_eq!(output(&run)["error"], code, "{url}: {run}");
        }
        assert_eq!(echo.received().len(), 1, "nothing more reached the server");

        // A redirect comes back to the guest; it is not followed.
        echo.redirect_to("http://169.254.169.254/latest/meta-data");
        let run = call(
            &ctl,
            &alice.access,
            &id,
            json!({ "url": format!("{base}/redirect") }),
        )
        .await;
        let out = output(&run);
        assert_eq!(
            (out["status"].as_u64(), out["location"].as_str()),
            (Some(302), Some("http://169.254.169.254/latest/meta-data"))
        );
        assert_eq!(echo.received().len(), 2);

        // An answer over the node's limit (1 MiB by default).
        echo.big_body((1 << 20) + 1);
        let run = call(
            &ctl,
            &alice.access,
            &id,
            json!({ "url": format!("{base}/big") }),
        )
        .await;
        assert_eq!(output(&run)["error"], "too-large", "{run}");

        // Without the grant: not-allowed, and nothing sent.
        let plain = create_agent(&ctl, &alice.access, "plain", &caller(), json!({})).await;
        let run = call(
            &ctl,
            &alice.access,
            plain["id"].as_str().expect("id"),
            json!({ "url": format!("{base}/x") }),
        )
        .await;
        assert_eq!(output(&run)["error"], "not-allowed");
        assert_eq!(echo.received().len(), 3);

        // The node may resolve only granted names of agents placed on it.
        let credential = ctl.node_credential("node-a").await;
        let (status, err) = ctl
            .call(
                Method::POST,
                "/v1/nodes/secrets/resolve",
                Some(&credential),
                Some(json!({ "agent_id": plain["id"], "names": ["API_TOKEN"] })),
            )
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("secret_not_granted"))
        );
        let other = ctl.node_credential("node-z").await;
        let (status, _) = ctl
            .call(
                Method::POST,
                "/v1/nodes/secrets/resolve",
                Some(&other),
                Some(json!({ "agent_id": id, "names": ["API_TOKEN"] })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "another node");
    }
);

both_with!(
    loopback_is_refused_by_default_even_behind_a_name,
    with_vault,
    |ctl: Control| async move {
        let echo = EchoServer::start().await.expect("echo server");
        let port = echo.addr().port();
        let alice = ctl.register("alice").await;
        // `[http]` with its defaults: private networks are off.
        let _node = start_node_in_process(&ctl, "node-a", "[http]\n").await;
        let agent = create_agent(
            &ctl,
            &alice.access,
            "caller",
            &caller(),
            json!({ "http": { "hosts": [format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}")] } }),
        )
        .await;
        let id = agent["id"].as_str().expect("id");
        for host in ["127.0.0.1", "localhost"] {
            let run = call(
                &ctl,
                &alice.access,
                id,
                json!({ "url": format!("http://{host}:{port}/") }),
            )
            .await;
            assert_eq!(output(&run)["error"], "blocked-address", "{host}: {run}");
        }
        assert!(echo.received().is_empty(), "nothing reached loopback");
    }
);
