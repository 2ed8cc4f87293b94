//! Schedules: once per tick across two replicas, catch-up after downtime,
//! bad input and tenant isolation.

use delta_control::db::now_ms;

use super::*;

/// Pretend the schedule's next tick is `tick_ms` (as if stored then).
async fn set_next_tick(ctl: &Control, schedule: &str, tick_ms: i64) {
    let done =
        sqlx::query("UPDATE schedules SET next_tick_ms = $1, next_fire_at_ms = $1 WHERE id = $2")
            .bind(tick_ms)
            .bind(schedule)
            .execute(ctl.state.db.pool())
            .await
            .expect("set next tick");
    assert_eq!(done.rows_affected(), 1);
}

/// The recorded fires of `schedule`: (tick, fired at, run id, error).
async fn fires(ctl: &Control, schedule: &str) -> Vec<(i64, i64, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT tick_ms, created_at_ms, run_id, error FROM schedule_fires \
         WHERE schedule_id = $1 ORDER BY tick_ms",
    )
    .bind(schedule)
    .fetch_all(ctl.state.db.pool())
    .await
    .expect("fires")
}

async fn create(ctl: &Control, who: &Session, agent: &str, body: Value) -> (StatusCode, Value) {
    ctl.call(
        Method::POST,
        &format!("/v1/agents/{agent}/schedules"),
        Some(&who.access),
        Some(body),
    )
    .await
}

