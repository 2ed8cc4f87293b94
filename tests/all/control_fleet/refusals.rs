//! A node's refusals reach the caller as they were; uploads are bounded.

use super::*;

scenario!(node_refusals_pass_through_and_uploads_are_bounded);

async fn node_refusals_pass_through_and_uploads_are_bounded(db: Dialect) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hello_size = wasm(guests::HELLO_AGENT).len() as u64;
    let slow_size = wasm(guests::SLOW_LOGGER).len() as u64;
    let ctl = Control::start_with(db, |c| {
        c.node_heartbeat_timeout_secs = 15;
        c.max_component_bytes = slow_size.max(hello_size);
    })
    .await;
    let alice = ctl.register("alice").await.access;
    // One slot and a queue of one: the third run is refused.
    let _node = NodeProcess::start_with(
        &dir.path().join("node"),
        "node-q",
        &ctl.url,
        &ctl.node_credential("node-q").await,
        "[scheduler]\nconcurrency = 1\nper_tenant_concurrency = 1\nqueue_per_tenant = 1\nqueue_total = 8\n",
    );
    eventually("the node up", Duration::from_secs(30), || async {
        (ctl.nodes().await.get("node-q").map(String::as_str) == Some("up")).then_some(())
    })
    .await;

    // Uploads over max_component_bytes: 413, from Content-Length and
    // without it (chunked).
    let mut big = wasm(guests::SLOW_LOGGER);
    big.resize(big.len() + 1_000_000, 0);
    let (status, err) = ctl.upload(&alice, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["code"], "payload_too_large");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let sent = ctl
        .client
        .post(ctl.url("/v1/components"))
        .bearer_auth(&alice)
        .header("connection", "close")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    // The server answers 413 as soon as the limit is passed and stops
    // reading: the client sees the answer, or the connection cut while it
    // was still sending.
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(ctl.walk(&alice, "/v1/components", 10).await.is_empty());

    let (status, slow) = ctl.upload(&alice, wasm(guests::SLOW_LOGGER)).await;
    assert_eq!(status, StatusCode::CREATED, "{slow}");
    let agent = ctl
        .create_agent(
            &alice,
            json!({ "name": "slow", "kind": "main", "component": slow["sha256"],
                    "limits": { "timeout_ms": 20000 } }),
        )
        .await;
    let id = s(&agent["id"]);
    let input = json!({ "lines": 10, "interval_ms": 100 });
    let (status, first) = ctl.run(&alice, &id, input.clone(), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    // The first holds the slot before the second queues behind it.
    eventually(
        "the first run executing",
        Duration::from_secs(30),
        || async {
            let (_, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{}", s(&first["id"])),
                    Some(&alice),
                    None,
                )
                .await;
            (run["status"] != "queued").then_some(())
        },
    )
    .await;
    let (status, second) = ctl.run(&alice, &id, input.clone(), false).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let resp = ctl
        .client
        .post(ctl.url(&format!("/v1/agents/{id}/runs")))
        .bearer_auth(&alice)
        .json(&json!({ "input": input }))
        .send()
        .await
        .expect("third run");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["code"], "queue_full", "{err}");
    // The refused run is not listed; the two accepted ones are.
    let runs_of_agent = format!("/v1/runs?agent_id={id}");
    let listed = ctl.walk(&alice, &runs_of_agent, 10).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    // A waiting run waits in the queue behind the second, then runs.
    eventually(
        "the second run executing",
        Duration::from_secs(30),
        || async {
            let (_, run) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/runs/{}", s(&second["id"])),
                    Some(&alice),
                    None,
                )
                .await;
            (run["status"] != "queued").then_some(())
        },
    )
    .await;
    // A run with ?wait=true is listed while the caller still waits (it is
    // named and stored before the node is called), so one that outlives the
    // wait is not lost from the list.
    let answered = std::sync::atomic::AtomicBool::new(false);
    let waited = async {
        let answer = ctl
            .run(&alice, &id, json!({ "lines": 1, "interval_ms": 1 }), true)
            .await;
        answered.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let watched = async {
        eventually("the waited run listed", Duration::from_secs(30), || async {
            let unanswered = !answered.load(std::sync::atomic::Ordering::SeqCst);
            let listed = ctl.walk(&alice, &runs_of_agent, 10).await;
            (listed.len() == 3).then(|| (listed[2].clone(), unanswered))
        })
        .await
    };
    let ((status, done), (listed, unanswered)) = tokio::join!(waited, watched);
    assert!(
        unanswered,
        "the run was listed only once answered: {listed}"
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["outcome"]["status"], "completed", "{done}");
    assert_eq!(listed["id"], done["id"], "{listed} vs {done}");
    let (status, stored) = ctl
        .call(
            Method::GET,
            &format!("/v1/runs/{}", s(&done["id"])),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["status"], "finished", "{stored}");
}
