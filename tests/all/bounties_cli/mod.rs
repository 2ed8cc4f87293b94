//! `delta bounties ...` and `delta ledger balance` end to end, against a
//! control plane and a node from the control plane's test harness: alice
//! (a business) creates, funds, lists, shows, approves and cancels; bob
//! submits with his agent (by name) and sees his payout; `--json` prints
//! the API's answers. `walkthrough` runs README.md's bounty walkthrough
//! as written; `replicas` races money operations across two control-plane
//! replicas and kills one.

use crate::common;

pub(crate) mod replicas;
mod walkthrough;

use std::process::Command;

use common::bounties::{create_agent, top_up, upload};
use common::{Control, Dialect, Session, start_node_in_process};
use delta_guest_artifacts as guests;
use serde_json::Value;

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_posts_funds_reviews_and_pays_a_bounty() {
    let ctl = Control::start(Dialect::Sqlite).await;
    let _node = start_node_in_process(&ctl, "cli-node", "").await;
    let op = ctl.operator().await;
    let alice = ctl.register("alice").await;
    let bob = ctl.register("bob").await;
    let verifier = upload(
        &ctl,
        &alice,
        &std::fs::read(guests::JSON_VERIFIER).expect("guest"),
    )
    .await;
    let hello = upload(
        &ctl,
        &bob,
        &std::fs::read(guests::HELLO_AGENT).expect("guest"),
    )
    .await;
    create_agent(&ctl, &bob, "solver", &hello).await;
    top_up(&ctl, &op, &alice.tenant_id, 5_000, "EUR").await;

    // The CLI blocks: run it off the runtime's threads.
    let run = |who: Session, args: Vec<String>| {
        let ctl_url = ctl.url.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_delta"))
                .args(&args)
                .env("DELTA_API_URL", ctl_url)
                .env("DELTA_API_KEY", &who.access)
                .output()
                .expect("delta");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let (code, out, err) = run(
        alice.clone(),
        args(&[
            "bounties",
            "create",
            "--title",
            "The answer",
            "--spec",
            r#"{"expected":{"answer":42}}"#,
            "--reward",
            "1000",
            "--deadline-in",
            "600",
            "--verifier",
            &verifier,
            "--json",
        ]),
    )
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let bounty = json_of(&out);
    assert_eq!(bounty["status"], "draft");
    let id = bounty["id"].as_str().expect("id").to_owned();

    let (code, out, err) = run(alice.clone(), args(&["bounties", "fund", &id]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("funded {id} (open, 1000 EUR)")),
        "{out}"
    );

    let (code, out, err) = run(alice.clone(), args(&["ledger", "balance"]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    let tenant_line = out
        .lines()
        .find(|l| l.starts_with("tenant"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        tenant_line.split_whitespace().collect::<Vec<_>>(),
        ["tenant", "EUR", "5000", "4000"],
        "{out}"
    );

    let (code, out, err) = run(bob.clone(), args(&["bounties", "list", "--status", "open"]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id) && out.contains("The answer"), "{out}");

    let (code, out, err) = run(
        bob.clone(),
        args(&[
            "bounties",
            "submit",
            &id,
            "--agent",
            "solver",
            "--payload",
            r#"{"answer":42}"#,
            "--json",
        ]),
    )
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let sub = json_of(&out);
    assert_eq!(sub["status"], "verified", "{sub}");
    assert_eq!(sub["passed"], true);
    let sub_id = sub["id"].as_str().expect("id").to_owned();

    let (code, out, err) = run(alice.clone(), args(&["bounties", "show", &id]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&sub_id) && out.contains("verified"), "{out}");

    let (code, out, err) = run(alice.clone(), args(&["bounties", "approve", &sub_id]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("completed"), "{out}");

    let (code, out, err) = run(bob.clone(), args(&["ledger", "balance", "--json"]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    let accounts = json_of(&out);
    let tenant = accounts["items"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["kind"] == "tenant"))
        .cloned()
        .unwrap_or_else(|| panic!("{accounts}"));
    assert_eq!(tenant["balance_minor"], 850, "{accounts}");

    // Reject and cancel: a second bounty.
    let (code, out, err) = run(
        alice.clone(),
        args(&[
            "bounties",
            "create",
            "--title",
            "Again",
            "--spec",
            r#"{"expected":{"answer":42}}"#,
            "--reward",
            "500",
            "--deadline-in",
            "600",
            "--verifier",
            &verifier,
            "--json",
        ]),
    )
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let again = json_of(&out)["id"].as_str().expect("id").to_owned();
    let (code, _, err) = run(alice.clone(), args(&["bounties", "fund", &again]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(
        bob.clone(),
        args(&[
            "bounties",
            "submit",
            &again,
            "--agent",
            "solver",
            "--payload",
            "{}",
            "--json",
        ]),
    )
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let wrong = json_of(&out)["id"].as_str().expect("id").to_owned();
    let (code, out, err) = run(alice.clone(), args(&["bounties", "reject", &wrong]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("rejected {wrong} (rejected)")),
        "{out}"
    );
    let (code, out, err) = run(alice.clone(), args(&["bounties", "cancel", &again]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cancelled") && out.contains(&again), "{out}");

    // The closed bounty's events replay in order, and the stream ends.
    let (code, out, err) = run(alice.clone(), args(&["bounties", "events", &again]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        kinds,
        [
            "bounty.funded",
            "claim.created",
            "submission.created",
            "submission.verified",
            "submission.rejected",
            "bounty.refunded"
        ],
        "{out}"
    );
    // Bob's implicit claim, expired with the bounty; it cannot be claimed
    // or released any more.
    let (code, out, err) = run(bob.clone(), args(&["bounties", "claims", &again, "--json"]))
        .await
        .expect("join");
    assert_eq!(code, 0, "{err}");
    let claims = json_of(&out);
    assert_eq!(claims[0]["status"], "expired", "{claims}");
    let claim_id = claims[0]["id"].as_str().expect("id").to_owned();
    let (code, _, err) = run(bob.clone(), args(&["bounties", "release", &claim_id]))
        .await
        .expect("join");
    assert_eq!(code, 9, "a 409: {err}");
    let (code, _, err) = run(
        bob.clone(),
        args(&["bounties", "claim", &again, "--agent", "solver"]),
    )
    .await
    .expect("join");
    assert_eq!(code, 9, "a 409: {err}");

    // Refusals exit non-zero with the API's code.
    let (code, _, err) = run(bob.clone(), args(&["bounties", "approve", &sub_id]))
        .await
        .expect("join");
    assert_ne!(code, 0);
    assert!(err.contains("403") || err.contains("forbidden"), "{err}");
    let (code, _, err) = run(
        alice.clone(),
        args(&[
            "bounties",
            "create",
            "--title",
            "x",
            "--spec",
            "{",
            "--reward",
            "1",
            "--deadline-in",
            "60",
            "--verifier",
            &verifier,
        ]),
    )
    .await
    .expect("join");
    assert_ne!(code, 0);
    assert!(err.contains("--spec is not JSON"), "{err}");
}
