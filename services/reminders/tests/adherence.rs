//! Answers, missed doses and the care team's alert, with a clock the test drives: each reminder
//! is answered or missed once, and three missed doses in a row raise one alert, mailed once to
//! the care team through a real SMTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use careloop_adherence::{AdherencePolicy, Answer, Answered, answer, mark_missed, open_reminder};
use careloop_core::{
    AdherenceKind, AlertKind, ChannelKind, OccurrenceState, OrganizationId, ReminderOccurrenceId,
};
use careloop_store::{NewMedicationSchedule, NewReminderOccurrence, Store};
use chrono::{DateTime, TimeDelta, Utc};

struct Fixture {
    clinic: common::Clinic,
    schedule: careloop_core::MedicationScheduleId,
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn fixture() -> Fixture {
    let clinic = common::clinic("en", "America/New_York", None).await;
    let schedule = clinic
        .store
        .medication_schedules()
        .create(
            clinic.org,
            NewMedicationSchedule {
                patient_id: clinic.patient.id,
                medicine_name: "Lisinopril".parse().unwrap(),
                dose_text: "10 mg in the morning".parse().unwrap(),
                rrule: "FREQ=DAILY;BYHOUR=8;BYMINUTE=0".parse().unwrap(),
                timezone: clinic.patient.timezone,
                starts_on: "2026-03-01".parse().unwrap(),
                ends_on: None,
                quiet_hours_policy: careloop_core::QuietHoursPolicy::Delay,
                channels: vec![ChannelKind::Telegram],
                created_by: None,
            },
        )
        .await
        .unwrap()
        .id;
    Fixture { clinic, schedule }
}

impl Fixture {
    fn store(&self) -> &Store {
        &self.clinic.store
    }
    fn org(&self) -> OrganizationId {
        self.clinic.org
    }

    /// A dose due at `due` that the worker sent.
    async fn sent(&self, due: &str) -> ReminderOccurrenceId {
        let occ = self
            .store()
            .reminder_occurrences()
            .insert_if_absent(
                self.org(),
                NewReminderOccurrence {
                    schedule_id: Some(self.schedule),
                    campaign_id: None,
                    patient_id: self.clinic.patient.id,
                    due_at: at(due),
                    idempotency_key: format!("schedule:{}:{due}", self.schedule),
                },
            )
            .await
            .unwrap()
            .into_inner();
        self.store()
            .reminder_occurrences()
            .set_state(self.org(), occ.id, OccurrenceState::Sent)
            .await
            .unwrap();
        occ.id
    }

