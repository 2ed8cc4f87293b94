//! The CLI's API command groups end to end, against a control plane (and,
//! where agents must be deployed, a node) from the control plane's test
//! harness, on SQLite and PostgreSQL: each group's happy path with tables
//! and `--json`, and refusals with their exit codes (main.rs's table: 2 bad
//! input, 7 not allowed, 8 not found, 9 conflict). Completions and the
//! progress bar (drawn on a terminal only) are checked here too.

use crate::common;

use std::process::Command;

use common::{Control, Session, start_node_in_process};
use delta_guest_artifacts as guests;
use serde_json::Value;

/// What one `delta` invocation answered: exit code, stdout, stderr.
type Answer = (i32, String, String);

/// Run `delta args...` as `who` against `ctl` (off the runtime's threads:
/// the CLI blocks).
async fn delta(ctl: &Control, who: &Session, args: &[&str]) -> Answer {
    let url = ctl.url.clone();
    let key = who.access.clone();
    delta_with_key(url, key, args).await
}

async fn delta_with_key(url: String, key: String, args: &[&str]) -> Answer {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_delta"))
            .args(&args)
            .env("DELTA_API_URL", url)
            .env("DELTA_API_KEY", key)
            .env_remove("DELTA_APP_ID")
            .env_remove("DELTA_NO_PROGRESS")
            .output()
            .expect("delta");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// Succeeded; its stdout.
fn ok((code, out, err): Answer) -> String {
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    out
}

/// Succeeded with JSON on stdout.
fn ok_json(answer: Answer) -> Value {
    let out = ok(answer);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Failed with `code`; its stderr.
fn refused((code, out, err): Answer, expected: i32) -> String {
    assert_eq!(code, expected, "stdout: {out}\nstderr: {err}");
    err
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

both!(budgets_agents_and_progress, |ctl: Control| async move {
    let _node = start_node_in_process(&ctl, "cli-node", "").await;
    let alice = ctl.register("alice").await;
    let hello = guests::HELLO_AGENT;

    // Not a terminal: no progress on stderr.
    let (code, out, err) = delta(
        &ctl,
        &alice,
        &["agents", "create", "--component", hello, "--name", "main-a"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("uploading"),
        "no progress without a tty: {err}"
    );
    let main: Value = serde_json::from_str(&out).expect("agent JSON");
    // Its deploy history: one creation, on the node.
    let history = ok_json(delta(&ctl, &alice, &["agents", "history", "main-a", "--json"]).await);
    assert_eq!(history["items"][0]["reason"], "created", "{history}");
    assert_eq!(history["items"][0]["node_id"], "cli-node", "{history}");
    let table = ok(delta(&ctl, &alice, &["agents", "history", "main-a"]).await);
    assert!(
        table.starts_with("at_ms") && table.contains("created"),
        "{table}"
    );
    ok(delta(
        &ctl,
        &alice,
        &[
            "agents",
            "create",
            "--component",
            hello,
            "--name",
            "bot-a",
            "--kind",
            "bot",
            "--parent",
            "main-a",
        ],
    )
    .await);

    let b = ok_json(
        delta(
            &ctl,
            &alice,
            &["budgets", "allocate", "main-a", "1000", "--json"],
        )
        .await,
    );
    assert_eq!(b["allocated"], 1000, "{b}");
    let out = ok(delta(&ctl, &alice, &["budgets", "allocate", "bot-a", "100"]).await);
    assert!(out.contains("allocated 100"), "{out}");
    let b = ok_json(
        delta(
            &ctl,
            &alice,
            &[
                "budgets",
                "auto-approve",
                "main-a",
                "--limit",
                "50",
                "--max-request",
                "200",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(b["auto_approve_limit"], 50, "{b}");
    assert_eq!(b["max_request"], 200, "{b}");

    let tree = ok(delta(&ctl, &alice, &["budgets", "show"]).await);
    let main_line = tree
        .lines()
        .position(|l| l.contains("main-a") && l.contains("allocated 900,"))
        .unwrap_or_else(|| panic!("{tree}"));
    let bot_line = tree
        .lines()
        .position(|l| l.contains("bot-a") && l.contains("allocated 100,"))
        .unwrap_or_else(|| panic!("{tree}"));
    assert!(
        bot_line > main_line,
        "the bot is under its main agent: {tree}"
    );
    assert!(tree.contains("up to 50 approved at once"), "{tree}");
    assert!(
        tree.lines().next().is_some_and(|l| l.contains(", pool ")),
        "{tree}"
    );
    let shown = ok_json(delta(&ctl, &alice, &["budgets", "show", "--json"]).await);
    assert_eq!(shown["user"]["main_agents"][0]["agent_id"], main["id"]);
    assert_eq!(shown["bots"][0]["allocated"], 100, "{shown}");

    // Refusals: nothing to set (2), a bot has no auto-approval (API 400/422:
    // 2), an unknown agent (8), tiers are the operators' (7).
    let err = refused(
        delta(&ctl, &alice, &["budgets", "auto-approve", "main-a"]).await,
        2,
    );
    assert!(err.contains("--limit"), "{err}");
    refused(
        delta(
            &ctl,
            &alice,
            &["budgets", "auto-approve", "bot-a", "--limit", "5"],
        )
        .await,
        2,
    );
    let err = refused(
        delta(&ctl, &alice, &["budgets", "allocate", "nobody", "5"]).await,
        8,
    );
    assert!(err.contains("no agent named nobody"), "{err}");
    let err = refused(
        delta(&ctl, &alice, &["budgets", "tier", &alice.user_id, "team"]).await,
        7,
    );
    assert!(err.contains("403"), "{err}");
    let op = ctl.operator().await;
    let tiered = ok_json(
        delta(
            &ctl,
            &op,
            &[
                "budgets",
                "tier",
                &alice.user_id,
                "team",
                "--tenant",
                &alice.tenant_id,
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(tiered["tier"], "team", "{tiered}");

    // Usage by agent, day or kind.
    let out = ok(delta(&ctl, &alice, &["usage", "--by", "kind"]).await);
    assert!(out.starts_with("usage "), "{out}");
    ok_json(delta(&ctl, &alice, &["usage", "--by", "agent", "--json"]).await);
    refused(
        delta(
            &ctl,
            &alice,
            &["usage", "--by", "agent", "--group-by", "day"],
        )
        .await,
        2,
    );

    // A JavaScript agent on a terminal: a bar while uploading, a spinner
    // while the control plane compiles (`script` gives it a pty).
    let js = ctl.dir.path().join("hello.js");
    std::fs::write(
        &js,
        "export function run(input) { return { greeting: 'hi ' + input.name }; }\n",
    )
    .expect("script");
    let line = format!(
        "{} agents create --component {} --name js-agent",
        env!("CARGO_BIN_EXE_delta"),
        js.display()
    );
    let (url, key) = (ctl.url.clone(), alice.access.clone());
    let tty = tokio::task::spawn_blocking(move || {
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("DELTA_API_URL", url)
            .env("DELTA_API_KEY", key)
            .env_remove("DELTA_NO_PROGRESS")
            .output()
            .expect("script")
    })
    .await
    .expect("join");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("uploading"),
        "progress on a terminal: {shown}"
    );
    assert!(shown.contains("\"name\": \"js-agent\""), "{shown}");
});

both!(
    templates_members_keys_and_audit,
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let bob = ctl.register("bob").await;
        let carol = ctl.register("carol").await;

        // Members and invitations.
        let out = ok(delta(
            &ctl,
            &alice,
            &["members", "invite", &bob.email, "--role", "member"],
        )
        .await);
        assert!(out.contains("invited bob@example.com as member"), "{out}");
        ok(delta(&ctl, &alice, &["members", "invite", &carol.email]).await);
        let invitations = ok_json(delta(&ctl, &bob, &["invitations", "list", "--json"]).await);
        let invitation = invitations
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|i| i["tenant_id"] == alice.tenant_id.as_str())
            })
            .cloned()
            .unwrap_or_else(|| panic!("{invitations}"));
        let out = ok(delta(&ctl, &bob, &["invitations", "accept", &id_of(&invitation)]).await);
        assert!(out.contains("bob@example.com is now member"), "{out}");
        let carols = ok_json(delta(&ctl, &carol, &["invitations", "list", "--json"]).await);
        let carols_id = id_of(&carols[0]);
        ok(delta(&ctl, &carol, &["invitations", "decline", &carols_id]).await);
        refused(
            delta(&ctl, &carol, &["invitations", "accept", &carols_id]).await,
            8,
        );
        let table = ok(delta(&ctl, &alice, &["members", "list"]).await);
        assert!(
            table
                .lines()
                .any(|l| l.contains("bob@example.com") && l.contains("member")),
            "{table}"
        );
        assert!(!table.contains("carol"), "{table}");
        // Bob acts in Alice's tenant with X-App-ID.
        let as_bob_in_alice = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--app-id", alice.tenant_id.as_str()]);
            all.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>()
        };

        // Templates: a member drafts, only an admin approves.
        let created = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "templates",
                    "create",
                    "--name",
                    "welcome",
                    "--channel",
                    "email",
                    "--subject",
                    "Hello {{ name }}",
                    "--body",
                    "Welcome, {{ name }}!",
                    "--var",
                    "name=40",
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(created["status"], "draft", "{created}");
        let tpl = id_of(&created);
        let args = as_bob_in_alice(&["templates", "approve", "welcome"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = refused(delta(&ctl, &bob, &args).await, 7);
        assert!(err.contains("403"), "a member may not approve: {err}");
        let out = ok(delta(&ctl, &alice, &["templates", "approve", "welcome"]).await);
        assert!(
            out.contains(&format!("approved {tpl} welcome (email, approved")),
            "{out}"
        );
        let shown = ok(delta(&ctl, &alice, &["templates", "show", &tpl]).await);
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("status") && l.ends_with("approved")),
            "{shown}"
        );
        ok(delta(
            &ctl,
            &alice,
            &[
                "templates",
                "create",
                "--name",
                "nag",
                "--channel",
                "sms",
                "--body",
                "Pay up",
            ],
        )
        .await);
        let rejected = ok_json(
            delta(
                &ctl,
                &alice,
                &["templates", "reject", "nag", "--reason", "rude", "--json"],
            )
            .await,
        );
        assert_eq!(rejected["status"], "rejected", "{rejected}");
        let listed = ok_json(
            delta(
                &ctl,
                &alice,
                &["templates", "list", "--status", "approved", "--json"],
            )
            .await,
        );
        assert_eq!(
            listed
                .as_array()
                .map(|a| a.iter().map(id_of).collect::<Vec<_>>()),
            Some(vec![tpl.clone()]),
            "{listed}"
        );
        let err = refused(
            delta(&ctl, &alice, &["templates", "show", "tpl_nope"]).await,
            8,
        );
        assert!(err.contains("404"), "{err}");
        let err = refused(delta(&ctl, &alice, &["templates", "show", "nope"]).await, 8);
        assert!(err.contains("no template named nope"), "{err}");
        refused(
            delta(
                &ctl,
                &alice,
                &[
                    "templates",
                    "create",
                    "--name",
                    "x",
                    "--channel",
                    "pigeon",
                    "--body",
                    "b",
                ],
            )
            .await,
            2,
        );
        ok(delta(&ctl, &alice, &["templates", "delete", "nag"]).await);

        // Roles: bob becomes an admin, then leaves.
        let out = ok(delta(&ctl, &alice, &["members", "role", &bob.email, "admin"]).await);
        assert!(out.contains("bob@example.com is now admin"), "{out}");
        ok(delta(&ctl, &alice, &["members", "remove", &bob.email]).await);
        refused(
            delta(&ctl, &alice, &["members", "remove", "nobody@example.com"]).await,
            8,
        );

        // Keys: the secret once, it works, revoked it does not.
        let key = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "keys",
                    "create",
                    "--name",
                    "ci",
                    "--scope",
                    "agents:read",
                    "--json",
                ],
            )
            .await,
        );
        let secret = key["key"].as_str().expect("key").to_owned();
        assert!(secret.starts_with("dk_"), "{key}");
        let listed = ok(delta(&ctl, &alice, &["keys", "list"]).await);
        assert!(
            listed.contains(&id_of(&key)) && !listed.contains(&secret),
            "{listed}"
        );
        let out = ok(delta_with_key(ctl.url.clone(), secret.clone(), &["agents", "list"]).await);
        assert!(out.starts_with("id"), "{out}");
        ok(delta(&ctl, &alice, &["keys", "revoke", &id_of(&key)]).await);
        let err = refused(
            delta_with_key(ctl.url.clone(), secret, &["agents", "list"]).await,
            7,
        );
        assert!(err.contains("401"), "{err}");
        let out = ok(delta(&ctl, &alice, &["keys", "create", "--name", "human"]).await);
        assert!(
            out.lines().nth(1).is_some_and(|l| l.starts_with("dk_")),
            "{out}"
        );

        // Audit: a page, the next one, every one, filtered by action.
        let first =
            ok_json(delta(&ctl, &alice, &["audit", "list", "--limit", "2", "--json"]).await);
        assert_eq!(first["items"].as_array().map(Vec::len), Some(2), "{first}");
        let cursor = first["next_cursor"].as_str().expect("more than one page");
        let second = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "audit", "list", "--limit", "2", "--cursor", cursor, "--json",
                ],
            )
            .await,
        );
        assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
        let all = ok_json(
            delta(
                &ctl,
                &alice,
                &["audit", "list", "--all", "--limit", "2", "--json"],
            )
            .await,
        );
        let actions: Vec<&str> = all["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
            .unwrap_or_default();
        for action in [
            "member_invited",
            "template_approved",
            "api_key_created",
            "api_key_revoked",
        ] {
            assert!(actions.contains(&action), "{action} in {actions:?}");
        }
        assert_eq!(all["next_cursor"], Value::Null);
        let table = ok(delta(
            &ctl,
            &alice,
            &["audit", "list", "--all", "--action", "role_changed"],
        )
        .await);
        assert_eq!(table.lines().count(), 2, "heading and one entry: {table}");
        // The server filters (one page of entries of that user and action).
        let mine = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "audit",
                    "list",
                    "--action",
                    "api_key_created",
                    "--user",
                    &alice.user_id,
                    "--since",
                    "1d",
                    "--json",
                ],
            )
            .await,
        );
        let items = mine["items"].as_array().expect("items");
        assert!(!items.is_empty(), "{mine}");
        assert!(
            items.iter().all(|e| e["action"] == "api_key_created"),
            "{mine}"
        );
        let out = ok(delta(&ctl, &alice, &["audit", "list", "--limit", "1"]).await);
        assert!(out.contains("more: --cursor "), "{out}");

        // The message log: filters reach the API, bad ones are refused here.
        let page = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "messages",
                    "list",
                    "--channel",
                    "email",
                    "--since",
                    "7d",
                    "--until",
                    "0m",
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(page["items"], Value::Array(vec![]), "{page}");
        let out = ok(delta(
            &ctl,
            &alice,
            &["messages", "list", "--status", "sent", "--all"],
        )
        .await);
        assert_eq!(out.trim(), "no messages");
        let err = refused(
            delta(&ctl, &alice, &["messages", "list", "--since", "last week"]).await,
            2,
        );
        assert!(err.contains("--since"), "{err}");
        refused(
            delta(&ctl, &alice, &["messages", "list", "--channel", "pigeon"]).await,
            2,
        );
    }
);

