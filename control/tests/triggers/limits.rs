//! An agent's triggers are bounded (`[quotas] schedules_per_agent` and
//! `webhooks_per_agent`): one past the limit is 403 `quota_exceeded`,
//! concurrent creations cannot overshoot it, and deleting one makes room.

use super::*;

both_with!(
    an_agent_s_schedules_and_webhooks_stop_at_the_limit,
    |c: &mut delta_control::config::ControlConfig| {
        c.quotas.schedules_per_agent = 3;
        c.quotas.webhooks_per_agent = 2;
    },
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "bounded", None).await;
        let other = common::insert_agent(&ctl, &alice, "other", None).await;
        for (kind, limit, body) in [
            (
                "schedules",
                3,
                Some(json!({ "cron": "0 0 1 1 *", "time_zone": "UTC" })),
            ),
            ("webhooks", 2, None),
        ] {
            let create = |agent: String| {
                let (ctl, alice, body) = (&ctl, &alice, body.clone());
                async move {
                    ctl.call(
                        Method::POST,
                        &format!("/v1/agents/{agent}/{kind}"),
                        Some(&alice.access),
                        body,
                    )
                    .await
                }
            };
            // Eight at once for one agent: exactly the limit get through.
            let all = futures_util::future::join_all((0..8).map(|_| create(agent.clone()))).await;
            let created: Vec<&Value> = all
                .iter()
                .filter(|(status, _)| *status == StatusCode::CREATED)
                .map(|(_, body)| body)
                .collect();
            assert_eq!(created.len(), limit, "{kind}: {all:?}");
            for (status, body) in all.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
                assert_eq!(*status, StatusCode::FORBIDDEN, "{kind}: {body}");
                assert_eq!(body["code"], "quota_exceeded", "{body}");
                assert_eq!(
                    body["details"],
                    json!({ "quota": format!("{kind}_per_agent"), "limit": limit, "used": limit }),
                    "{body}"
                );
            }
            let (status, listed) = ctl
                .call(
                    Method::GET,
                    &format!("/v1/agents/{agent}/{kind}"),
                    Some(&alice.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                listed["items"].as_array().map(Vec::len),
                Some(limit),
                "{listed}"
            );
            // The limit is per agent: another agent of the tenant has room.
            let (status, body) = create(other.clone()).await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "{kind} of another agent: {body}"
            );
            // Deleting one makes room for one.
            let first = s(&created[0]["id"]);
            let (status, _) = ctl
                .call(
                    Method::DELETE,
                    &format!("/v1/{kind}/{first}"),
                    Some(&alice.access),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "delete {kind}");
            let (status, body) = create(agent.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{kind} after a delete: {body}");
            let (status, _) = create(agent.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{kind} past the limit again");
        }
    }
);
