//! The sandbox grants nothing: hostile-escape's attempts to reach files,
//! environment, arguments and the network all fail inside the guest.
//!
//! Its own test binary, because it sets a host environment variable that no
//! other test thread may be reading at the time.

use crate::common;

use common::*;
use delta_guest_artifacts as guests;
use delta_runtime::{InvocationLimits, Outcome};

#[tokio::test]
async fn escape_attempts_all_fail_inside_the_guest() {
    // A secret in the host's environment must not be visible to the guest.
    // SAFETY of the test: set before any thread reads the environment.
    unsafe_env_set();
    let rt = runtime();
    let guest = load(&rt, guests::HOSTILE_ESCAPE).await;
    let report = run(&rt, &guest, "{}", InvocationLimits::default()).await;
    let Outcome::Completed { output } = &report.outcome else {
        panic!("hostile-escape must complete and report: {report:?}");
    };
    let value: serde_json::Value = serde_json::from_str(output).expect("json");
    let checks = value["checks"].as_object().expect("checks object");
    for name in [
        "read-etc-passwd",
        "list-root",
        "list-cwd",
        "env-vars",
        "env-probe",
        "args",
        "tcp-connect-localhost",
        "tcp-connect-internet",
        "udp-bind",
        "dns-localhost",
        "dns-example-com",
        "create-tmp-file",
    ] {
        let check = checks
            .get(name)
            .unwrap_or_else(|| panic!("hostile-escape did not report {name}: {output}"));
        assert_eq!(check["allowed"], false, "{name} was allowed: {check}");
    }
    assert_eq!(
        checks.len(),
        12,
        "a check was added without a test: {output}"
    );
    assert_hello_works(&rt).await;
}

#[allow(unsafe_code)]
fn unsafe_env_set() {
    // SAFETY: called at the start of the test before the runtime (and its
    // threads) exists; nextest runs each test in its own process.
    unsafe { std::env::set_var("DELTA_ESCAPE_PROBE", "host-secret") };
}
