use super::*;
use crate::model::{AgentLimits, Grants};
use serde_json::json;
use std::sync::Arc;

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("state").join("node.db"))
        .await
        .expect("open store")
}

fn agent(id: &str, component: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        spec: AgentSpec {
            tenant_id: "t1".into(),
            component: component.into(),
            limits: AgentLimits {
                fuel: Some(1_000),
                memory_bytes: None,
                timeout_ms: Some(5_000),
            },
            grants: Grants {
                models: vec!["m".into()],
                recipients: vec!["*@example.com".into()],
                ..Grants::default()
            },
        },
        paused: false,
        created_at_ms: 100,
        updated_at_ms: 100,
    }
}

fn new_run(id: &str, agent: &str, created: Millis) -> NewRun {
    NewRun {
        id: id.into(),
        agent_id: agent.into(),
        tenant_id: "t1".into(),
        input: r#"{"task":1}"#.into(),
        created_at_ms: created,
    }
}

fn usage(run: &str, fuel: u64) -> RunUsage {
    let mut u = RunUsage {
        run_id: run.into(),
        agent_id: "a1".into(),
        tenant_id: "t1".into(),
        outcome: "completed".into(),
        fuel_used: fuel,
        wall_time_us: 7,
        peak_memory_bytes: 65536,
        finished_at_ms: 2_000,
        ..RunUsage::default()
    };
    u.llm.insert(
        "model-x".into(),
        LlmTokens {
            calls: 1,
            input_tokens: 10,
            output_tokens: 20,
        },
    );
    u.messages.insert(
        "email".into(),
        MessageCounts {
            sent: 1,
            refused: 2,
            tokens: 3,
        },
    );
    u
}

fn finished(run: &str, fuel: u64, expires: Millis) -> FinishedRun {
    FinishedRun {
        run_id: run.into(),
        outcome: json!({"status": "completed", "output": "{}"}),
        logs: json!([{"at_ms": 1, "level": "info", "message": "hi"}]),
        usage: usage(run, fuel),
        expires_at_ms: expires,
        started_at_ms: Some(1_500),
    }
}

#[tokio::test]
async fn a_group_commit_records_new_and_queued_runs_once_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    store
        .insert_run(&new_run("q1", "a1", 1))
        .await
        .expect("queued");
    let mut batch: Vec<(Option<NewRun>, FinishedRun)> = (0..300)
        .map(|i| {
            let id = format!("w{i}");
            (Some(new_run(&id, "a1", 1)), finished(&id, i, 9_000))
        })
        .collect();
    batch.push((None, finished("q1", 5, 9_000)));
    // The same new run twice in one batch, and a usage that names
    // another run: recorded once, refused.
    batch.push((Some(new_run("w0", "a1", 1)), finished("w0", 0, 9_000)));
    let mut bad = finished("w-bad", 1, 9_000);
    bad.usage.run_id = "other".into();
    batch.push((Some(new_run("w-bad", "a1", 1)), bad));
    let results = store.finish_runs(&batch).await.expect("commit");
    assert_eq!(results.len(), batch.len());
    assert!(results[..301].iter().all(|r| matches!(r, Ok(true))));
    assert!(matches!(results[301], Ok(false)), "{:?}", results[301]);
    assert!(matches!(results[302], Err(StoreError::Invalid(_))));
    let run = store.get_run("w299").await.expect("get").expect("stored");
    assert_eq!(run.status, RunStatus::Finished);
    assert_eq!(run.usage.expect("usage").fuel_used, 299);
    assert_eq!(
        store.get_run("q1").await.expect("get").expect("q1").status,
        RunStatus::Finished
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog").0, 301);
    // Again: nothing new is queued.
    let again = store.finish_runs(&batch[..2]).await.expect("commit");
    assert!(again.iter().all(|r| matches!(r, Ok(false))));
    assert_eq!(store.outbox_backlog().await.expect("backlog").0, 301);
}