    async fn kinds(&self) -> Vec<AdherenceKind> {
        self.store()
            .adherence_events()
            .list_for_patient(self.org(), self.clinic.patient.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    async fn alerts(&self) -> Vec<careloop_store::Alert> {
        self.store()
            .alerts()
            .list_for_patient(self.org(), self.clinic.patient.id)
            .await
            .unwrap()
    }

    async fn answer(
        &self,
        occurrence: ReminderOccurrenceId,
        kind: AdherenceKind,
        now: &str,
    ) -> Answered {
        answer(
            self.store(),
            self.org(),
            self.clinic.patient.id,
            Answer {
                occurrence,
                kind,
                channel: Some(ChannelKind::Telegram),
                at: at(now),
            },
            &AdherencePolicy::default(),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn an_answer_is_recorded_once_and_snooze_plans_the_dose_again_later() {
    let f = fixture().await;
    let dose = f.sent("2026-03-02T13:00:00Z").await;
    assert!(matches!(
        f.answer(dose, AdherenceKind::Snoozed, "2026-03-02T13:05:00Z")
            .await,
        Answered::Recorded(_)
    ));
    assert!(matches!(
        f.answer(dose, AdherenceKind::Snoozed, "2026-03-02T13:06:00Z")
            .await,
        Answered::Repeated(_)
    ));
    let again = f
        .store()
        .reminder_occurrences()
        .list_for_patient(
            f.org(),
            f.clinic.patient.id,
            at("2026-03-02T13:30:00Z"),
            at("2026-03-02T14:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].due_at, at("2026-03-02T13:35:00Z"));
    assert_eq!(again[0].state, OccurrenceState::Planned);
    assert!(again[0].idempotency_key.ends_with(":snooze"));

    // Someone else's reminder is not theirs to answer.
    let other = common::clinic("en", "UTC", None).await;
    let foreign = answer(
        &other.store,
        other.org,
        other.patient.id,
        Answer {
            occurrence: dose,
            kind: AdherenceKind::Taken,
            channel: None,
            at: at("2026-03-02T13:10:00Z"),
        },
        &AdherencePolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(foreign, Answered::NotTheirs);
    assert_eq!(f.kinds().await, vec![AdherenceKind::Snoozed]);
}

#[tokio::test]
async fn a_typed_answer_finds_the_newest_unanswered_reminder_within_the_window() {
    let f = fixture().await;
    let policy = AdherencePolicy::default();
    let older = f.sent("2026-03-02T13:00:00Z").await;
    let newer = f.sent("2026-03-03T13:00:00Z").await;
    let open = |now: &'static str| {
        let f = &f;
        let policy = &policy;
        async move {
            open_reminder(f.store(), f.org(), f.clinic.patient.id, at(now), policy)
                .await
                .unwrap()
                .map(|o| o.id)
        }
    };
    assert_eq!(open("2026-03-03T14:00:00Z").await, Some(newer));
    f.answer(newer, AdherenceKind::Taken, "2026-03-03T14:00:00Z")
        .await;
    // The older one is outside the 12-hour window by now: nothing to answer.
    assert_eq!(open("2026-03-03T14:01:00Z").await, None);
    // Within its window it would have been the one.
    assert_eq!(open("2026-03-02T20:00:00Z").await, Some(older));
}

#[tokio::test]
async fn three_missed_doses_in_a_row_raise_one_alert_and_an_answer_resets_the_streak() {
    let f = fixture().await;
    let policy = AdherencePolicy::default();
    let d1 = f.sent("2026-03-02T13:00:00Z").await;
    let _d2 = f.sent("2026-03-03T13:00:00Z").await;
    let d3 = f.sent("2026-03-04T13:00:00Z").await;

    // Not yet two hours past the third: two missed, no alert.
    let round = mark_missed(f.store(), at("2026-03-04T14:00:00Z"), &policy, 100)
        .await
        .unwrap();
    assert_eq!((round.missed, round.alerts), (2, 0));
    assert!(f.alerts().await.is_empty());
    // Two sweeps at once (two processes) record each dose once.
    let (a, b) = tokio::join!(
        mark_missed(f.store(), at("2026-03-04T15:00:01Z"), &policy, 100),
        mark_missed(f.store(), at("2026-03-04T15:00:01Z"), &policy, 100),
    );
    assert_eq!(a.unwrap().missed + b.unwrap().missed, 1);
    let alerts = f.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::MissedDoses);
    assert_eq!(alerts[0].details["missed_in_a_row"], 3);
    assert_eq!(
        f.kinds().await,
        vec![AdherenceKind::Missed; 3],
        "one missed event per dose"
    );
    // A later sweep finds nothing new.
    let round = mark_missed(f.store(), at("2026-03-04T16:00:00Z"), &policy, 100)
        .await
        .unwrap();
    assert_eq!((round.missed, round.alerts), (0, 0));
    // Each alert names the doses it is about.
    let named = alerts[0].details["occurrences"].as_array().unwrap();
    assert_eq!(named.len(), 3);
    assert!(
        named
            .iter()
            .any(|o| o == &serde_json::json!(d1.to_string()))
    );

    // A fourth miss continues the same streak: no second alert.
    f.sent("2026-03-05T13:00:00Z").await;
    mark_missed(f.store(), at("2026-03-05T16:00:00Z"), &policy, 100)
        .await
        .unwrap();
    assert_eq!(f.alerts().await.len(), 1);

    // A late "taken" breaks the streak; three more misses raise a new alert.
    f.answer(d3, AdherenceKind::Taken, "2026-03-05T17:00:00Z")
        .await;
    for day in ["06", "07"] {
        f.sent(&format!("2026-03-{day}T13:00:00Z")).await;
        mark_missed(
            f.store(),
            at(&format!("2026-03-{day}T16:00:00Z")),
            &policy,
            100,
        )
        .await
        .unwrap();
    }
    assert_eq!(f.alerts().await.len(), 1, "two misses after an answer");
    f.sent("2026-03-08T13:00:00Z").await;
    let round = mark_missed(f.store(), at("2026-03-08T16:00:00Z"), &policy, 100)
        .await
        .unwrap();
    assert_eq!((round.missed, round.alerts), (1, 1));
    assert_eq!(f.alerts().await.len(), 2);
}

#[tokio::test]
async fn answered_planned_and_campaign_reminders_are_never_marked_missed() {
    let f = fixture().await;
    let policy = AdherencePolicy::default();
    let taken = f.sent("2026-03-02T13:00:00Z").await;
    f.answer(taken, AdherenceKind::Taken, "2026-03-02T13:01:00Z")
        .await;
    // Planned (never sent: e.g. the patient was unreachable) is not a missed dose.
    f.store()
        .reminder_occurrences()
        .insert_if_absent(
            f.org(),
            NewReminderOccurrence {
                schedule_id: Some(f.schedule),
                campaign_id: None,
                patient_id: f.clinic.patient.id,
                due_at: at("2026-03-03T13:00:00Z"),
                idempotency_key: "planned".into(),
            },
        )
        .await
        .unwrap();
    let round = mark_missed(
        f.store(),
        at("2026-03-03T13:00:00Z") + TimeDelta::hours(5),
        &policy,
        100,
    )
    .await
    .unwrap();
    assert_eq!(round.missed, 0);
    assert_eq!(f.kinds().await, vec![AdherenceKind::Taken]);
}
