//! When a schedule fires: its cron expression read in its time zone, the
//! catch-up rule after downtime and the jitter. Pure functions of the
//! schedule and a clock, so the fire loop and the handlers agree and the
//! rules are tested without a database.

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Longest cron expression accepted, bytes.
pub const MAX_CRON_LEN: usize = 128;
/// Longest time zone name accepted, bytes (the IANA database's longest is
/// 32: `America/Argentina/ComodRivadavia`).
pub const MAX_TZ_LEN: usize = 64;
/// A tick fired later than this after its time is counted as missed (the
/// control plane was down): the catch-up rule decides what happens. Longer
/// than the fire loop's period and a busy database's delays.
pub const MISSED_AFTER_MS: i64 = 60_000;

/// Most ticks skipped in a repeated hour (one a minute, and time zones
/// that set clocks back by up to two hours) before the search gives up.
const MAX_REPEATED_TICKS: usize = 240;

/// The five fields, in order (for error messages).
const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

/// Why a schedule's timing is refused (422).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    /// Not a 5-field cron expression croner accepts.
    #[error("cron: {0}")]
    Cron(String),
    /// Not an IANA time zone name.
    #[error("time_zone: unknown IANA time zone {0:?}")]
    TimeZone(String),
    /// Valid, but it never fires (e.g. 30 February).
    #[error("cron: the expression never fires")]
    Never,
}

/// What to do with ticks missed while no control plane ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Fire nothing for them; the next tick in the future is next.
    Skip,
    /// Fire once for all of them, then carry on.
    RunOnce,
}

impl CatchUp {
    /// The API's and the database's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::RunOnce => "run_once",
        }
    }

    /// From the stored name (unknown: skip, the cautious choice).
    pub fn parse(s: &str) -> Self {
        if s == "run_once" {
            Self::RunOnce
        } else {
            Self::Skip
        }
    }
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    tz: Tz,
}

impl Timing {
    /// Parse `cron` (exactly 5 fields: minute hour day-of-month month
    /// day-of-week; no seconds, no `@nicknames`) in `time_zone` (IANA).
    pub fn parse(cron: &str, time_zone: &str) -> Result<Self, TimingError> {
        if cron.len() > MAX_CRON_LEN {
            return Err(TimingError::Cron(format!(
                "longer than {MAX_CRON_LEN} bytes"
            )));
        }
        if cron.split_whitespace().count() != 5 || cron.contains('@') {
            return Err(TimingError::Cron(
                "five fields expected: minute hour day-of-month month day-of-week".into(),
            ));
        }
        // Refused before croner sees them: an empty list item (`,` alone,
        // `1,,2`, `5,`), or a character that has no meaning in its field
        // (`L` in the minutes, `#` in the hours). croner reads such a field
        // as matching nothing, then searches years of minutes before it
        // finds the expression never fires: seconds of CPU per request
        // (found by fuzz/fuzz_targets/cron.rs).
        for (i, field) in cron.split_whitespace().enumerate() {
            if field.split(',').any(str::is_empty) {
                return Err(TimingError::Cron(format!(
                    "{}: a list (`,`) has an empty item",
                    FIELD_NAMES[i]
                )));
            }
            let allowed = |c: char| {
                c.is_ascii_digit()
                    || matches!(c, '*' | '/' | ',' | '-')
                    || match i {
                        2 => matches!(c, 'L' | 'W' | '?'),
                        3 => c.is_ascii_alphabetic(),
                        // Letters: names (MON) and `L` (5L, the last Friday).
                        4 => c.is_ascii_alphabetic() || matches!(c, '#' | '?'),
                        _ => false,
                    }
            };
            if let Some(c) = field.chars().find(|c| !allowed(*c)) {
                return Err(TimingError::Cron(format!(
                    "{}: {c:?} has no meaning there",
                    FIELD_NAMES[i]
                )));
            }
        }
        if time_zone.len() > MAX_TZ_LEN {
            return Err(TimingError::TimeZone(time_zone.chars().take(64).collect()));
        }
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| TimingError::TimeZone(time_zone.to_owned()))?;
        let cron = Cron::new(cron)
            .parse()
            .map_err(|e| TimingError::Cron(e.to_string()))?;
        let timing = Self { cron, tz };
        // Refused now rather than found out by the fire loop.
        timing.next_after(0).ok_or(TimingError::Never)?;
        Ok(timing)
    }

    /// The first tick strictly after `after_ms` (ms since the epoch); none
    /// if the expression never fires again (or the search gives up).
    ///
    /// In the hour a clock is set back, each local time exists twice and
    /// croner answers its first instant, so from inside the second pass the
    /// next local tick can lie before `after_ms`. A schedule given such a
    /// tick would be due again at once, every pass, for up to an hour
    /// (found by fuzz/fuzz_targets/cron.rs). Those ticks are skipped, so
    /// each local time fires once, and the search goes on after them.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms).single()?;
        let mut local = after.with_timezone(&self.tz);
        for _ in 0..MAX_REPEATED_TICKS {
            let next = self.cron.find_next_occurrence(&local, false).ok()?;
            let at = next.timestamp_millis();
            if at > after_ms {
                return Some(at);
            }
            local = next;
        }
        None
    }
}