#[tokio::test]
async fn components_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    let c = ComponentRecord {
        sha256: "ab".repeat(32),
        size: 1234,
        world: "agent".into(),
        created_at_ms: 5,
    };
    s.put_component(&c).await.expect("put");
    assert_eq!(
        s.get_component(&c.sha256).await.expect("get"),
        Some(c.clone())
    );
    // Upsert keeps created_at_ms, replaces the rest.
    let c2 = ComponentRecord {
        size: 99,
        created_at_ms: 9,
        ..c.clone()
    };
    s.put_component(&c2).await.expect("put again");
    let got = s
        .get_component(&c.sha256)
        .await
        .expect("get")
        .expect("some");
    assert_eq!((got.size, got.created_at_ms), (99, 5));
    assert_eq!(s.list_components().await.expect("list").len(), 1);

    assert!(!s.component_in_use(&c.sha256).await.expect("in use"));
    s.put_agent(&agent("a1", &c.sha256)).await.expect("agent");
    assert!(s.component_in_use(&c.sha256).await.expect("in use"));
    assert!(!s.component_in_use("other").await.expect("in use"));

    assert!(s.delete_component(&c.sha256).await.expect("delete"));
    assert!(!s.delete_component(&c.sha256).await.expect("delete"));
    assert_eq!(s.get_component(&c.sha256).await.expect("get"), None);
}

#[tokio::test]
async fn agents_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    let a = agent("a1", "c1");
    s.put_agent(&a).await.expect("put");
    assert_eq!(s.get_agent("a1").await.expect("get"), Some(a.clone()));

    let mut b = a.clone();
    b.spec.component = "c2".into();
    b.created_at_ms = 999;
    b.updated_at_ms = 200;
    s.put_agent(&b).await.expect("put");
    let got = s.get_agent("a1").await.expect("get").expect("some");
    assert_eq!(got.created_at_ms, 100, "upsert keeps created_at_ms");
    assert_eq!(got.updated_at_ms, 200);
    assert_eq!(got.spec.component, "c2");

    assert!(s.set_paused("a1", true).await.expect("pause"));
    assert!(s.get_agent("a1").await.expect("get").expect("some").paused);
    assert!(!s.set_paused("nope", true).await.expect("pause"));

    s.put_agent(&agent("a0", "c1")).await.expect("put");
    let ids: Vec<_> = s
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["a0", "a1"]);
    assert!(s.delete_agent("a1").await.expect("delete"));
    assert!(!s.delete_agent("a1").await.expect("delete"));
    assert_eq!(s.get_agent("a1").await.expect("get"), None);
}

#[tokio::test]
async fn run_lifecycle_and_idempotent_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    s.insert_run(&new_run("r1", "a1", 1_000))
        .await
        .expect("insert");
    assert!(s.insert_run(&new_run("r1", "a1", 1_000)).await.is_err());
    let r = s.get_run("r1").await.expect("get").expect("some");
    assert_eq!(r.status, RunStatus::Queued);
    assert_eq!((r.outcome, r.usage, r.started_at_ms), (None, None, None));

    assert!(s.mark_running("r1", 1_500).await.expect("running"));
    assert!(!s.mark_running("r1", 1_600).await.expect("running twice"));
    let r = s.get_run("r1").await.expect("get").expect("some");
    assert_eq!(
        (r.status, r.started_at_ms),
        (RunStatus::Running, Some(1_500))
    );

    let f = finished("r1", 42, 10_000);
    assert!(s.finish_run(&f).await.expect("finish"));
    let mut again = finished("r1", 4242, 20_000);
    again.outcome = json!({"status": "cancelled"});
    assert!(!s.finish_run(&again).await.expect("finish twice"));

    let r = s.get_run("r1").await.expect("get").expect("some");
    assert_eq!(r.status, RunStatus::Finished);
    assert_eq!(r.outcome.as_ref(), Some(&f.outcome));
    assert_eq!(r.logs.as_ref(), Some(&f.logs));
    assert_eq!(r.usage.as_ref(), Some(&f.usage));
    assert_eq!(r.finished_at_ms, Some(2_000));
    assert_eq!(r.expires_at_ms, Some(10_000));
    assert!(
        !s.mark_running("r1", 1_700)
            .await
            .expect("running after finish")
    );

    let out = s.outbox_unsent(10).await.expect("outbox");
    assert_eq!(out.len(), 1, "queued once");
    assert_eq!(out[0].1, f.usage);
    assert_eq!(s.outbox_backlog().await.expect("backlog").0, 1);

    // Unknown run and mismatched usage are errors, not silent no-ops.
    assert!(matches!(
        s.finish_run(&finished("nope", 1, 1)).await,
        Err(StoreError::NotFound(_))
    ));
    let mut bad = finished("r1", 1, 1);
    bad.usage.run_id = "r2".into();
    assert!(matches!(
        s.finish_run(&bad).await,
        Err(StoreError::Invalid(_))
    ));

    // A queued run can be finished directly (cancelled before start).
    s.insert_run(&new_run("r2", "a1", 1_100))
        .await
        .expect("insert");
    assert!(
        s.finish_run(&finished("r2", 0, 10_000))
            .await
            .expect("finish")
    );

    let all = s.list_runs(None, 10).await.expect("list");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"]
    );
    assert_eq!(s.list_runs(Some("a1"), 1).await.expect("list").len(), 1);
    assert!(s.list_runs(Some("zz"), 10).await.expect("list").is_empty());
}

