//! `plan()` against a real SQLite store, with the clock passed in: doses are stored once, and
//! re-planning after a change of rule, zone or quiet hours moves or cancels what is still planned
//! while doses already sent are neither touched nor planned again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use careloop_core::{
    ChannelKind, OccurrenceState, OrganizationId, QuietHours, QuietHoursPolicy, TimeZone,
};
use careloop_reminders::planner::idempotency_key;
use careloop_reminders::{PlanError, PlanOutcome, plan};
use careloop_store::{
    MedicationSchedule, NewMedicationSchedule, Patient, PatientPreferences, ReminderOccurrence,
    Store, StoreError,
};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    org: OrganizationId,
    patient: Patient,
}

async fn fixture(timezone: &str, quiet_hours: Option<&str>) -> Fixture {
    let c = common::clinic("en", timezone, quiet_hours).await;
    Fixture {
        _dir: c._dir,
        store: c.store,
        org: c.org,
        patient: c.patient,
    }
}

impl Fixture {
    async fn schedule(
        &self,
        rrule: &str,
        starts_on: &str,
        ends_on: Option<&str>,
        policy: QuietHoursPolicy,
    ) -> MedicationSchedule {
        self.store
            .medication_schedules()
            .create(
                self.org,
                NewMedicationSchedule {
                    patient_id: self.patient.id,
                    medicine_name: "Metformin".parse().unwrap(),
                    dose_text: "500 mg with food".parse().unwrap(),
                    rrule: rrule.parse().unwrap(),
                    timezone: self.patient.timezone,
                    starts_on: date(starts_on),
                    ends_on: ends_on.map(date),
                    quiet_hours_policy: policy,
                    channels: vec![ChannelKind::Telegram],
                    created_by: None,
                },
            )
            .await
            .unwrap()
    }

    async fn plan(&self, schedule: &MedicationSchedule, now: &str) -> PlanOutcome {
        plan(&self.store, self.org, schedule, at(now), TimeDelta::days(3))
            .await
            .unwrap()
    }

    /// Every occurrence of the patient, earliest first.
    async fn all(&self) -> Vec<ReminderOccurrence> {
        self.store
            .reminder_occurrences()
            .list_for_patient(
                self.org,
                self.patient.id,
                at("2000-01-01T00:00:00Z"),
                at("2100-01-01T00:00:00Z"),
            )
            .await
            .unwrap()
    }

