//! Roll-over of unspent budget.

#[allow(unused_imports)]
use super::*;

both!(
    roll_over_restores_grants_and_keeps_leases_counted,
    |ctl: Control| async move {
        let w = world(ctl).await;
        let main = w.agent("main", None, 3_000).await;
        let bot = w.agent("bot", Some(&main), 500).await;
        let gone = w.agent("gone", Some(&main), 200).await;
        w.set(
            &main,
            json!({ "auto_approve_limit": 1_000, "max_request": 1_000 }),
        )
        .await;
        // The bot gets 700 more through a request and spends 900 of its 1,200.
        let (_, req) = w.ask(&bot, 700).await;
        assert_eq!(req["status"], "approved");
        let (_, spend) = w.lease(&bot, 900, 1).await;
        w.give_back(&s(&spend["lease_id"]), 900).await;
        // It holds 250 on a lease across the roll-over (less than its grant).
        // The main agent spends 100 and holds 50.
        let (_, held) = w.lease(&bot, 250, 1).await;
        assert_eq!(n(&held["granted"]), 250);
        let (_, m) = w.lease(&main, 100, 1).await;
        w.give_back(&s(&m["lease_id"]), 100).await;
        let (_, mheld) = w.lease(&main, 50, 1).await;
        // A bot that spent 150 and was deleted.
        let (_, g) = w.lease(&gone, 150, 1).await;
        w.give_back(&s(&g["lease_id"]), 150).await;
        let (status, _) = w
            .call(Method::DELETE, &format!("/v1/agents/{gone}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // A pending request.
        w.set(&main, json!({ "auto_approve_limit": 0 })).await;
        let (_, pending) = w.ask(&bot, 10).await;
        assert_eq!(pending["status"], "pending");
        let me = w.mine().await;
        assert_eq!((n(&me["pool"]), n(&me["retired"])), (7_000, 150));
        check_conservation(&w.ctl).await;

        let db = &w.ctl.state.db;
        let now = now_ms();
        assert_eq!(budgets::roll_over_due(db, now).await.expect("roll"), 0);
        // 40 days on is another month.
        let later = now + 40 * 24 * 3_600 * 1_000;
        let next = delta_control::db::utc_month(later);
        assert_eq!(budgets::roll_over_due(db, later).await.expect("roll"), 1);
        assert_eq!(budgets::roll_over_due(db, later).await.expect("roll"), 0);
        let me = w.mine().await;
        assert_eq!(me["period"], next.as_str());
        assert_eq!((n(&me["pool"]), n(&me["retired"])), (7_000, 0));
        let b = w.budget(&bot).await;
        // Back to its grant (500, the 700 from the request return to the main
        // agent); its lease of 250 stays counted.
        assert_eq!(
            (
                n(&b["allocated"]),
                n(&b["spent"]),
                n(&b["leased"]),
                n(&b["available"])
            ),
            (500, 0, 250, 250)
        );
        assert_eq!(b["period"], next.as_str());
        let mb = w.budget(&main).await;
        assert_eq!(
            (n(&mb["allocated"]), n(&mb["spent"]), n(&mb["leased"])),
            (2_500, 0, 50)
        );
        let (_, body) = w
            .call(
                Method::GET,
                &format!("/v1/token-requests/{}", s(&pending["id"])),
                None,
            )
            .await;
        assert_eq!(
            (s(&body["status"]), s(&body["decided_by"])),
            ("expired".into(), "roll-over".into())
        );
        check_conservation(&w.ctl).await;
        // The outstanding leases return into the new period.
        let (_, back) = w.give_back(&s(&held["lease_id"]), 100).await;
        assert_eq!((n(&back["charged"]), n(&back["returned"])), (100, 150));
        w.give_back(&s(&mheld["lease_id"]), 0).await;
        assert_eq!(n(&w.budget(&bot).await["available"]), 400);

        // A bot whose leases hold more than its grant keeps them; its main
        // agent gets that much less.
        let (_, top) = w.ask(&bot, 200).await;
        assert_eq!(top["status"], "pending");
        let (status, _) = w
            .call(
                Method::POST,
                &format!("/v1/token-requests/{}/approve", s(&top["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        // 700 allocated, 100 spent: a lease of 600, above its grant of 500.
        let (status, big) = w.lease(&bot, 600, 600).await;
        assert_eq!(status, StatusCode::CREATED, "{big}");
        let after = later + 40 * 24 * 3_600 * 1_000;
        assert_eq!(budgets::roll_over_due(db, after).await.expect("roll"), 1);
        let b = w.budget(&bot).await;
        assert_eq!(
            (
                n(&b["allocated"]),
                n(&b["spent"]),
                n(&b["leased"]),
                n(&b["available"])
            ),
            (600, 0, 600, 0),
            "{b}"
        );
        assert_eq!(n(&w.budget(&main).await["allocated"]), 2_400);
        check_conservation(&w.ctl).await;
    }
);
