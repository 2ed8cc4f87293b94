//! `kv`, `http` and `agents` from a JavaScript agent (the `delta` module's
//! bindings, `examples/js-engine/src/prelude.js` and `js-agent`), on an
//! in-process node: the same grants, errors and usage as a Rust agent.

use std::time::Duration;

use delta_test_servers::echo::EchoServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_with;
use crate::common::{
    Control, Session, eventually, start_node_in_process, upload_script, with_vault,
};

const SECRET: &str = "sk-js-5ecr3t-never-in-the-guest";

/// Uses every tool once and reports what it saw; a run a message started
/// answers the message.
const TOOLS_JS: &str = r#"
import { kv, http, agents, DeltaError } from "delta";

function code(f) {
  try { f(); return null; } catch (e) { return e instanceof DeltaError ? { code: e.code, current: e.current ?? null } : String(e); }
}

export function run(task) {
  const input = task.input;
  if (input.message_id) return { got: input.message, from: input.from.agent_name };
  const counted = kv.update("runs", (old) => String(Number(old ?? "0") + 1));
  const entry = kv.get("runs");
  kv.set("bin", new Uint8Array([255, 0, 65]));
  const bin = kv.get("bin").value;
  const answer = http.request({
    method: "POST",
    url: input.url,
    headers: { authorization: "Bearer {{secret:API_TOKEN}}" },
    body: "ping",
  });
  return {
    runs: entry.value,
    sameVersion: counted.version === entry.version,
    bin: bin instanceof Uint8Array ? Array.from(bin) : bin,
    keys: kv.list("", { limit: 10 }).keys,
    conflict: code(() => kv.compareAndSwap("runs", entry.version + 100, "x")),
    deleted: kv.delete("bin"),
    status: answer.status,
    offList: code(() => http.request("http://example.com/")),
    sent: agents.send("listener", { hello: "js" }),
    notAllowed: code(() => agents.send("stranger", {})),
  };
}
"#;

async fn script_agent(ctl: &Control, who: &Session, name: &str, grants: Value) -> String {
    let (status, component) = upload_script(ctl, &who.access, TOOLS_JS).await;
    assert!(status.is_success(), "{status} {component}");
    let agent = crate::common::bounties::post_agent(
        ctl,
        who,
        json!({ "name": name, "kind": "main", "component": component["sha256"],
                "grants": grants }),
    )
    .await;
    agent["id"].as_str().expect("id").to_owned()
}

fn output(run: &Value) -> Value {
    let text = run["outcome"]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("the run did not complete: {run}"));
    serde_json::from_str(text).expect("output JSON")
}

both_with!(
    a_javascript_agent_keeps_state_calls_out_and_messages_another_agent,
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
            start_node_in_process(&ctl, "js-node", "[http]\nallow_private_networks = true\n").await;
        let listener = script_agent(&ctl, &alice, "listener", json!({})).await;
        let tools = script_agent(
            &ctl,
            &alice,
            "tools",
            json!({ "kv": true, "agents": ["listener"],
                    "http": { "hosts": [&base], "secrets": ["API_TOKEN"] } }),
        )
        .await;
        for n in 1..=2 {
            let (status, run) = ctl
                .call(
                    Method::POST,
                    &format!("/v1/agents/{tools}/runs?wait=true"),
                    Some(&alice.access),
                    Some(json!({ "input": { "url": format!("{base}/hook") } })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{run}");
            let out = output(&run);
            assert_eq!(out["runs"], n.to_string(), "{out}");
            assert_eq!(out["sameVersion"], true);
            assert_eq!(out["bin"], json!([255, 0, 65]), "non-UTF-8 bytes kept");
            assert_eq!(out["keys"], json!(["bin", "runs"]));
            assert_eq!(out["conflict"]["code"], "kv-conflict", "{out}");
            assert!(out["conflict"]["current"].as_u64().is_some_and(|v| v > 0));
            assert_eq!(out["deleted"], true);
            assert_eq!(out["status"], 200);
            assert_eq!(out["offList"]["code"], "http-not-allowed");
            assert_eq!(out["notAllowed"]["code"], "agents-not-allowed");
            assert!(!run.to_string().contains(SECRET), "{run}");
            assert_eq!(run["usage"]["agent_messages"]["sent"], 1, "{run}");

            let message_run = out["sent"]["runId"].as_str().expect("runId").to_owned();
            let heard = eventually("the listener's run", Duration::from_secs(30), || async {
                let (_, run) = ctl
                    .call(
                        Method::GET,
                        &format!("/v1/runs/{message_run}"),
                        Some(&alice.access),
                        None,
                    )
                    .await;
                (run["status"] == "finished").then_some(run)
            })
            .await;
            assert_eq!(heard["agent_id"], listener.as_str());
            assert_eq!(
                output(&heard),
                json!({ "got": { "hello": "js" }, "from": "tools" })
            );
        }
        let got = echo.received();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].header("authorization"),
            Some(format!("Bearer {SECRET}").as_str())
        );
        assert_eq!(got[0].body, b"ping");
    }
);