    /// `(day and local time of the slot, due at in UTC, state)` of every occurrence, by slot.
    async fn rows(&self) -> Vec<(String, String, &'static str)> {
        let mut rows: Vec<_> = self
            .all()
            .await
            .iter()
            .map(|o| {
                // The key ends with the slot, `…:2025-03-07T20:00:00`; keep `07T20:00`.
                let key = &o.idempotency_key;
                (
                    key[key.len() - 11..key.len() - 3].to_owned(),
                    o.due_at.format("%m-%dT%H:%MZ").to_string(),
                    o.state.as_str(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    /// The dispatcher's part, done by hand: claim and send the occurrence of this local slot.
    async fn send(&self, schedule: &MedicationSchedule, slot: &str) {
        let key = idempotency_key(schedule.id, slot.parse().unwrap());
        let occurrence = self
            .all()
            .await
            .into_iter()
            .find(|o| o.idempotency_key == key)
            .unwrap();
        let occurrences = self.store.reminder_occurrences();
        assert!(
            occurrences
                .transition_state(
                    self.org,
                    occurrence.id,
                    OccurrenceState::Planned,
                    OccurrenceState::Dispatching,
                )
                .await
                .unwrap()
        );
        occurrences
            .set_state(self.org, occurrence.id, OccurrenceState::Sent)
            .await
            .unwrap();
    }

    async fn set_patient(&mut self, timezone: &str, quiet_hours: Option<&str>) {
        self.patient = self
            .store
            .patients()
            .update_preferences(
                self.org,
                self.patient.id,
                &PatientPreferences {
                    language: self.patient.language,
                    reading_level: self.patient.reading_level,
                    timezone: timezone.parse().unwrap(),
                    quiet_hours: quiet_hours.map(|q| q.parse::<QuietHours>().unwrap()),
                },
            )
            .await
            .unwrap();
    }
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn row(slot: &str, due: &str, state: &'static str) -> (String, String, &'static str) {
    (slot.to_owned(), due.to_owned(), state)
}

const TWICE_DAILY: &str = "FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0;BYSECOND=0";

#[tokio::test]
async fn planning_twice_stores_each_dose_once_and_extends_with_the_clock() {
    let f = fixture("America/New_York", None).await;
    let s = f
        .schedule(TWICE_DAILY, "2025-03-07", None, QuietHoursPolicy::Delay)
        .await;

    // Friday noon UTC, three days ahead, across the spring change of Sunday 03-09.
    let first = f.plan(&s, "2025-03-07T14:00:00Z").await;
    assert_eq!(first.inserted, 6);
    assert_eq!(
        f.rows().await,
        [
            row("07T20:00", "03-08T01:00Z", "planned"),
            row("08T08:00", "03-08T13:00Z", "planned"),
            row("08T20:00", "03-09T01:00Z", "planned"),
            row("09T08:00", "03-09T12:00Z", "planned"),
            row("09T20:00", "03-10T00:00Z", "planned"),
            row("10T08:00", "03-10T12:00Z", "planned"),
        ]
    );

    let again = f.plan(&s, "2025-03-07T14:00:00Z").await;
    assert_eq!(
        again,
        PlanOutcome {
            kept: 6,
            ..PlanOutcome::default()
        }
    );

    // A day later: the first two went out; the horizon moves on by two doses.
    f.send(&s, "2025-03-07T20:00:00").await;
    f.send(&s, "2025-03-08T08:00:00").await;
    let later = f.plan(&s, "2025-03-08T14:00:00Z").await;
    assert_eq!(later.inserted, 2);
    assert_eq!(later.kept, 4);
    assert_eq!(later.cancelled, 0);
    let rows = f.rows().await;
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0], row("07T20:00", "03-08T01:00Z", "sent"));
    assert_eq!(rows[7], row("11T08:00", "03-11T12:00Z", "planned"));
}

#[tokio::test]
async fn a_new_timezone_moves_planned_doses_and_never_resends_a_sent_one() {
    // The patient lives in Berlin, then moves to New York: a daily 08:00 dose.
    let mut f = fixture("Europe/Berlin", None).await;
    let s = f
        .schedule(
            "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;BYSECOND=0",
            "2025-06-01",
            None,
            QuietHoursPolicy::Delay,
        )
        .await;
    f.plan(&s, "2025-06-01T00:00:00Z").await;
    assert_eq!(
        f.rows().await,
        [
            row("01T08:00", "06-01T06:00Z", "planned"),
            row("02T08:00", "06-02T06:00Z", "planned"),
            row("03T08:00", "06-03T06:00Z", "planned"),
        ]
    );
    f.send(&s, "2025-06-01T08:00:00").await;

    // At 07:00 UTC on 06-01 the zone changes. New York's 08:00 on 06-01 (12:00 UTC) is still
    // ahead, but that dose was already sent in Berlin: it must not go out twice.
    f.set_patient("America/New_York", None).await;
    let moved = MedicationSchedule {
        timezone: "America/New_York".parse::<TimeZone>().unwrap(),
        ..s.clone()
    };
    let outcome = f.plan(&moved, "2025-06-01T07:00:00Z").await;
    assert_eq!(outcome.left, 1, "the sent dose");
    assert_eq!(outcome.moved, 2);
    assert_eq!(outcome.inserted, 0);
    assert_eq!(
        f.rows().await,
        [
            row("01T08:00", "06-01T06:00Z", "sent"),
            row("02T08:00", "06-02T12:00Z", "planned"),
            row("03T08:00", "06-03T12:00Z", "planned"),
        ]
    );
    assert_eq!(
        f.plan(&moved, "2025-06-01T07:00:00Z").await,
        PlanOutcome {
            kept: 2,
            left: 1,
            ..PlanOutcome::default()
        },
        "re-planning is idempotent"
    );
}

#[tokio::test]
async fn quiet_hours_changes_cancel_and_bring_back_doses() {
    let mut f = fixture("Europe/Berlin", None).await;
    let skip = f
        .schedule(
            "FREQ=DAILY;BYHOUR=6,12,23;BYMINUTE=0;BYSECOND=0",
            "2025-06-01",
            Some("2025-06-02"),
            QuietHoursPolicy::Skip,
        )
        .await;
    f.plan(&skip, "2025-06-01T00:00:00Z").await;
    assert_eq!(f.all().await.len(), 6);
    f.send(&skip, "2025-06-01T06:00:00").await;

    // Quiet hours from 22:00 to 07:00 with Skip: the night doses still planned are cancelled.
    f.set_patient("Europe/Berlin", Some("22:00-07:00")).await;
    let outcome = f.plan(&skip, "2025-06-01T05:00:00Z").await;
    assert_eq!(outcome.cancelled, 3);
    assert_eq!(
        f.rows().await,
        [
            row("01T06:00", "06-01T04:00Z", "sent"),
            row("01T12:00", "06-01T10:00Z", "planned"),
            row("01T23:00", "06-01T21:00Z", "cancelled"),
            row("02T06:00", "06-02T04:00Z", "cancelled"),
            row("02T12:00", "06-02T10:00Z", "planned"),
            row("02T23:00", "06-02T21:00Z", "cancelled"),
        ]
    );

    // The care team switches the schedule to Delay: the same doses come back, at 07:00.
    let delay = MedicationSchedule {
        quiet_hours_policy: QuietHoursPolicy::Delay,
        ..skip.clone()
    };
    let outcome = f.plan(&delay, "2025-06-01T05:00:00Z").await;
    assert_eq!(outcome.moved, 3);
    assert_eq!(outcome.inserted, 0);
    assert_eq!(
        f.rows().await,
        [
            row("01T06:00", "06-01T04:00Z", "sent"),
            row("01T12:00", "06-01T10:00Z", "planned"),
            row("01T23:00", "06-02T05:00Z", "planned"),
            row("02T06:00", "06-02T05:00Z", "planned"),
            row("02T12:00", "06-02T10:00Z", "planned"),
            row("02T23:00", "06-03T05:00Z", "planned"),
        ]
    );

    // Quiet hours end earlier: the delayed doses follow.
    f.set_patient("Europe/Berlin", Some("22:00-06:30")).await;
    let outcome = f.plan(&delay, "2025-06-01T05:00:00Z").await;
    assert_eq!((outcome.moved, outcome.kept), (3, 2));
    assert_eq!(f.all().await.len(), 6, "nothing duplicated");
    assert!(
        f.all()
            .await
            .iter()
            .filter(|o| o.state == OccurrenceState::Planned)
            .all(|o| o.due_at.format("%H:%M").to_string() != "05:00")
    );
}

#[tokio::test]
async fn a_changed_rule_or_an_inactive_schedule_cancels_only_future_planned_doses() {
    let f = fixture("Australia/Sydney", None).await;
    let s = f
        .schedule(TWICE_DAILY, "2025-10-03", None, QuietHoursPolicy::Delay)
        .await;
    f.plan(&s, "2025-10-03T00:00:00Z").await;
    assert_eq!(f.all().await.len(), 6);
    f.send(&s, "2025-10-03T20:00:00").await;

    // Mornings only, from now on.
    let mornings = MedicationSchedule {
        rrule: "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;BYSECOND=0".parse().unwrap(),
        ..s.clone()
    };
    let outcome = f.plan(&mornings, "2025-10-03T12:00:00Z").await;
    assert_eq!(outcome.cancelled, 2, "the two evening doses still ahead");
    let states: Vec<_> = f.all().await.iter().map(|o| o.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "sent",
            "planned",
            "cancelled",
            "planned",
            "cancelled",
            "planned"
        ]
    );

    let inactive = MedicationSchedule {
        active: false,
        ..mornings.clone()
    };
    let outcome = f.plan(&inactive, "2025-10-03T12:00:00Z").await;
    assert_eq!(outcome.cancelled, 3);
    assert!(
        f.all()
            .await
            .iter()
            .all(|o| o.state != OccurrenceState::Planned)
    );
}

#[tokio::test]
async fn invalid_input_is_rejected_naming_the_field_and_plans_nothing() {
    let f = fixture("Europe/Berlin", None).await;
    // Valid on its own, but UNTIL falls before this schedule's first day.
    let s = f
        .schedule(
            "FREQ=DAILY;BYHOUR=8;BYMINUTE=0;BYSECOND=0;UNTIL=20250201T000000Z",
            "2025-03-01",
            None,
            QuietHoursPolicy::Delay,
        )
        .await;
    let err = plan(
        &f.store,
        f.org,
        &s,
        at("2025-03-01T00:00:00Z"),
        TimeDelta::days(3),
    )
    .await
    .unwrap_err();
    match err {
        PlanError::Invalid(e) => assert_eq!(e.field, "recurrence_rule", "{e}"),
        other => panic!("expected an input error, got {other:?}"),
    }
    assert!(f.all().await.is_empty());

    let other_org = f
        .store
        .organizations()
        .create("Other", &"other".parse().unwrap())
        .await
        .unwrap()
        .id;
    let err = plan(
        &f.store,
        other_org,
        &s,
        at("2025-03-01T00:00:00Z"),
        TimeDelta::days(3),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PlanError::Store(StoreError::NotFound { .. })),
        "{err:?}"
    );
    assert!(f.all().await.is_empty());
}