#[tokio::test]
async fn recover_interrupted_cancels_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    s.insert_run(&new_run("q", "a1", 1)).await.expect("insert");
    s.insert_run(&new_run("r", "a1", 2)).await.expect("insert");
    s.insert_run(&new_run("f", "a1", 3)).await.expect("insert");
    s.mark_running("r", 5).await.expect("running");
    s.finish_run(&finished("f", 9, 100)).await.expect("finish");

    let ids = s.recover_interrupted(50, 500).await.expect("recover");
    assert_eq!(ids, ["q", "r"]);
    assert!(
        s.recover_interrupted(60, 600)
            .await
            .expect("again")
            .is_empty()
    );

    let r = s.get_run("r").await.expect("get").expect("some");
    assert_eq!(r.status, RunStatus::Finished);
    assert_eq!(r.outcome, Some(json!({"status": "cancelled"})));
    let u = r.usage.expect("usage");
    assert_eq!(
        (u.outcome.as_str(), u.fuel_used, u.finished_at_ms),
        ("cancelled", 0, 50)
    );
    assert_eq!((u.agent_id.as_str(), u.tenant_id.as_str()), ("a1", "t1"));
    assert_eq!(r.expires_at_ms, Some(500));

    let out = s.outbox_unsent(10).await.expect("outbox");
    let ids: Vec<_> = out.iter().map(|(_, u)| u.run_id.as_str()).collect();
    assert_eq!(ids, ["f", "q", "r"]);
}

#[tokio::test]
async fn outbox_mark_sent_and_local_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
        s.insert_run(&new_run(id, "a1", i as Millis))
            .await
            .expect("insert");
        s.finish_run(&finished(id, 10, 100)).await.expect("finish");
    }
    let out = s.outbox_unsent(2).await.expect("outbox");
    assert_eq!(out.len(), 2);
    assert!(out[0].0 < out[1].0, "oldest first");
    assert_eq!(out[0].1.run_id, "r1");
    let seqs: Vec<i64> = out.iter().map(|(s, _)| *s).collect();
    assert_eq!(s.mark_sent(&seqs, 777).await.expect("mark"), 2);
    assert_eq!(s.mark_sent(&seqs, 888).await.expect("mark again"), 0);
    assert_eq!(s.mark_sent(&[], 888).await.expect("mark none"), 0);
    let rest = s.outbox_unsent(10).await.expect("outbox");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1.run_id, "r3");
    let (n, oldest) = s.outbox_backlog().await.expect("backlog");
    assert_eq!(n, 1);
    assert!(oldest.is_some());

    // Local usage includes sent and unsent records.
    assert_eq!(s.usage_since(0, None, 10).await.expect("since").len(), 3);
    assert_eq!(
        s.usage_since(0, Some("t1"), 2).await.expect("since").len(),
        2
    );
    assert!(
        s.usage_since(0, Some("t2"), 10)
            .await
            .expect("since")
            .is_empty()
    );
    let totals = s.usage_totals(0, None).await.expect("totals");
    assert_eq!(totals.len(), 1);
    let t = &totals[0];
    assert_eq!((t.runs, t.fuel_used, t.wall_time_us), (3, 30, 21));
    assert_eq!(t.outcomes.get("completed"), Some(&3));
    assert_eq!(t.llm.get("model-x").map(|l| l.output_tokens), Some(60));
    assert_eq!(t.messages.get("email").map(|m| m.refused), Some(6));
    assert!(
        s.usage_totals(0, Some("t2"))
            .await
            .expect("totals")
            .is_empty()
    );
    s.ping().await.expect("ping");
}

