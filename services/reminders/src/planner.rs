//! When each dose of a medication schedule is due: pure, no I/O, no clock of its own (the caller
//! passes the window), so every rule below is tested with fixed instants.
//!
//! # Wall-clock time, and why the `rrule` crate does not see the time zone
//!
//! A dose "at 08:00" means 08:00 on the patient's wall clock, in winter and in summer. The rule is
//! expanded with the `rrule` crate in *floating* time (its UTC stand-in, which has no daylight
//! saving), so it yields exactly the local date-times the care team wrote, and each local time is
//! then turned into an instant here ([`resolve_local`]). Handing the zone to `rrule` instead
//! works on ordinary days, but for a local time that does not exist or exists twice it falls back
//! to "local midnight + time of day" and silently drops the dose when midnight itself is skipped
//! or repeated (zones that change at 00:00, e.g. America/Havana); resolving here gives one rule
//! for every zone (see the test `rrule_with_the_zone_drops_doses_when_midnight_is_skipped`).
//!
//! The DST rules:
//! - a local time skipped by the spring change fires once, at the next valid local time: the end
//!   of the gap (02:30 in New York → 03:00 EDT). A patient's dose is not moved later than it must
//!   be. (RFC 5545 §3.3.5 would shift it by the gap length, to 03:30; calendars differ here and
//!   for a medicine the earliest valid time is the one that keeps the interval to the next dose.)
//! - a local time repeated in autumn fires once, at its first occurrence (01:30 EDT, not EST).
//!
//! Consequences of floating expansion: `INTERVAL` counts local days from `starts_on` (every other
//! day stays on the same parity whenever the plan is computed), and a rule's `UNTIL` is compared
//! with local wall-clock time as if it were local (`ends_on` is the field meant for ending).
//!
//! # Quiet hours
//!
//! Quiet hours are the patient's, in the patient's own zone, which may differ from the schedule's
//! (a patient who travels keeps their nights). They apply to the resolved instant: a dose inside
//! them is delayed to their end or skipped, per schedule. A delayed dose keeps the identity of
//! its original slot, so changing quiet hours later moves it instead of planning a second one.

use std::collections::HashSet;

use careloop_core::{
    MedicationScheduleId, ParseError, QuietHours, QuietHoursPolicy, RecurrenceRule, TimeZone,
};
use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone as _, Utc};

/// The most slots one window may hold. A rule that yields more is a data-entry mistake for a
/// medication (hourly for months), and the bound keeps planning cheap whatever was entered.
pub const MAX_SLOTS_PER_WINDOW: u16 = 10_000;

/// What a schedule says about time: the rule, the zone its wall-clock times are in, and the dates
/// it runs (both inclusive, local).
#[derive(Debug, Clone, Copy)]
pub struct Recurrence<'a> {
    pub rule: &'a RecurrenceRule,
    pub timezone: TimeZone,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
}

/// The patient's quiet hours, the zone they are in, and what a schedule does with a dose that
/// falls inside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietRule {
    pub hours: QuietHours,
    pub timezone: TimeZone,
    pub policy: QuietHoursPolicy,
}

impl QuietRule {
    /// When a reminder resolved to `at` may be sent: `at` itself outside quiet hours, their end
    /// when delayed, `None` when skipped.
    pub fn apply(self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.timezone.tz();
        let local = at.with_timezone(&tz).naive_local();
        if !self.hours.contains(local.time()) {
            return Some(at);
        }
        match self.policy {
            QuietHoursPolicy::Skip => None,
            QuietHoursPolicy::Delay => {
                // A window across midnight (22:00-07:00) entered in the evening ends tomorrow;
                // entered after midnight, or a window within one day, it ends today.
                let wraps = self.hours.start() > self.hours.end();
                let end_day = if wraps && local.time() >= self.hours.start() {
                    local.date().succ_opt()?
                } else {
                    local.date()
                };
                resolve_local(tz, end_day.and_time(self.hours.end()))
            }
        }
    }
}

/// One dose to remind of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dose {
    /// The slot as the rule wrote it: local date and time in the schedule's zone. It names the
    /// dose, whatever quiet hours or a later change of zone do to when it is sent.
    pub slot: NaiveDateTime,
    /// When the reminder is sent.
    pub due_at: DateTime<Utc>,
}

