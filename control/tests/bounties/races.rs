//! Exactly one payout or one refund: approvals racing each other and a
//! cancellation, and an approval racing the deadline's sweep; and the
//! database-wide books check (`assert_books_sound`, which the two-replica
//! test in tests/all/bounties_cli/replicas.rs relies on) failing on broken
//! books.

use common::bounties::assert_books_sound;
use futures_util::FutureExt as _;

use super::*;

both!(
    approvals_and_a_cancellation_race_to_one_outcome,
    |ctl: Control| async move {
        let m = market(ctl).await;
        for round in 0..3 {
            let id = m.open(1_000, 60_000, json!({})).await;
            let (_, sub) = m.submit(&id, json!({ "answer": 42 })).await;
            assert_eq!(sub["passed"], true, "{sub}");
            let approve = format!("/v1/submissions/{}/approve", s(&sub["id"]));
            let cancel = format!("/v1/bounties/{id}/cancel");
            let (a, b, c, d) = tokio::join!(
                m.call(&m.alice, Method::POST, &approve, None),
                m.call(&m.alice, Method::POST, &cancel, None),
                m.call(&m.alice, Method::POST, &approve, None),
                m.call(&m.alice, Method::POST, &cancel, None),
            );
            let answers = [a, b, c, d];
            let ok: Vec<&Value> = answers
                .iter()
                .filter(|(status, _)| *status == StatusCode::OK)
                .map(|(_, body)| body)
                .collect();
            assert_eq!(ok.len(), 1, "round {round}: {answers:?}");
            for (status, body) in &answers {
                assert!(
                    *status == StatusCode::OK || *status == StatusCode::CONFLICT,
                    "round {round}: {status} {body}"
                );
            }
            let status = s(&ok[0]["status"]);
            assert!(status == "completed" || status == "cancelled", "{status}");
            assert_eq!(m.bounty(&id).await["status"], status.as_str());
            m.conserved(&format!("round {round}")).await;
        }
        // Whatever won each round, alice paid exactly the approved rewards and
        // bob got 85 % of them; nothing is left in escrow.
        let paid = FUNDS - account(&m.ctl, &m.alice, "tenant", EUR).await.0;
        assert_eq!(paid % 1_000, 0);
        assert_eq!(
            account(&m.ctl, &m.bob, "tenant", EUR).await.0,
            paid / 1_000 * 850
        );
        assert_eq!(account(&m.ctl, &m.alice, "escrow", EUR).await.0, 0);
        assert_eq!(
            account(&m.ctl, &m.alice, "tenant", EUR).await.2,
            0,
            "nothing still reserved"
        );
        let books = assert_books_sound(&m.ctl.state.db, "the races").await;
        assert_eq!(books.completed.len() + books.refunded.len(), 3, "{books:?}");
    }
);