#[tokio::test]
async fn sweep_deletes_expired_runs_and_old_sent_usage_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir).await;
    for id in ["old", "new", "old-unsent"] {
        s.insert_run(&new_run(id, "a1", 1)).await.expect("insert");
    }
    s.insert_run(&new_run("live", "a1", 1))
        .await
        .expect("insert");
    s.finish_run(&finished("old", 1, 1_000))
        .await
        .expect("finish");
    s.finish_run(&finished("new", 1, 2 * SENT_USAGE_RETENTION_MS))
        .await
        .expect("finish");
    s.finish_run(&finished("old-unsent", 1, 1_000))
        .await
        .expect("finish");
    let out = s.outbox_unsent(10).await.expect("outbox");
    let seq_of = |id: &str| {
        out.iter()
            .find(|(_, u)| u.run_id == id)
            .map(|(s, _)| *s)
            .expect("seq")
    };
    // "old" acknowledged long ago, "new" recently, "old-unsent" never.
    s.mark_sent(&[seq_of("old")], 10).await.expect("mark");
    s.mark_sent(&[seq_of("new")], 2_000).await.expect("mark");

    // Nothing expired yet.
    assert_eq!(s.sweep_expired(999).await.expect("sweep"), 0);

    let now = 10 + SENT_USAGE_RETENTION_MS;
    // Two runs expired; one outbox row sent at 10 is past retention.
    assert_eq!(s.sweep_expired(now).await.expect("sweep"), 3);
    assert_eq!(s.get_run("old").await.expect("get"), None);
    assert_eq!(s.get_run("old-unsent").await.expect("get"), None);
    assert!(s.get_run("new").await.expect("get").is_some());
    assert!(
        s.get_run("live").await.expect("get").is_some(),
        "unfinished never expire"
    );
    let usage: Vec<_> = s
        .usage_since(0, None, 10)
        .await
        .expect("since")
        .into_iter()
        .map(|u| u.run_id)
        .collect();
    assert_eq!(
        usage,
        ["new", "old-unsent"],
        "unsent usage survives its run"
    );
    assert_eq!(s.outbox_unsent(10).await.expect("outbox").len(), 1);
    assert_eq!(s.sweep_expired(now).await.expect("sweep again"), 0);
}

#[tokio::test]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ComponentRecord {
        sha256: "cd".repeat(32),
        size: 1,
        world: "verifier".into(),
        created_at_ms: 1,
    };
    let a = agent("a1", &c.sha256);
    {
        let s = open(&dir).await;
        s.put_component(&c).await.expect("put");
        s.put_agent(&a).await.expect("put");
        s.insert_run(&new_run("r1", "a1", 1)).await.expect("insert");
        s.insert_run(&new_run("r2", "a1", 2)).await.expect("insert");
        s.finish_run(&finished("r1", 5, 100)).await.expect("finish");
        s.close().await;
    }
    let s = open(&dir).await;
    assert_eq!(s.get_component(&c.sha256).await.expect("get"), Some(c));
    assert_eq!(s.get_agent("a1").await.expect("get"), Some(a));
    let r1 = s.get_run("r1").await.expect("get").expect("some");
    assert_eq!(r1.usage, Some(usage("r1", 5)));
    assert_eq!(
        s.get_run("r2").await.expect("get").expect("some").status,
        RunStatus::Queued
    );
    assert_eq!(s.outbox_unsent(10).await.expect("outbox").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_finish_lands_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(open(&dir).await);
    const RUNS: usize = 20;
    const RACERS: usize = 5;
    for i in 0..RUNS {
        s.insert_run(&new_run(&format!("r{i}"), "a1", i as Millis))
            .await
            .expect("insert");
    }
    let mut tasks = Vec::new();
    for k in 0..RACERS {
        for i in 0..RUNS {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.finish_run(&finished(&format!("r{i}"), k as u64, 100))
                    .await
            }));
        }
    }
    let mut recorded = 0;
    for t in tasks {
        if t.await.expect("join").expect("finish") {
            recorded += 1;
        }
    }
    assert_eq!(recorded, RUNS);
    let out = s.outbox_unsent(1_000).await.expect("outbox");
    assert_eq!(out.len(), RUNS);
    // The stored usage is the one the winner queued.
    for (_, u) in out {
        let r = s.get_run(&u.run_id).await.expect("get").expect("some");
        assert_eq!(r.usage, Some(u));
    }
}