both!(
    a_schedule_fires_on_time_once_with_two_replicas,
    |ctl: Control| async move {
        let e = echo(ctl).await;
        let other = e.ctl.replica().await;
        let (status, schedule) = create(
            &e.ctl,
            &e.alice,
            &e.agent,
            json!({ "cron": "0 0 1 1 *", "time_zone": "Europe/Paris", "input": { "tick": 1 } }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        let id = s(&schedule["id"]);
        let next = schedule["next_fire_at_ms"].as_i64().expect("next fire");
        // Yearly (1 January, Paris time): no tick of its own comes during
        // the test (an every-minute cron fired again whenever the window
        // crossed a minute), only the one set below.
        assert_eq!(next % 60_000, 0, "on a minute, no jitter: {schedule}");
        assert!(schedule["last_fire_at_ms"].is_null());
        // Due two seconds from now rather than at the next minute.
        let due = now_ms() + 2_000;
        set_next_tick(&e.ctl, &id, due).await;
        // Both replicas' fire loops run; passes of both are also forced
        // concurrently, many times, around the tick.
        let deadline = due + 3_000;
        while now_ms() < deadline {
            let (a, b) = tokio::join!(
                delta_control::triggers::fire::fire_due(&e.ctl.state, now_ms()),
                delta_control::triggers::fire::fire_due(&other.state, now_ms()),
            );
            a.expect("pass on replica 1");
            b.expect("pass on replica 2");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fired = fires(&e.ctl, &id).await;
        assert_eq!(fired.len(), 1, "fired once: {fired:?}");
        let (tick, at, run_id, error) = fired[0].clone();
        assert_eq!(tick, due);
        assert!(error.is_none(), "{error:?}");
        assert!(
            (due..due + 1_500).contains(&at),
            "on time: tick {due}, fired {at}"
        );
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 1);
        let run = finished_run(&e.ctl, &e.alice, &run_id.expect("a run")).await;
        assert_eq!(echoed(&run), json!({ "tick": 1 }));
        // The run remembers what started it (its result webhook says so).
        assert_eq!(
            run["trigger"],
            json!({ "kind": "schedule", "id": id }),
            "{run}"
        );

        let (status, after) = other
            .call(
                Method::GET,
                &format!("/v1/schedules/{id}"),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{after}");
        assert_eq!(after["last_fire_at_ms"], at);
        let next = after["next_fire_at_ms"].as_i64().expect("next fire");
        assert!(next > due && next % 60_000 == 0, "{after}");
        // The claim itself, with the race made certain: both replicas have
        // read the same due row; of their two claims exactly one wins.
        let (_, second) = create(&e.ctl, &e.alice, &e.agent, json!({ "cron": "0 0 1 1 *" })).await;
        let second = s(&second["id"]);
        // An hour ahead, so that the fire loops leave it to the claims below
        // (a claim does not look at the clock, only at the value read).
        let seen = now_ms() + 3_600_000;
        set_next_tick(&e.ctl, &second, seen).await;
        let claim = |state: &delta_control::app::AppState| {
            let (db, id) = (state.db.clone(), second.clone());
            async move {
                delta_control::triggers::store::claim(&db, &id, seen, Some(1), Some(1), Some(seen))
                    .await
                    .expect("claim")
            }
        };
        let (a, b) = tokio::join!(claim(&e.ctl.state), claim(&other.state));
        assert!(a ^ b, "exactly one claim wins: {a} {b}");

        // Both loops keep running: nothing more fires before that tick.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        if now_ms() < next {
            assert_eq!(fires(&e.ctl, &id).await.len(), 1);
        }
    }
);

both!(
    after_downtime_skip_fires_nothing_and_run_once_fires_once,
    |ctl: Control| async move {
        let e = echo(ctl).await;
        let mut ids = Vec::new();
        for catch_up in ["skip", "run_once"] {
            let (status, schedule) = create(
                &e.ctl,
                &e.alice,
                &e.agent,
                // Daily: no tick of its own comes during the test (a
                // five-minute cron fired again whenever the test crossed one).
                json!({ "cron": "0 0 * * *", "catch_up": catch_up, "input": { "c": catch_up } }),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{schedule}");
            assert_eq!(schedule["catch_up"], catch_up);
            ids.push(s(&schedule["id"]));
        }
        // Down for three days: three ticks missed.
        let missed = now_ms() - 3 * 86_400_000;
        for id in &ids {
            set_next_tick(&e.ctl, id, missed).await;
        }
        let run_once = &ids[1];
        let fired = eventually("run_once to fire", Duration::from_secs(20), || async {
            let f = fires(&e.ctl, run_once).await;
            (!f.is_empty()).then_some(f)
        })
        .await;
        // A few more passes: still one.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fires(&e.ctl, run_once).await.len(), 1, "{fired:?}");
        let run = finished_run(&e.ctl, &e.alice, fired[0].2.as_deref().expect("run")).await;
        assert_eq!(echoed(&run), json!({ "c": "run_once" }));
        let (_, listed) = e
            .ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{run_once}/fires"),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert_eq!(listed["items"][0]["run_id"], run["id"], "{listed}");
        assert_eq!(listed["items"][0]["tick_ms"], missed, "{listed}");
        assert!(fires(&e.ctl, &ids[0]).await.is_empty(), "skip fired");
        assert_eq!(runs_of(&e.ctl, &e.agent).await, 1);
        let now = now_ms();
        for id in &ids {
            let (_, schedule) = e
                .ctl
                .call(
                    Method::GET,
                    &format!("/v1/schedules/{id}"),
                    Some(&e.alice.access),
                    None,
                )
                .await;
            let next = schedule["next_fire_at_ms"].as_i64().expect("next");
            assert!(
                next > now - 1_000 && next % 300_000 == 0,
                "moved on: {schedule}"
            );
        }
        let (_, skip) = e
            .ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{}", ids[0]),
                Some(&e.alice.access),
                None,
            )
            .await;
        assert!(skip["last_fire_at_ms"].is_null(), "{skip}");
    }
);

both!(
    bad_timing_is_422_and_other_tenants_see_404,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        // No node: schedules are stored whether or not the agent can run.
        let agent = common::insert_agent(&ctl, &alice, "quiet", None).await;
        for (body, code) in [
            (json!({ "cron": "61 * * * *" }), "invalid_cron"),
            (json!({ "cron": "* * * *" }), "invalid_cron"),
            (json!({ "cron": "@daily" }), "invalid_cron"),
            (json!({ "cron": "0 0 30 2 *" }), "invalid_cron"),
            (
                json!({ "cron": "* * * * *", "time_zone": "Mars/Olympus" }),
                "invalid_time_zone",
            ),
            (
                json!({ "cron": "* * * * *", "time_zone": "" }),
                "invalid_time_zone",
            ),
            (
                json!({ "cron": "* * * * *", "jitter_secs": 3601 }),
                "invalid",
            ),
        ] {
            let (status, err) = create(&ctl, &alice, &agent, body.clone()).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
            assert_eq!(err["code"], code, "{body}: {err}");
        }
        let (status, schedule) = create(
            &ctl,
            &alice,
            &agent,
            json!({ "cron": "0 9 * * MON-FRI", "time_zone": "America/New_York", "jitter_secs": 30 }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        let id = s(&schedule["id"]);
        let next = schedule["next_fire_at_ms"].as_i64().expect("next");
        let tick = next - next.rem_euclid(60_000);
        assert!(next - tick <= 30_000, "jitter within 30 s: {schedule}");

        // A bad change is refused and changes nothing.
        let (status, err) = ctl
            .call(
                Method::PATCH,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                Some(json!({ "cron": "0 9 * *", "enabled": false })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let (_, same) = ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(same["enabled"], true);
        // Disabling clears the next fire.
        let (status, off) = ctl
            .call(
                Method::PATCH,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                Some(json!({ "enabled": false })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{off}");
        assert!(off["next_fire_at_ms"].is_null(), "{off}");

        // A tick no node can take now (the agent has none) is not lost:
        // its fire names a run that waits in the run queue.
        let (status, every) = create(&ctl, &alice, &agent, json!({ "cron": "* * * * *" })).await;
        assert_eq!(status, StatusCode::CREATED, "{every}");
        let every = s(&every["id"]);
        set_next_tick(&ctl, &every, now_ms() - 10).await;
        let page = eventually("the fire", Duration::from_secs(10), || async {
            let (status, page) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/schedules/{every}/fires"),
                    Some(&alice.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            (page["items"].as_array().map(Vec::len) == Some(1)).then_some(page)
        })
        .await;
        let fire = &page["items"][0];
        assert!(fire["error"].is_null(), "{fire}");
        let run_id = s(&fire["run_id"]);
        // The dispatcher tried to deliver it and keeps it for later.
        eventually("a delivery tried", Duration::from_secs(10), || async {
            let (state, last_error): (String, Option<String>) =
                sqlx::query_as("SELECT state, last_error FROM run_queue WHERE run_id = $1")
                    .bind(&run_id)
                    .fetch_one(ctl.state.db.pool())
                    .await
                    .expect("the run's queue row");
            // (`dispatched` while a delivery is being tried.)
            (state == "pending" && last_error.is_some_and(|e| e.starts_with("node_unavailable")))
                .then_some(())
        })
        .await;
        let (status, _) = ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{every}/fires"),
                Some(&bob.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Bob's tenant sees none of it.
        let (status, _) = create(&ctl, &bob, &agent, json!({ "cron": "* * * * *" })).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for (method, path, body) in [
            (Method::GET, format!("/v1/agents/{agent}/schedules"), None),
            (Method::GET, format!("/v1/schedules/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/schedules/{id}"),
                Some(json!({ "enabled": true })),
            ),
            (Method::DELETE, format!("/v1/schedules/{id}"), None),
            (Method::POST, format!("/v1/agents/{agent}/webhooks"), None),
            (Method::GET, format!("/v1/agents/{agent}/webhooks"), None),
        ] {
            let (status, err) = ctl
                .call(method.clone(), &path, Some(&bob.access), body)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
        }
        let (_, list) = ctl
            .call(
                Method::GET,
                &format!("/v1/agents/{agent}/schedules"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
        let (status, _) = ctl
            .call(
                Method::DELETE,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
);

both!(
    fires_and_seen_signatures_are_swept_when_their_time_is_up,
    |ctl: Control| async move {
        let ctl = Control::start_with(ctl.dialect(), |c| c.record_retention_secs = 86_400).await;
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "quiet", None).await;
        let (status, schedule) = create(&ctl, &alice, &agent, json!({ "cron": "0 0 * * *" })).await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        let id = s(&schedule["id"]);
        let now = now_ms();
        for (fire, at) in [
            ("fire_old", now - 2 * 86_400_000),
            ("fire_new", now - 60_000),
        ] {
            sqlx::query(
                "INSERT INTO schedule_fires (id, schedule_id, tenant_id, tick_ms, created_at_ms, \
                 run_id, error) VALUES ($1, $2, $3, $4, $4, NULL, 'node_unavailable')",
            )
            .bind(fire)
            .bind(&id)
            .bind(&alice.tenant_id)
            .bind(at)
            .execute(ctl.state.db.pool())
            .await
            .expect("fire row");
        }
        let (status, hook) = ctl
            .call(
                Method::POST,
                &format!("/v1/agents/{agent}/webhooks"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        let hook = s(&hook["id"]);
        for (sig, expires) in [("old", now - 1), ("new", now + 300_000)] {
            sqlx::query(
                "INSERT INTO webhook_signatures (webhook_id, signature, expires_at_ms) \
                 VALUES ($1, $2, $3)",
            )
            .bind(&hook)
            .bind(sig)
            .bind(expires)
            .execute(ctl.state.db.pool())
            .await
            .expect("signature row");
        }
        // On PostgreSQL a pass is skipped while the background one runs.
        eventually("a sweep pass", Duration::from_secs(10), || async {
            delta_control::sweep::sweep_once(&ctl.state, now)
                .await
                .expect("sweep")
        })
        .await;
        let fires: Vec<String> = sqlx::query_scalar("SELECT id FROM schedule_fires ORDER BY id")
            .fetch_all(ctl.state.db.pool())
            .await
            .expect("fires");
        assert_eq!(fires, vec!["fire_new".to_owned()]);
        let sigs: Vec<String> =
            sqlx::query_scalar("SELECT signature FROM webhook_signatures ORDER BY signature")
                .fetch_all(ctl.state.db.pool())
                .await
                .expect("signatures");
        assert_eq!(sigs, vec!["new".to_owned()]);
    }
);

both!(
    a_tick_of_a_paused_agent_is_recorded_without_a_run,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "resting", None).await;
        let (status, schedule) = create(&ctl, &alice, &agent, json!({ "cron": "0 0 1 1 *" })).await;
        assert_eq!(status, StatusCode::CREATED, "{schedule}");
        let id = s(&schedule["id"]);
        sqlx::query("UPDATE agents SET paused = 1 WHERE id = $1")
            .bind(&agent)
            .execute(ctl.state.db.pool())
            .await
            .expect("pause");
        set_next_tick(&ctl, &id, now_ms() - 10).await;
        // The fire loop may take it first; either way it fires once.
        let fired = eventually("the fire", Duration::from_secs(10), || async {
            delta_control::triggers::fire::fire_due(&ctl.state, now_ms())
                .await
                .expect("pass");
            let fired = fires(&ctl, &id).await;
            (!fired.is_empty()).then_some(fired)
        })
        .await;
        assert_eq!(fired.len(), 1, "{fired:?}");
        let (_, _, run_id, error) = &fired[0];
        assert!(run_id.is_none(), "{fired:?}");
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("agent_paused")),
            "{fired:?}"
        );
        assert_eq!(runs_of(&ctl, &agent).await, 0);
        // The schedule moved on to its next tick.
        let (status, after) = ctl
            .call(
                Method::GET,
                &format!("/v1/schedules/{id}"),
                Some(&alice.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{after}");
        assert!(
            after["next_fire_at_ms"]
                .as_i64()
                .is_some_and(|n| n > now_ms()),
            "{after}"
        );
    }
);