both_with!(
    schedules_webhooks_and_event_endpoints,
    |config: &mut delta_control::config::ControlConfig| {
        config.allow_private_webhook_urls = true;
    },
    |ctl: Control| async move {
        let alice = ctl.register("alice").await;
        let agent = common::insert_agent(&ctl, &alice, "cron-agent", None).await;

        // Schedules: a yearly tick, so that none fires during the test.
        let created = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "schedules",
                    "create",
                    "cron-agent",
                    "--cron",
                    "0 0 1 1 *",
                    "--time-zone",
                    "Europe/Paris",
                    "--input",
                    r#"{"n":1}"#,
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(created["agent_id"], agent.as_str(), "{created}");
        assert_eq!(created["input"]["n"], 1, "{created}");
        let schedule = id_of(&created);
        let out = ok(delta(
            &ctl,
            &alice,
            &["schedules", "update", &schedule, "--disable"],
        )
        .await);
        assert!(out.contains("(0 0 1 1 * Europe/Paris, disabled)"), "{out}");
        let table = ok(delta(&ctl, &alice, &["schedules", "list", &agent]).await);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&schedule) && l.contains("false")),
            "{table}"
        );
        let shown = ok(delta(&ctl, &alice, &["schedules", "show", &schedule]).await);
        assert!(shown.contains("Europe/Paris"), "{shown}");
        let fires =
            ok_json(delta(&ctl, &alice, &["schedules", "fires", &schedule, "--json"]).await);
        assert_eq!(fires["items"], Value::Array(vec![]), "{fires}");
        let out = ok(delta(&ctl, &alice, &["schedules", "fires", &schedule]).await);
        assert_eq!(out.trim(), "no fires yet");
        refused(
            delta(
                &ctl,
                &alice,
                &["schedules", "create", "cron-agent", "--cron", "61 * * * *"],
            )
            .await,
            2,
        );
        refused(
            delta(
                &ctl,
                &alice,
                &[
                    "schedules",
                    "create",
                    "cron-agent",
                    "--cron",
                    "* * * * *",
                    "--input",
                    "{",
                ],
            )
            .await,
            2,
        );
        refused(
            delta(&ctl, &alice, &["schedules", "update", &schedule]).await,
            2,
        );
        ok(delta(&ctl, &alice, &["schedules", "delete", &schedule]).await);
        refused(
            delta(&ctl, &alice, &["schedules", "show", &schedule]).await,
            8,
        );

        // Inbound webhooks: the secret at creation and rotation only.
        let made = ok_json(
            delta(
                &ctl,
                &alice,
                &["webhooks", "create", "cron-agent", "--json"],
            )
            .await,
        );
        let hook = id_of(&made);
        let first = made["secret"].as_str().expect("secret").to_owned();
        let table = ok(delta(&ctl, &alice, &["webhooks", "list", "cron-agent"]).await);
        assert!(table.contains(&hook) && !table.contains(&first), "{table}");
        let out = ok(delta(&ctl, &alice, &["webhooks", "rotate-secret", &hook]).await);
        let second = out.lines().nth(1).unwrap_or_default();
        assert!(second.starts_with("whsec_") && second != first, "{out}");
        ok(delta(&ctl, &alice, &["webhooks", "delete", &hook]).await);
        refused(
            delta(&ctl, &alice, &["webhooks", "rotate-secret", &hook]).await,
            8,
        );

        // Outbound event endpoints and their deliveries.
        let endpoint = ok_json(
            delta(
                &ctl,
                &alice,
                &[
                    "webhook-endpoints",
                    "create",
                    "--url",
                    "http://127.0.0.1:9/events",
                    "--event",
                    "bounty.funded",
                    "--event",
                    "bounty.completed",
                    "--description",
                    "ops",
                    "--json",
                ],
            )
            .await,
        );
        assert!(
            endpoint["secret"]
                .as_str()
                .is_some_and(|s| s.starts_with("whsec_")),
            "{endpoint}"
        );
        let table = ok(delta(&ctl, &alice, &["webhook-endpoints", "list"]).await);
        assert!(
            table
                .lines()
                .any(|l| l.contains(&id_of(&endpoint))
                    && l.contains("bounty.funded,bounty.completed")),
            "{table}"
        );
        refused(
            delta(
                &ctl,
                &alice,
                &[
                    "webhook-endpoints",
                    "create",
                    "--url",
                    "ftp://x",
                    "--event",
                    "bounty.funded",
                ],
            )
            .await,
            2,
        );
        let deliveries = ok_json(
            delta(
                &ctl,
                &alice,
                &["webhook-deliveries", "list", "--status", "dead", "--json"],
            )
            .await,
        );
        assert_eq!(deliveries["items"], Value::Array(vec![]), "{deliveries}");
        let err = refused(
            delta(&ctl, &alice, &["webhook-deliveries", "replay", "whd_nope"]).await,
            8,
        );
        assert!(err.contains("404"), "{err}");
        ok(delta(
            &ctl,
            &alice,
            &["webhook-endpoints", "delete", &id_of(&endpoint)],
        )
        .await);
        let out = ok(delta(&ctl, &alice, &["webhook-endpoints", "list"]).await);
        assert_eq!(out.trim(), "no webhook endpoints");
    }
);

