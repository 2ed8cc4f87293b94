//! Reputation and the leaderboard from a known history: bob's agent has
//! one approval, one rejection by the business and one submission rejected
//! when another was approved (1 of 3 decided, 2 of 3 verdicts passed);
//! carol's agent has one approval (1 of 1). The Wilson lower bounds are
//! hand-computed: 1 of 3 → 0.061490, 1 of 1 → 0.206543.

use common::bounties::create_agent;

use super::*;

fn close_to(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-5)
}

both!(
    reputation_and_leaderboard_follow_the_history,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let carol = m.ctl.register("carol").await;
        let hello = common::bounties::upload(
            &m.ctl,
            &carol,
            &std::fs::read(guests::HELLO_AGENT).expect("guest"),
        )
        .await;
        let carols = create_agent(&m.ctl, &carol, "rival", &hello).await;

        // Bounty A: a failing and a passing submission; the passing one is
        // approved, the failing one rejected with it.
        let a = m.open(1_000, 60_000, json!({})).await;
        let (_, wrong) = m.submit(&a, json!({ "answer": 41 })).await;
        assert_eq!(wrong["passed"], false, "{wrong}");
        let (_, right) = m.submit(&a, json!({ "answer": 42 })).await;
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&right["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // Bounty B: a passing submission the business rejects; carol's
        // passing one is approved.
        let b = m.open(1_000, 60_000, json!({})).await;
        let (_, refused) = m.submit(&b, json!({ "answer": 42 })).await;
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/reject", s(&refused["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, hers) = m
            .call(
                &carol,
                Method::POST,
                &format!("/v1/bounties/{b}/submissions"),
                Some(json!({ "agent_id": carols, "payload": { "answer": 42 } })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hers}");
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&hers["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Anyone in the marketplace reads an agent's reputation.
        let (status, rep) = m
            .call(
                &carol,
                Method::GET,
                &format!("/v1/agents/{}/reputation", m.agent),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{rep}");
        assert_eq!(rep["submissions"], 3, "{rep}");
        assert_eq!(rep["approved"], 1, "{rep}");
        assert_eq!(rep["rejected"], 2, "{rep}");
        assert_eq!(rep["decided"], 3, "{rep}");
        assert_eq!(rep["verdicts"], 3, "{rep}");
        assert!(close_to(&rep["verifier_pass_rate"], 2.0 / 3.0), "{rep}");
        assert!(close_to(&rep["score"], 0.061_490), "{rep}");
        assert!(
            rep["mean_ms_to_submit"].as_i64().is_some_and(|ms| ms >= 0),
            "{rep}"
        );

        let (_, hers) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/agents/{carols}/reputation"),
                None,
            )
            .await;
        assert!(close_to(&hers["score"], 0.206_543), "{hers}");
        let (status, _) = m
            .call(
                &m.bob,
                Method::GET,
                "/v1/agents/agt_nosuch/reputation",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Highest score first, one per page; agents without a decided
        // submission are not listed.
        let (status, first) = m
            .call(&m.bob, Method::GET, "/v1/leaderboard?limit=1", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["items"][0]["agent_id"], json!(carols), "{first}");
        let cursor = s(&first["next_cursor"]);
        let (_, second) = m
            .call(
                &m.bob,
                Method::GET,
                &format!("/v1/leaderboard?limit=1&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(second["items"][0]["agent_id"], json!(m.agent), "{second}");
        assert!(second.get("next_cursor").is_none(), "{second}");
    }
);

/// The first place on the leaderboard, as bob sees it.
async fn leader(m: &Market) -> Value {
    let (status, page) = m
        .call(&m.bob, Method::GET, "/v1/leaderboard?limit=1", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"][0].clone()
}

/// With Redis, the ranking is computed once and served from Redis for
/// its time to live (another replica or page reads the same entry); a
/// decision shows once it expires; without Redis it is computed again.
async fn the_leaderboard_is_cached_in_redis(dialect: common::Dialect) {
    let mut redis = common::redis::RedisServer::start().await;
    let url = redis.url.clone();
    let m = market(Control::start_with(dialect, move |c| c.redis_url = Some(url)).await).await;
    let a = m.open(1_000, 60_000, json!({})).await;
    let (_, right) = m.submit(&a, json!({ "answer": 42 })).await;
    let (status, _) = m
        .call(
            &m.alice,
            Method::POST,
            &format!("/v1/submissions/{}/approve", s(&right["id"])),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let first = leader(&m).await;
    assert_eq!(first["agent_id"], json!(m.agent), "{first}");
    assert_eq!(first["approved"], 1, "{first}");

    let mut conn = redis.connection().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(delta_control::reputation::LEADERBOARD_KEY)
        .query_async(&mut conn)
        .await
        .expect("ttl");
    let limit = i64::try_from(delta_control::reputation::LEADERBOARD_TTL_SECS).expect("ttl");
    assert!(
        (1..=limit).contains(&ttl),
        "cached with its time to live: {ttl}"
    );
    // What Redis holds is what is served: a planted entry shows (so the
    // database is not read while it lives).
    let mut planted = first.clone();
    planted["approved"] = json!(99);
    let _: () = redis::cmd("SET")
        .arg(delta_control::reputation::LEADERBOARD_KEY)
        .arg(json!([planted]).to_string())
        .arg("EX")
        .arg(limit)
        .query_async(&mut conn)
        .await
        .expect("plant");
    assert_eq!(leader(&m).await["approved"], 99);
    // Expired (deleted here): computed from the database again.
    let _: () = redis::cmd("DEL")
        .arg(delta_control::reputation::LEADERBOARD_KEY)
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(leader(&m).await["approved"], 1);
    // Redis gone: still answered, from the database.
    redis.stop();
    assert_eq!(leader(&m).await["approved"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaderboard_is_cached_in_redis_sqlite() {
    the_leaderboard_is_cached_in_redis(common::Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaderboard_is_cached_in_redis_postgres() {
    the_leaderboard_is_cached_in_redis(common::Dialect::Postgres).await;
}
