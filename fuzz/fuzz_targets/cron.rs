//! A schedule's cron expression and time zone, as `POST
//! /v1/agents/{id}/schedules` and the fire loop read them: parsing never
//! panics and refuses what is too long; a parsed timing's next tick is
//! strictly later than the time it was asked after (a tick that did not
//! move forward would fire forever); the catch-up decision fires every
//! tick that is on time; the jitter stays within its bound.
#![no_main]

use arbitrary::Arbitrary;
use delta_triggers::cron::{CatchUp, MAX_CRON_LEN, MISSED_AFTER_MS, Timing, decide, jitter_ms};
use libfuzzer_sys::fuzz_target;

/// Times are kept between 1970 and 2100: the API's range.
const LATEST_MS: i64 = 4_102_444_800_000;

/// What cron fields are made of, so that most generated expressions reach
/// croner's parser (arbitrary text rarely has five fields).
const ALPHABET: &[u8] = b"0123456789*/,-?LW# ";
const NAMES: &[&str] = &["MON", "sun", "FRI", "JAN", "dec", "feb"];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Santiago",
];

#[derive(Debug, Arbitrary)]
struct Input {
    /// Five fields of `ALPHABET` and names, or `raw` as it is.
    fields: Option<[Vec<u8>; 5]>,
    raw: String,
    /// One of `ZONES` (daylight saving, odd offsets), or `time_zone`.
    zone: Option<u8>,
    time_zone: String,
    after_ms: u64,
    late_ms: u32,
    run_once: bool,
    schedule_id: String,
    jitter_secs: u16,
}

fuzz_target!(|input: Input| {
    let jitter_secs = i64::from(input.jitter_secs % 3_601);
    let after = i64::try_from(input.after_ms % LATEST_MS as u64).unwrap_or(0);
    let jitter = jitter_ms(&input.schedule_id, after, jitter_secs);
    assert!((0..=jitter_secs * 1000).contains(&jitter), "{jitter}");

    let cron = match &input.fields {
        Some(fields) => fields
            .iter()
            .map(|f| {
                let mut field: String = f
                    .iter()
                    .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                    .collect();
                if let Some(b) = f.first().filter(|b| **b > 200) {
                    field.push_str(NAMES[usize::from(*b) % NAMES.len()]);
                }
                if field.is_empty() {
                    "*".to_owned()
                } else {
                    field
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => input.raw.clone(),
    };
    let zone = match input.zone {
        Some(z) => ZONES[usize::from(z) % ZONES.len()],
        None => input.time_zone.as_str(),
    };
    let parsed = Timing::parse(&cron, zone);
    if cron.len() > MAX_CRON_LEN {
        assert!(parsed.is_err());
    }
    let Ok(timing) = parsed else {
        return;
    };
    let Some(tick) = timing.next_after(after) else {
        return;
    };
    assert!(
        tick > after,
        "{input:?}: next tick {tick} not after {after}"
    );
    if let Some(again) = timing.next_after(tick) {
        assert!(again > tick, "{input:?}: {again} after {tick}");
    }
    let now = tick.saturating_add(i64::from(input.late_ms));
    let catch_up = if input.run_once {
        CatchUp::RunOnce
    } else {
        CatchUp::Skip
    };
    let decision = decide(&timing, catch_up, tick, now);
    assert_eq!(decision.tick_ms, tick);
    if now - tick <= MISSED_AFTER_MS || input.run_once {
        assert!(decision.fire, "{input:?}: {decision:?}");
    }
    if let Some(next) = decision.next_tick_ms {
        assert!(next > now.max(tick), "{input:?}: {decision:?}");
    }
});