#[test]
fn completions_name_every_command_group() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = Command::new(env!("CARGO_BIN_EXE_delta"))
            .args(["completions", shell])
            .output()
            .expect("delta");
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for group in [
            "budgets",
            "templates",
            "messages",
            "keys",
            "members",
            "invitations",
            "audit",
            "schedules",
            "webhook-deliveries",
            "auto-approve",
        ] {
            assert!(script.contains(group), "{shell} completes {group}");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_delta"))
        .args(["completions", "tcsh"])
        .output()
        .expect("delta");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad input");
}

both!(message_log_filters_and_pages, |ctl: Control| async move {
    use delta_node::model::{MessageAttempt, RunUsage};
    let alice = ctl.register("alice").await;
    let agent = common::insert_agent(&ctl, &alice, "mailer", Some("node-m")).await;
    let other = common::insert_agent(&ctl, &alice, "other", Some("node-m")).await;
    let credential = ctl.node_credential("node-m").await;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let attempt = |channel: &str, status: &str, at_ms: i64| MessageAttempt {
        channel: channel.into(),
        template_id: "welcome".into(),
        recipient: if channel == "sms" {
            "+14155550100".into()
        } else {
            "ada@example.com".into()
        },
        status: status.into(),
        reason: (status != "sent").then(|| "rate-limited".to_owned()),
        tokens: if status == "sent" { 10 } else { 0 },
        provider_id: (status == "sent").then(|| format!("p-{at_ms}")),
        at_ms,
    };
    let run = |id: &str, agent: &str, log: Vec<MessageAttempt>| RunUsage {
        run_id: id.into(),
        agent_id: agent.into(),
        tenant_id: alice.tenant_id.clone(),
        outcome: "completed".into(),
        finished_at_ms: now,
        message_log: log,
        ..RunUsage::default()
    };
    let batch = serde_json::json!({
        "batch_id": "cli-batch",
        "node_id": "node-m",
        "records": [
            run("run_a", &agent, vec![
                attempt("email", "sent", now - 3_600_000),
                attempt("sms", "refused", now - 1_800_000),
                attempt("email", "failed", now - 10 * 86_400_000),
            ]),
            run("run_b", &other, vec![attempt("email", "sent", now - 60_000)]),
        ],
    });
    let resp = ctl
        .client
        .post(ctl.url("/v1/nodes/usage"))
        .bearer_auth(&credential)
        .header("Idempotency-Key", "cli-batch")
        .json(&batch)
        .send()
        .await
        .expect("usage");
    assert!(resp.status().is_success(), "{}", resp.status());

    let all = ok_json(
        delta(
            &ctl,
            &alice,
            &["messages", "list", "--all", "--limit", "1", "--json"],
        )
        .await,
    );
    assert_eq!(all["items"].as_array().map(Vec::len), Some(4), "{all}");
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .map(|a| a.iter().map(id_of).collect())
            .unwrap_or_default()
    };
    let sent = ok_json(
        delta(
            &ctl,
            &alice,
            &[
                "messages",
                "list",
                "--channel",
                "email",
                "--status",
                "sent",
                "--agent",
                "mailer",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(ids(&sent), ["run_a:0"], "{sent}");
    let recent = ok_json(
        delta(
            &ctl,
            &alice,
            &[
                "messages", "list", "--since", "2h", "--agent", "mailer", "--json",
            ],
        )
        .await,
    );
    assert_eq!(
        ids(&recent).len(),
        2,
        "the ten-day-old one is left out: {recent}"
    );
    let old = ok_json(
        delta(
            &ctl,
            &alice,
            &["messages", "list", "--until", "1d", "--json"],
        )
        .await,
    );
    assert_eq!(ids(&old), ["run_a:2"], "{old}");
    let first = ok_json(
        delta(
            &ctl,
            &alice,
            &["messages", "list", "--limit", "2", "--json"],
        )
        .await,
    );
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = ok_json(
        delta(
            &ctl,
            &alice,
            &[
                "messages", "list", "--limit", "2", "--cursor", cursor, "--json",
            ],
        )
        .await,
    );
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, ids(&all), "two pages are the whole log");
    let table = ok(delta(&ctl, &alice, &["messages", "list", "--status", "refused"]).await);
    assert!(
        table
            .lines()
            .any(|l| l.contains("sms") && l.contains("refused") && l.contains("+14155550100")),
        "{table}"
    );
});
