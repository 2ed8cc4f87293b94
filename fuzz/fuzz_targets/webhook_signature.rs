//! An inbound webhook delivery's `X-Delta-Signature`, as `POST
//! /v1/hooks/{id}` checks it: any header, secret, body and clock are
//! answered without a panic; what passes was signed with that secret over
//! that body within the replay window; a delivery its sender signed
//! properly passes, and the same signature over a changed body does not.
#![no_main]

use arbitrary::Arbitrary;
use delta_triggers::signature::{REPLAY_WINDOW_SECS, SignatureError, sign, verify};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    header: Option<String>,
    secret: String,
    body: Vec<u8>,
    now_secs: i64,
    signed_at: u32,
    skew: i16,
    flip: usize,
}

fuzz_target!(|input: Input| {
    // Whatever arrives.
    if let Ok(ok) = verify(
        input.header.as_deref(),
        &input.secret,
        &input.body,
        input.now_secs,
    ) {
        assert!(
            input.now_secs.abs_diff(ok.t) <= REPLAY_WINDOW_SECS.unsigned_abs(),
            "{input:?}: {ok:?}"
        );
        assert_eq!(ok.v1, sign(&input.secret, ok.t, &input.body), "{input:?}");
    }

    // What a sender makes.
    let t = i64::from(input.signed_at);
    let header = format!("t={t},v1={}", sign(&input.secret, t, &input.body));
    let now = t + i64::from(input.skew);
    let checked = verify(Some(&header), &input.secret, &input.body, now);
    if now.abs_diff(t) <= REPLAY_WINDOW_SECS.unsigned_abs() {
        assert!(checked.is_ok(), "{input:?}: {checked:?}");
        if !input.body.is_empty() {
            let mut changed = input.body.clone();
            let at = input.flip % changed.len();
            changed[at] ^= 1;
            assert_eq!(
                verify(Some(&header), &input.secret, &changed, now),
                Err(SignatureError::Mismatch),
                "{input:?}"
            );
        }
    } else {
        assert_eq!(checked, Err(SignatureError::Stale), "{input:?}");
    }
});