/// The jitter of one tick: a delay in `0..=jitter_secs` seconds, the same
/// on every replica (a hash of the schedule and the tick, not a random
/// draw, so replicas claim the same `next_fire_at_ms`) and different from
/// one tick to the next.
pub fn jitter_ms(schedule_id: &str, tick_ms: i64, jitter_secs: i64) -> i64 {
    if jitter_secs <= 0 {
        return 0;
    }
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new()
        .chain_update(schedule_id.as_bytes())
        .chain_update(tick_ms.to_be_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    let span = u64::try_from(jitter_secs.saturating_mul(1000)).unwrap_or(0) + 1;
    i64::try_from(u64::from_be_bytes(head) % span).unwrap_or(0)
}

/// What the fire loop does with a due schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Start a run for `tick_ms` (false: the missed ticks are skipped).
    pub fire: bool,
    /// The tick being fired or skipped.
    pub tick_ms: i64,
    /// The next cron tick (none: the expression never fires again).
    pub next_tick_ms: Option<i64>,
}

/// Decide about the due tick `tick_ms` at `now_ms`. On time: fire it. Late
/// by more than [`MISSED_AFTER_MS`] (downtime): `skip` fires nothing,
/// `run_once` fires once for every missed tick. Either way the next tick
/// is the first one after now, so a long downtime never fires a backlog.
pub fn decide(timing: &Timing, catch_up: CatchUp, tick_ms: i64, now_ms: i64) -> Decision {
    let missed = now_ms.saturating_sub(tick_ms) > MISSED_AFTER_MS;
    Decision {
        fire: !missed || catch_up == CatchUp::RunOnce,
        tick_ms,
        next_tick_ms: timing.next_after(now_ms.max(tick_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn five_fields_and_iana_zones_only() {
        for good in [
            "*/5 * * * *",
            "*/15 9-17 * * MON-FRI",
            "0 0 L * *",
            "0 0 15W * ?",
            "0 12 * JAN,jul *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "1,2,3 0-23/2 1-31 1-12 0-6",
        ] {
            assert!(
                Timing::parse(good, "Europe/Paris").is_ok(),
                "{good:?} refused"
            );
        }
        for bad in [
            "* * * *",
            "0 * * * * *",
            "@daily",
            "61 * * * *",
            "x * * * *",
            "",
            // Empty list items (`,` alone took croner seconds to refuse).
            ", * * * *",
            "1,,2 * * * *",
            "5, * * * *",
            "* * * * ,MON",
            // Characters outside their field (`L` in the minutes took
            // croner seconds to refuse).
            "L * * * *",
            "* # * * *",
            "* * * W *",
        ] {
            assert!(
                matches!(Timing::parse(bad, "UTC"), Err(TimingError::Cron(_))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(
            Timing::parse("0 0 * * *", "Mars/Olympus").expect_err("refused"),
            TimingError::TimeZone("Mars/Olympus".into())
        );
        assert_eq!(
            Timing::parse("0 0 30 2 *", "UTC").expect_err("refused"),
            TimingError::Never
        );
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        // 2026-01-15 00:00 UTC; 09:00 in Paris is 08:00 UTC in winter.
        let t0 = 1_768_435_200_000;
        let paris = Timing::parse("0 9 * * *", "Europe/Paris").expect("valid");
        assert_eq!(paris.next_after(t0), Some(t0 + 8 * 60 * MIN));
        let utc = Timing::parse("0 9 * * *", "UTC").expect("valid");
        assert_eq!(utc.next_after(t0), Some(t0 + 9 * 60 * MIN));
        // Strictly after: a tick is not its own successor.
        assert_eq!(utc.next_after(t0 + 9 * 60 * MIN), Some(t0 + 33 * 60 * MIN));
    }

    #[test]
    fn ticks_go_on_across_daylight_saving_changes() {
        // Paris springs forward on 2026-03-29 at 02:00 local (01:00 UTC):
        // 02:30 does not exist that day, and the schedule must not stop.
        let before = 1_774_738_800_000; // 2026-03-28 23:00 UTC
        let at_230 = Timing::parse("30 2 * * *", "Europe/Paris").expect("valid");
        let mut t = before;
        for _ in 0..3 {
            let next = at_230.next_after(t).expect("keeps firing");
            assert!(next > t);
            t = next;
        }
        assert!(t - before < 4 * 24 * 3_600_000, "about daily: {t}");
        // And back on 2026-10-25 (01:30 local happens twice).
        let autumn = 1_792_882_800_000; // 2026-10-24 23:00 UTC
        let at_130 = Timing::parse("30 1 * * *", "Europe/Paris").expect("valid");
        let first = at_130.next_after(autumn).expect("fires");
        let second = at_130.next_after(first).expect("fires again");
        assert!(second > first);
        // From inside the repeated hour, the next tick is never in the past
        // (croner maps a repeated local time to its first instant).
        let every_minute = Timing::parse("* * * * *", "Europe/Paris").expect("valid");
        let second_pass = 1_792_891_800_000; // 2026-10-25 01:30 UTC = 02:30 CET
        for after in (0..120).map(|m| second_pass + m * 30_000) {
            let next = every_minute.next_after(after).expect("fires");
            assert!(next > after, "{next} after {after}");
            assert!(next - after <= 2 * 3_600_000, "{next} after {after}");
        }
        // What the fuzzer found: April in Santiago, a week late.
        let april = Timing::parse("* * * 4 *", "America/Santiago").expect("valid");
        let after = 1_870_313_161_738;
        assert!(april.next_after(after).is_some_and(|n| n > after));
    }

    #[test]
    fn downtime_skips_or_fires_once() {
        let every_minute = Timing::parse("* * * * *", "UTC").expect("valid");
        let tick = 1_768_435_200_000;
        let on_time = decide(&every_minute, CatchUp::Skip, tick, tick + 500);
        assert!(on_time.fire);
        assert_eq!(on_time.next_tick_ms, Some(tick + MIN));
        let down = tick + 60 * MIN + 1_000;
        let skipped = decide(&every_minute, CatchUp::Skip, tick, down);
        assert!(!skipped.fire);
        assert_eq!(skipped.next_tick_ms, Some(tick + 61 * MIN));
        let once = decide(&every_minute, CatchUp::RunOnce, tick, down);
        assert!(once.fire);
        assert_eq!(once.next_tick_ms, Some(tick + 61 * MIN));
    }

    #[test]
    fn jitter_is_bounded_stable_and_varies() {
        assert_eq!(jitter_ms("sch_a", 1, 0), 0);
        let all: Vec<i64> = (0..50).map(|t| jitter_ms("sch_a", t * MIN, 10)).collect();
        assert!(all.iter().all(|j| (0..=10_000).contains(j)));
        assert_eq!(all[3], jitter_ms("sch_a", 3 * MIN, 10));
        assert!(all.iter().any(|j| *j != all[0]));
    }
}