/// The idempotency key of a schedule's dose. It is built from the original local slot, not the
/// instant, so re-planning after a change of zone or quiet hours finds the dose already planned
/// (or already sent) instead of creating a second one.
pub fn idempotency_key(schedule: MedicationScheduleId, slot: NaiveDateTime) -> String {
    format!("schedule:{schedule}:{}", slot.format("%Y-%m-%dT%H:%M:%S"))
}

/// The doses due in `[from, to)`, by due time, each at most once.
///
/// Errors name the field: `recurrence_rule` when the `rrule` crate rejects the rule for this
/// schedule's start (e.g. an `UNTIL` before `starts_on`), the rule repeats more often than
/// hourly, or it yields more than [`MAX_SLOTS_PER_WINDOW`] slots in the window.
pub fn doses(
    recurrence: &Recurrence<'_>,
    quiet: Option<QuietRule>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Dose>, ParseError> {
    let tz = recurrence.timezone.tz();
    let dt_start = recurrence.starts_on.and_time(NaiveTime::MIN);
    let set = recurrence.rule.to_rrule(floating(dt_start))?;
    if set
        .get_rrule()
        .iter()
        .any(|r| r.get_freq() > rrule::Frequency::Hourly)
    {
        return Err(ParseError::new(
            "recurrence_rule",
            "must not repeat more often than hourly",
        ));
    }
    if to <= from {
        return Ok(Vec::new());
    }

    // Slots are local; the window is in instants. Two days either side cover every UTC offset
    // and a delay to the end of quiet hours (under a day); the due-time filter below is exact.
    let margin = Days::new(2);
    let lo = from
        .with_timezone(&tz)
        .naive_local()
        .checked_sub_days(margin)
        .unwrap_or(NaiveDateTime::MIN)
        .max(dt_start);
    let mut hi = to
        .with_timezone(&tz)
        .naive_local()
        .checked_add_days(margin)
        .unwrap_or(NaiveDateTime::MAX);
    if let Some(day_after_end) = recurrence.ends_on.and_then(|d| d.succ_opt()) {
        hi = hi.min(day_after_end.and_time(NaiveTime::MIN));
    }
    if hi < lo {
        return Ok(Vec::new());
    }

    let expanded = set
        .after(floating(lo))
        .before(floating(hi))
        .all(MAX_SLOTS_PER_WINDOW);
    if expanded.limited {
        return Err(ParseError::new(
            "recurrence_rule",
            format!(
                "yields more than {MAX_SLOTS_PER_WINDOW} reminders in the planning window, \
                 or too rarely to expand"
            ),
        ));
    }

    let mut resolved = HashSet::new();
    let mut doses = Vec::new();
    for slot in expanded.dates.iter().map(|d| d.naive_utc()) {
        if recurrence.ends_on.is_some_and(|end| slot.date() > end) {
            continue;
        }
        let Some(at) = resolve_local(tz, slot) else {
            tracing::warn!(
                zone = tz.name(),
                "local time has no instant; dose not planned"
            );
            continue;
        };
        // Two slots can only meet at one instant across a skipped day (Samoa, 2011): remind once.
        if !resolved.insert(at) {
            continue;
        }
        let Some(due_at) = quiet.map_or(Some(at), |q| q.apply(at)) else {
            continue;
        };
        if from <= due_at && due_at < to {
            doses.push(Dose { slot, due_at });
        }
    }
    doses.sort_by_key(|d| (d.due_at, d.slot));
    Ok(doses)
}

/// The instant of a local wall-clock time: the first of a repeated time, and for a time skipped by
/// a DST gap the next valid local time (the end of the gap).
pub fn resolve_local(tz: chrono_tz::Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(at) = tz.from_local_datetime(&local).earliest() {
        return Some(at.with_timezone(&Utc));
    }
    // In a gap. Gaps are at most a day long (Pacific/Apia skipped 2011-12-30) and start and end
    // on whole minutes, so stepping forward minute by minute finds its end.
    (1..=24 * 60)
        .filter_map(|m| local.checked_add_signed(TimeDelta::minutes(m)))
        .find_map(|probe| tz.from_local_datetime(&probe).earliest())
        .map(|at| at.with_timezone(&Utc))
}

/// A naive local date-time in the `rrule` crate's UTC, which has no DST: floating time.
fn floating(local: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rule(s: &str) -> RecurrenceRule {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn zone(s: &str) -> TimeZone {
        s.parse().unwrap()
    }

    /// Due instants in `[from, to)` as RFC 3339 UTC strings, for readable assertions.
    fn due(
        r: &str,
        tz: &str,
        starts_on: &str,
        ends_on: Option<&str>,
        quiet: Option<QuietRule>,
        from: &str,
        to: &str,
    ) -> Vec<String> {
        let rule = rule(r);
        let rec = Recurrence {
            rule: &rule,
            timezone: zone(tz),
            starts_on: date(starts_on),
            ends_on: ends_on.map(date),
        };
        doses(&rec, quiet, utc(from), utc(to))
            .unwrap()
            .iter()
            .map(|d| d.due_at.format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    /// The same doses, as local wall-clock times in `tz`.
    fn local(r: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let z = zone(tz).tz();
        due(r, tz, "2025-01-01", None, None, from, to)
            .iter()
            .map(|s| {
                utc(&s.replace('Z', ":00Z"))
                    .with_timezone(&z)
                    .format("%m-%d %H:%M %Z")
                    .to_string()
            })
            .collect()
    }

    const DAILY_0230: &str = "FREQ=DAILY;BYHOUR=2;BYMINUTE=30;BYSECOND=0";
    const TWICE_DAILY: &str = "FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0;BYSECOND=0";

    #[test]
    fn new_york_spring_forward() {
        // 2025-03-09: 02:00 EST → 03:00 EDT.
        assert_eq!(
            local(
                DAILY_0230,
                "America/New_York",
                "2025-03-08T00:00:00Z",
                "2025-03-11T00:00:00Z"
            ),
            ["03-08 02:30 EST", "03-09 03:00 EDT", "03-10 02:30 EDT"],
            "the skipped 02:30 fires once, at the end of the gap"
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "America/New_York",
                "2025-03-08T12:00:00Z",
                "2025-03-10T12:00:00Z"
            ),
            [
                "03-08 08:00 EST",
                "03-08 20:00 EST",
                "03-09 08:00 EDT",
                "03-09 20:00 EDT"
            ],
        );
        assert_eq!(
            due(
                TWICE_DAILY,
                "America/New_York",
                "2025-01-01",
                None,
                None,
                "2025-03-08T12:00:00Z",
                "2025-03-10T00:00:00Z"
            ),
            [
                "2025-03-08T13:00Z",
                "2025-03-09T01:00Z",
                "2025-03-09T12:00Z"
            ],
            "08:00 local moves by an hour in UTC"
        );
    }

    #[test]
    fn new_york_fall_back() {
        // 2025-11-02: 02:00 EDT → 01:00 EST; 01:00-01:59 happens twice.
        let r = "FREQ=DAILY;BYHOUR=1;BYMINUTE=30;BYSECOND=0";
        assert_eq!(
            local(
                r,
                "America/New_York",
                "2025-11-01T00:00:00Z",
                "2025-11-04T00:00:00Z"
            ),
            ["11-01 01:30 EDT", "11-02 01:30 EDT", "11-03 01:30 EST"],
            "the repeated 01:30 fires once, the first time"
        );
        assert_eq!(
            local(
                DAILY_0230,
                "America/New_York",
                "2025-11-01T00:00:00Z",
                "2025-11-04T00:00:00Z"
            ),
            ["11-01 02:30 EDT", "11-02 02:30 EST", "11-03 02:30 EST"],
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "America/New_York",
                "2025-11-01T12:00:00Z",
                "2025-11-03T12:00:00Z"
            ),
            [
                "11-01 08:00 EDT",
                "11-01 20:00 EDT",
                "11-02 08:00 EST",
                "11-02 20:00 EST"
            ],
        );
    }

    #[test]
    fn berlin_spring_and_autumn() {
        // 2025-03-30: 02:00 CET → 03:00 CEST; 2025-10-26: 03:00 CEST → 02:00 CET.
        assert_eq!(
            local(
                DAILY_0230,
                "Europe/Berlin",
                "2025-03-29T00:00:00Z",
                "2025-04-01T00:00:00Z"
            ),
            ["03-29 02:30 CET", "03-30 03:00 CEST", "03-31 02:30 CEST"],
        );
        assert_eq!(
            local(
                DAILY_0230,
                "Europe/Berlin",
                "2025-10-25T00:00:00Z",
                "2025-10-28T00:00:00Z"
            ),
            ["10-25 02:30 CEST", "10-26 02:30 CEST", "10-27 02:30 CET"],
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "Europe/Berlin",
                "2025-03-29T00:00:00Z",
                "2025-03-31T00:00:00Z"
            ),
            [
                "03-29 08:00 CET",
                "03-29 20:00 CET",
                "03-30 08:00 CEST",
                "03-30 20:00 CEST"
            ],
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "Europe/Berlin",
                "2025-10-25T00:00:00Z",
                "2025-10-27T00:00:00Z"
            ),
            [
                "10-25 08:00 CEST",
                "10-25 20:00 CEST",
                "10-26 08:00 CET",
                "10-26 20:00 CET"
            ],
        );
    }

    #[test]
    fn sydney_spring_and_autumn() {
        // Southern hemisphere: 2025-04-06 03:00 AEDT → 02:00 AEST (autumn);
        // 2025-10-05 02:00 AEST → 03:00 AEDT (spring).
        assert_eq!(
            local(
                DAILY_0230,
                "Australia/Sydney",
                "2025-04-04T00:00:00Z",
                "2025-04-07T00:00:00Z"
            ),
            ["04-05 02:30 AEDT", "04-06 02:30 AEDT", "04-07 02:30 AEST"],
        );
        assert_eq!(
            local(
                DAILY_0230,
                "Australia/Sydney",
                "2025-10-03T00:00:00Z",
                "2025-10-06T00:00:00Z"
            ),
            ["10-04 02:30 AEST", "10-05 03:00 AEDT", "10-06 02:30 AEDT"],
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "Australia/Sydney",
                "2025-10-04T00:00:00Z",
                "2025-10-05T12:00:00Z"
            ),
            ["10-04 20:00 AEST", "10-05 08:00 AEDT", "10-05 20:00 AEDT"],
        );
        assert_eq!(
            local(
                TWICE_DAILY,
                "Australia/Sydney",
                "2025-04-05T00:00:00Z",
                "2025-04-06T12:00:00Z"
            ),
            ["04-05 20:00 AEDT", "04-06 08:00 AEST", "04-06 20:00 AEST"],
        );
    }

    #[test]
    fn rrule_with_the_zone_drops_doses_when_midnight_is_skipped() {
        // Havana springs forward at 00:00 (2025-03-09 00:00 CST → 01:00 CDT), so local midnight
        // does not exist and the crate's fallback has nothing to add the time to.
        let havana = rrule::Tz::Tz(chrono_tz::America::Havana);
        let start = havana.with_ymd_and_hms(2025, 3, 7, 0, 30, 0).unwrap();
        let by_the_crate = rule("FREQ=DAILY;BYHOUR=0;BYMINUTE=30;BYSECOND=0")
            .to_rrule(start)
            .unwrap()
            .all(3)
            .dates;
        assert_eq!(
            by_the_crate
                .iter()
                .map(|d| d.format("%m-%d").to_string())
                .collect::<Vec<_>>(),
            ["03-07", "03-08", "03-10"],
            "the rrule crate loses the dose of 03-09"
        );
        assert_eq!(
            local(
                "FREQ=DAILY;BYHOUR=0;BYMINUTE=30;BYSECOND=0",
                "America/Havana",
                "2025-03-07T00:00:00Z",
                "2025-03-10T12:00:00Z"
            ),
            [
                "03-07 00:30 CST",
                "03-08 00:30 CST",
                "03-09 01:00 CDT",
                "03-10 00:30 CDT"
            ],
            "the planner keeps it"
        );
    }

    #[test]
    fn every_monday_and_every_other_day() {
        // 2025-06-02 is a Monday.
        assert_eq!(
            due(
                "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
                "Europe/Berlin",
                "2025-06-01",
                None,
                None,
                "2025-06-01T00:00:00Z",
                "2025-06-20T00:00:00Z"
            ),
            [
                "2025-06-02T07:00Z",
                "2025-06-09T07:00Z",
                "2025-06-16T07:00Z"
            ],
        );
        let every_other_day = "FREQ=DAILY;INTERVAL=2;BYHOUR=9;BYMINUTE=0;BYSECOND=0";
        let expected = [
            "2025-06-03T07:00Z",
            "2025-06-05T07:00Z",
            "2025-06-07T07:00Z",
        ];
        assert_eq!(
            due(
                every_other_day,
                "Europe/Berlin",
                "2025-06-01",
                None,
                None,
                "2025-06-02T00:00:00Z",
                "2025-06-08T00:00:00Z"
            ),
            expected,
            "counted from starts_on (06-01), not from the window"
        );
        assert_eq!(
            due(
                every_other_day,
                "Europe/Berlin",
                "2025-06-01",
                None,
                None,
                "2025-06-03T00:00:00Z",
                "2025-06-08T00:00:00Z"
            ),
            expected,
            "a later window keeps the same days"
        );
    }

    #[test]
    fn starts_on_and_ends_on_are_inclusive_local_dates() {
        assert_eq!(
            due(
                TWICE_DAILY,
                "America/New_York",
                "2025-06-02",
                Some("2025-06-03"),
                None,
                "2025-06-01T00:00:00Z",
                "2025-07-01T00:00:00Z"
            ),
            [
                "2025-06-02T12:00Z",
                "2025-06-03T00:00Z",
                "2025-06-03T12:00Z",
                "2025-06-04T00:00Z"
            ],
            "the 20:00 dose of the last day is 00:00 UTC the day after"
        );
    }

    fn quiet(hours: &str, tz: &str, policy: QuietHoursPolicy) -> Option<QuietRule> {
        Some(QuietRule {
            hours: hours.parse().unwrap(),
            timezone: zone(tz),
            policy,
        })
    }

    #[test]
    fn quiet_hours_delay_across_midnight() {
        let r = "FREQ=DAILY;BYHOUR=6,12,23;BYMINUTE=0;BYSECOND=0";
        let q = quiet("22:00-07:00", "Europe/Berlin", QuietHoursPolicy::Delay);
        let rec_rule = rule(r);
        let rec = Recurrence {
            rule: &rec_rule,
            timezone: zone("Europe/Berlin"),
            starts_on: date("2025-06-01"),
            ends_on: Some(date("2025-06-02")),
        };
        let got: Vec<(String, String)> = doses(
            &rec,
            q,
            utc("2025-06-01T00:00:00Z"),
            utc("2025-06-05T00:00:00Z"),
        )
        .unwrap()
        .iter()
        .map(|d| {
            (
                d.slot.format("%d %H:%M").to_string(),
                d.due_at
                    .with_timezone(&chrono_tz::Europe::Berlin)
                    .format("%d %H:%M")
                    .to_string(),
            )
        })
        .collect();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            got,
            [
                pair("01 06:00", "01 07:00"), // after midnight: same morning
                pair("01 12:00", "01 12:00"),
                pair("01 23:00", "02 07:00"), // before midnight: next morning
                pair("02 06:00", "02 07:00"),
                pair("02 12:00", "02 12:00"),
                pair("02 23:00", "03 07:00"), // ends_on's last dose, delayed past it
            ]
        );
        let never_quiet = |due: &DateTime<Utc>| {
            !"22:00-07:00"
                .parse::<QuietHours>()
                .unwrap()
                .contains(due.with_timezone(&chrono_tz::Europe::Berlin).time())
        };
        assert!(
            doses(
                &rec,
                q,
                utc("2025-06-01T00:00:00Z"),
                utc("2025-06-05T00:00:00Z")
            )
            .unwrap()
            .iter()
            .all(|d| never_quiet(&d.due_at))
        );
    }

    #[test]
    fn quiet_hours_skip_across_midnight() {
        let r = "FREQ=DAILY;BYHOUR=6,12,23;BYMINUTE=0;BYSECOND=0";
        assert_eq!(
            due(
                r,
                "Europe/Berlin",
                "2025-06-01",
                Some("2025-06-02"),
                quiet("22:00-07:00", "Europe/Berlin", QuietHoursPolicy::Skip),
                "2025-06-01T00:00:00Z",
                "2025-06-05T00:00:00Z"
            ),
            ["2025-06-01T10:00Z", "2025-06-02T10:00Z"],
            "only the 12:00 doses remain"
        );
    }

    #[test]
    fn quiet_hours_within_a_day_and_in_the_patients_own_zone() {
        let r = "FREQ=DAILY;BYHOUR=13;BYMINUTE=0;BYSECOND=0";
        assert_eq!(
            due(
                r,
                "Europe/Berlin",
                "2025-06-01",
                Some("2025-06-01"),
                quiet("12:00-14:00", "Europe/Berlin", QuietHoursPolicy::Delay),
                "2025-06-01T00:00:00Z",
                "2025-06-05T00:00:00Z"
            ),
            ["2025-06-01T12:00Z"],
            "delayed to 14:00 the same day"
        );
        // A Berlin 13:00 dose is 07:00 in New York, inside a New York patient's 22:00-08:00.
        assert_eq!(
            due(
                r,
                "Europe/Berlin",
                "2025-06-01",
                Some("2025-06-01"),
                quiet("22:00-08:00", "America/New_York", QuietHoursPolicy::Delay),
                "2025-06-01T00:00:00Z",
                "2025-06-05T00:00:00Z"
            ),
            ["2025-06-01T12:00Z"],
            "delayed to 08:00 New York time"
        );
    }

    #[test]
    fn quiet_hours_ending_inside_a_gap_resolve_after_it() {
        let r = "FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0";
        assert_eq!(
            local_with_quiet(
                r,
                "America/New_York",
                "00:00-02:30",
                "2025-03-09T00:00:00Z",
                "2025-03-10T00:00:00Z"
            ),
            ["03-09 03:00 EDT"],
        );
    }

    fn local_with_quiet(r: &str, tz: &str, hours: &str, from: &str, to: &str) -> Vec<String> {
        let z = zone(tz).tz();
        due(
            r,
            tz,
            "2025-01-01",
            None,
            quiet(hours, tz, QuietHoursPolicy::Delay),
            from,
            to,
        )
        .iter()
        .map(|s| {
            utc(&s.replace('Z', ":00Z"))
                .with_timezone(&z)
                .format("%m-%d %H:%M %Z")
                .to_string()
        })
        .collect()
    }

    #[test]
    fn window_is_half_open_on_due_time() {
        let all = due(
            TWICE_DAILY,
            "UTC",
            "2025-06-01",
            None,
            None,
            "2025-06-01T08:00:00Z",
            "2025-06-02T08:00:00Z",
        );
        assert_eq!(all, ["2025-06-01T08:00Z", "2025-06-01T20:00Z"]);
        assert!(
            due(
                TWICE_DAILY,
                "UTC",
                "2025-06-01",
                None,
                None,
                "2025-06-02T00:00:00Z",
                "2025-06-01T00:00:00Z"
            )
            .is_empty()
        );
    }

    #[test]
    fn keys_name_the_original_local_slot() {
        let id = MedicationScheduleId::new();
        let slot = date("2025-03-09").and_hms_opt(2, 30, 0).unwrap();
        assert_eq!(
            idempotency_key(id, slot),
            format!("schedule:{id}:2025-03-09T02:30:00")
        );
        let rule = rule(DAILY_0230);
        let rec = Recurrence {
            rule: &rule,
            timezone: zone("America/New_York"),
            starts_on: date("2025-01-01"),
            ends_on: None,
        };
        let d = doses(
            &rec,
            None,
            utc("2025-03-09T00:00:00Z"),
            utc("2025-03-10T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].slot, slot, "the skipped slot keeps its written time");
    }

    #[test]
    fn rules_the_rrule_crate_rejects_name_the_field() {
        // Valid on its own, but its UNTIL is before this schedule's start.
        let until_before_start =
            rule("FREQ=DAILY;BYHOUR=8;BYMINUTE=0;BYSECOND=0;UNTIL=20250201T000000Z");
        let rec = Recurrence {
            rule: &until_before_start,
            timezone: zone("Europe/Berlin"),
            starts_on: date("2025-03-01"),
            ends_on: None,
        };
        let err = doses(
            &rec,
            None,
            utc("2025-03-01T00:00:00Z"),
            utc("2025-04-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.field, "recurrence_rule");
        assert!(err.to_string().contains("UNTIL"), "{err}");

        let minutely = rule("FREQ=MINUTELY;BYSECOND=0");
        let err = doses(
            &Recurrence {
                rule: &minutely,
                ..rec
            },
            None,
            utc("2025-03-01T00:00:00Z"),
            utc("2025-04-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.field, "recurrence_rule");

        let hourly = rule("FREQ=HOURLY;BYMINUTE=0;BYSECOND=0");
        let err = doses(
            &Recurrence {
                rule: &hourly,
                ..rec
            },
            None,
            utc("2025-03-01T00:00:00Z"),
            utc("2026-06-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.field, "recurrence_rule");
        assert!(err.reason.contains("more than"), "{err}");

        assert_eq!(
            "FREQ=DAILY;BYHOUR=25"
                .parse::<RecurrenceRule>()
                .unwrap_err()
                .field,
            "recurrence_rule"
        );
        assert_eq!(
            "Mars/Olympus".parse::<TimeZone>().unwrap_err().field,
            "timezone"
        );
    }
}
