//! Budgets under concurrent callers: conservation holds.

#[allow(unused_imports)]
use super::*;

both!(
    concurrent_leases_requests_and_allocations_conserve_tokens,
    |ctl: Control| async move {
        let w = Arc::new(world(ctl).await);
        let main = w.agent("main", None, 5_000).await;
        let mut bots = Vec::new();
        for i in 0..4 {
            bots.push(w.agent(&format!("bot-{i}"), Some(&main), 300).await);
        }
        w.set(
            &main,
            json!({ "auto_approve_limit": 40, "max_request": 200 }),
        )
        .await;
        let accounts: Vec<String> = std::iter::once(main.clone()).chain(bots.clone()).collect();
        let mut tasks = Vec::new();
        // Nodes: lease, spend a random share (sometimes more than granted),
        // return; some leases are abandoned to the expiry sweep.
        for t in 0..6_u64 {
            let w = Arc::clone(&w);
            let accounts = accounts.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..25_u64 {
                    let agent = &accounts[((t + i) % accounts.len() as u64) as usize];
                    let (status, lease) = w.lease(agent, 40 + (i * 7) % 90, 1).await;
                    statuses.push(status);
                    if status != StatusCode::CREATED {
                        continue;
                    }
                    if i % 9 == 4 {
                        continue;
                    }
                    let granted = n(&lease["granted"]);
                    // Mostly under half of it; now and then 20 % more than it.
                    let pct = if i % 7 == 3 {
                        120
                    } else {
                        (t * 13 + i * 29) % 50
                    };
                    let spent = granted * pct / 100;
                    let (status, _) = w.give_back(&s(&lease["lease_id"]), spent).await;
                    statuses.push(status);
                }
                statuses
            }));
        }
        // Bots ask; an owner approves and denies; an admin moves allocations.
        for t in 0..2_u64 {
            let w = Arc::clone(&w);
            let bots = bots.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..20_u64 {
                    let bot = &bots[((t + i) % bots.len() as u64) as usize];
                    let (status, req) = w.ask(bot, 20 + (i * 37) % 180).await;
                    statuses.push(status);
                    if req["status"] == "pending" {
                        let verb = if i % 3 == 0 { "deny" } else { "approve" };
                        let (status, _) = w
                            .call(
                                Method::POST,
                                &format!("/v1/token-requests/{}/{verb}", s(&req["id"])),
                                None,
                            )
                            .await;
                        statuses.push(status);
                    }
                }
                statuses
            }));
        }
        {
            let w = Arc::clone(&w);
            let bots = bots.clone();
            let main = main.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..15_u64 {
                    let (status, _) = if i % 2 == 0 {
                        w.set(
                            &bots[(i % 4) as usize],
                            json!({ "allocated": 100 + (i * 53) % 400 }),
                        )
                        .await
                    } else {
                        w.set(&main, json!({ "allocated": 2_000 + (i * 311) % 3_000 }))
                            .await
                    };
                    statuses.push(status);
                    let _ = budgets::expire_leases(&w.ctl.state.db, now_ms() + 3_600_000)
                        .await
                        .expect("sweep");
                }
                statuses
            }));
        }
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for task in tasks {
            for status in task.await.expect("task") {
                assert!(
                    [StatusCode::OK, StatusCode::CREATED, StatusCode::CONFLICT].contains(&status),
                    "unexpected {status}"
                );
                *counts.entry(status.as_u16()).or_default() += 1;
            }
        }
        assert!(counts.get(&201).copied().unwrap_or(0) > 60, "{counts:?}");
        check_conservation(&w.ctl).await;
        // Every lease ends up back: expire the abandoned ones and check again.
        budgets::expire_leases(&w.ctl.state.db, now_ms() + 3_600_000)
            .await
            .expect("sweep");
        let leased: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(leased), 0) AS BIGINT) FROM budget_accounts",
        )
        .fetch_one(w.ctl.state.db.pool())
        .await
        .expect("leased");
        assert_eq!(leased, 0);
        check_conservation(&w.ctl).await;
    }
);

both!(
    a_node_answering_without_end_is_cut_off_at_the_cap,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let agent = w.agent("main", None, 100).await;
        let (status, body) = w
            .call(
                Method::POST,
                &format!("/v1/agents/{agent}/runs?wait=true"),
                Some(json!({ "input": {} })),
            )
            .await;
        // Refused as "not the node API" instead of buffering the node's
        // answer without bound; the control plane keeps serving.
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["code"], "node_error", "{body}");
        let me = w.mine().await;
        assert_eq!(n(&me["allocated"]), 100);
    }
);