both!(
    an_approval_racing_the_deadline_pays_or_refunds_once,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let id = m.open(1_000, 4_000, json!({})).await;
        let (_, sub) = m.submit(&id, json!({ "answer": 42 })).await;
        assert_eq!(sub["passed"], true, "{sub}");
        let approve = format!("/v1/submissions/{}/approve", s(&sub["id"]));
        // Approve repeatedly around the deadline while the sweep expires it.
        let deadline = m.bounty(&id).await["deadline_ms"]
            .as_i64()
            .expect("deadline");
        let wait = u64::try_from(deadline - 150 - now_ms()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let mut approved = 0;
        for _ in 0..20 {
            let (status, body) = m.call(&m.alice, Method::POST, &approve, None).await;
            match status {
                StatusCode::OK => approved += 1,
                StatusCode::CONFLICT => {}
                other => panic!("{other}: {body}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let end = eventually("the bounty to end", Duration::from_secs(20), || async {
            let b = m.bounty(&id).await;
            (b["status"] != "open").then_some(b)
        })
        .await;
        let bob = account(&m.ctl, &m.bob, "tenant", EUR).await.0;
        let alice = account(&m.ctl, &m.alice, "tenant", EUR).await.0;
        match s(&end["status"]).as_str() {
            "completed" => assert_eq!((approved, bob, alice), (1, 850, FUNDS - 1_000)),
            "expired" => assert_eq!((approved, bob, alice), (0, 0, FUNDS)),
            other => panic!("{other}"),
        }
        m.conserved("the race with the deadline").await;
        assert_books_sound(&m.ctl.state.db, "the race with the deadline").await;
    }
);

/// Whether `assert_books_sound` fails now.
async fn books_fail(m: &Market) -> bool {
    std::panic::AssertUnwindSafe(assert_books_sound(&m.ctl.state.db, "tampering"))
        .catch_unwind()
        .await
        .is_err()
}

both!(
    the_books_check_fails_on_broken_books,
    |ctl: Control| async move {
        let m = market(ctl).await;
        let paid = m.open(1_000, 60_000, json!({})).await;
        let (_, sub) = m.submit(&paid, json!({ "answer": 42 })).await;
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/submissions/{}/approve", s(&sub["id"])),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let refunded = m.open(500, 60_000, json!({})).await;
        let (status, _) = m
            .call(
                &m.alice,
                Method::POST,
                &format!("/v1/bounties/{refunded}/cancel"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let books = assert_books_sound(&m.ctl.state.db, "one of each").await;
        assert_eq!(
            (books.completed, books.refunded),
            (vec![paid.clone()], vec![refunded.clone()])
        );

        // Each tampering alone is caught, and undone.
        let pool = m.ctl.state.db.pool();
        let tamper = [
            // Money from nowhere.
            (
                "UPDATE money_accounts SET credits_posted = credits_posted + 1 \
                 WHERE id = 'platform:EUR'",
                "UPDATE money_accounts SET credits_posted = credits_posted - 1 \
                 WHERE id = 'platform:EUR'",
            ),
            // A refunded bounty that says it paid.
            (
                "UPDATE bounties SET status = 'completed' WHERE status = 'cancelled'",
                "UPDATE bounties SET status = 'cancelled' WHERE status = 'completed' \
                 AND approved_submission_id IS NULL",
            ),
            // A paid bounty that says it refunded.
            (
                "UPDATE bounties SET status = 'expired' WHERE status = 'completed'",
                "UPDATE bounties SET status = 'completed' WHERE status = 'expired'",
            ),
        ];
        for (break_it, mend_it) in tamper {
            sqlx::query(break_it).execute(pool).await.expect("tamper");
            assert!(books_fail(&m).await, "not caught: {break_it}");
            sqlx::query(mend_it).execute(pool).await.expect("mend");
            assert!(!books_fail(&m).await, "not mended: {mend_it}");
        }
    }
);

both!(
    concurrent_top_ups_with_one_id_apply_once,
    |ctl: Control| async move {
        let op = ctl.operator().await;
        let dave = ctl.register("dave").await;
        let body = json!({ "tenant_id": dave.tenant_id, "amount_minor": 700, "currency": "USD",
                       "transfer_id": "wire-2026-001" });
        let calls = (0..8).map(|_| {
            ctl.call(
                Method::POST,
                "/v1/operator/ledger/topups",
                Some(&op.access),
                Some(body.clone()),
            )
        });
        let answers = futures_util::future::join_all(calls).await;
        let created = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        let retried = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!((created, retried), (1, 7), "{answers:?}");
        // And distinct ids, concurrently, all apply.
        let calls = (0..8).map(|i| {
        ctl.call(
            Method::POST,
            "/v1/operator/ledger/topups",
            Some(&op.access),
            Some(json!({ "tenant_id": dave.tenant_id, "amount_minor": 100 + i, "currency": "USD" })),
        )
    });
        for (status, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        assert_eq!(
            account(&ctl, &dave, "tenant", "USD").await.0,
            700 + 800 + 28
        );
        assert_conserved(&ctl, &op, "USD", "concurrent top-ups").await;
    }
);
