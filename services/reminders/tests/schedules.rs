//! Schedules as a care team enters them: checked field by field (nothing stored on any error),
//! planned at once in the patient's time across a DST change, re-planned on an edit without
//! touching what was sent; and the care team's alert mail through a real SMTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../../shared/channels/tests/fixtures/email/servers.rs"]
mod servers;

use careloop_core::{AlertKind, OccurrenceState, Role};
use careloop_reminders::alert_mail::{AlertMailer, mail_once};
use careloop_reminders::schedules::{ScheduleEdit, ScheduleError, ScheduleInput, create, edit};
use careloop_store::{NewAlert, NewStaffUser};
use chrono::{DateTime, Utc};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn input() -> ScheduleInput {
    ScheduleInput {
        medicine_name: "Metformin".into(),
        dose_text: "500 mg with breakfast and dinner".into(),
        rrule: "FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0".into(),
        timezone: None,
        starts_on: "2026-03-06".into(),
        ends_on: Some("2026-03-10".into()),
        quiet_hours_policy: None,
        channels: vec!["telegram".into(), "email".into()],
    }
}

/// The schedule's planned doses, and each one's day and time in the schedule's zone.
async fn planned_local(
    c: &common::Clinic,
    schedule: &careloop_store::MedicationSchedule,
) -> (Vec<careloop_store::ReminderOccurrence>, Vec<String>) {
    let planned = c
        .store
        .reminder_occurrences()
        .list_planned_for_schedule(c.org, schedule.id, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    let tz = schedule.timezone.tz();
    let local = planned
        .iter()
        .map(|o| o.due_at.with_timezone(&tz).format("%d %H:%M").to_string())
        .collect();
    (planned, local)
}

fn fields(err: ScheduleError) -> Vec<&'static str> {
    match err {
        ScheduleError::Invalid(errors) => errors.iter().map(|e| e.field).collect(),
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_schedule_is_planned_at_once_in_the_patients_time_across_dst() {
    let c = common::clinic("en", "America/New_York", None).await;
    let (schedule, outcome) = create(
        &c.store,
        c.org,
        c.patient.id,
        &input(),
        None,
        at("2026-03-05T12:00:00Z"),
    )
    .await
    .unwrap();
    // 6th..10th March, twice a day.
    assert_eq!(outcome.inserted, 10);
    assert_eq!(schedule.timezone, c.patient.timezone);
    let (planned, local) = planned_local(&c, &schedule).await;
    assert_eq!(
        local,
        [
            "06 08:00", "06 20:00", "07 08:00", "07 20:00", "08 08:00", "08 20:00", "09 08:00",
            "09 20:00", "10 08:00", "10 20:00"
        ]
    );
    // 08:00 EST is 13:00 UTC; after the change on the 8th, 08:00 EDT is 12:00 UTC.
    assert_eq!(planned[0].due_at, at("2026-03-06T13:00:00Z"));
    assert_eq!(planned[4].due_at, at("2026-03-08T12:00:00Z"));
}

#[tokio::test]
async fn bad_input_names_every_wrong_field_and_stores_nothing() {
    let c = common::clinic("en", "Europe/Berlin", None).await;
    let mut bad = input();
    bad.rrule = "FREQ=SOMETIMES".into();
    bad.timezone = Some("Mars/Olympus_Mons".into());
    bad.dose_text = "x".repeat(201);
    bad.channels = vec!["pigeon".into()];
    bad.starts_on = "2026-03-10".into();
    bad.ends_on = Some("2026-03-01".into());
    let err = create(&c.store, c.org, c.patient.id, &bad, None, Utc::now())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(
        fields(err),
        ["dose_text", "rrule", "timezone", "channels", "ends_on"],
        "{message}"
    );
    assert!(message.contains("200"), "{message}");

    // Valid on its own, but more often than hourly: rejected before anything is stored.
    let mut dense = input();
    dense.rrule = "FREQ=MINUTELY".into();
    assert_eq!(
        fields(
            create(&c.store, c.org, c.patient.id, &dense, None, Utc::now())
                .await
                .unwrap_err()
        ),
        ["rrule"]
    );
    let mut empty = input();
    empty.medicine_name = "  ".into();
    empty.channels.clear();
    empty.starts_on = "10/03/2026".into();
    assert_eq!(
        fields(
            create(&c.store, c.org, c.patient.id, &empty, None, Utc::now())
                .await
                .unwrap_err()
        ),
        ["medicine_name", "starts_on", "channels"]
    );

    assert!(
        c.store
            .medication_schedules()
            .list_for_patient(c.org, c.patient.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.store
            .reminder_occurrences()
            .list_for_patient(
                c.org,
                c.patient.id,
                at("2000-01-01T00:00:00Z"),
                at("2100-01-01T00:00:00Z")
            )
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_edit_moves_planned_doses_keeps_sent_ones_and_stopping_cancels_the_rest() {
    let c = common::clinic("de", "Europe/Berlin", None).await;
    let now = at("2026-03-05T12:00:00Z");
    let (schedule, _) = create(&c.store, c.org, c.patient.id, &input(), None, now)
        .await
        .unwrap();
    let occurrences = c.store.reminder_occurrences();
    let all = |from: &str| {
        let from = at(from);
        async move {
            occurrences
                .list_for_patient(c.org, c.patient.id, from, at("2026-04-01T00:00:00Z"))
                .await
                .unwrap()
        }
    };
    let first = all("2026-03-01T00:00:00Z").await[0].clone();
    occurrences
        .set_state(c.org, first.id, OccurrenceState::Sent)
        .await
        .unwrap();

    // 08:00 → 09:00: the 08:00 doses still planned are cancelled and 09:00 ones planned (a dose
    // is named by its slot), the 20:00 ones kept; the sent 08:00 dose stays as it was.
    let change = ScheduleEdit {
        rrule: Some("FREQ=DAILY;BYHOUR=9,20;BYMINUTE=0".into()),
        ..ScheduleEdit::default()
    };
    let (_, outcome) = edit(&c.store, c.org, schedule.id, &change, now)
        .await
        .unwrap();
    assert_eq!(
        (outcome.inserted, outcome.kept, outcome.cancelled),
        (5, 5, 4),
        "{outcome:?}"
    );
    let after = all("2026-03-01T00:00:00Z").await;
    let sent: Vec<_> = after
        .iter()
        .filter(|o| o.state == OccurrenceState::Sent)
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].due_at, first.due_at);
    let tz = schedule.timezone.tz();
    assert!(
        after
            .iter()
            .filter(|o| o.state == OccurrenceState::Planned)
            .all(|o| matches!(
                o.due_at
                    .with_timezone(&tz)
                    .format("%H:%M")
                    .to_string()
                    .as_str(),
                "09:00" | "20:00"
            ))
    );

    // A bad edit changes nothing.
    let bad = ScheduleEdit {
        timezone: Some("Nowhere/Else".into()),
        ends_on: Some("2026-01-01".into()),
        ..ScheduleEdit::default()
    };
    let err = edit(&c.store, c.org, schedule.id, &bad, now)
        .await
        .unwrap_err();
    assert_eq!(fields(err), ["timezone", "ends_on"]);
    assert_eq!(all("2026-03-01T00:00:00Z").await, after);

    // Stopping cancels every planned dose.
    let stop = ScheduleEdit {
        active: Some(false),
        ..ScheduleEdit::default()
    };
    let (stopped, outcome) = edit(&c.store, c.org, schedule.id, &stop, now)
        .await
        .unwrap();
    assert!(!stopped.active);
    assert!(outcome.cancelled >= 9, "{outcome:?}");
    assert!(
        all("2026-03-01T00:00:00Z")
            .await
            .iter()
            .all(|o| o.state != OccurrenceState::Planned)
    );
}

#[tokio::test]
async fn alerts_are_mailed_once_to_the_care_team_without_the_patients_words() {
    let c = common::clinic("en", "UTC", None).await;
    let smtp = servers::SmtpServer::start();
    let staff = c.store.staff_users();
    for (email, role) in [
        ("nurse@clinic.example", Role::CareTeam),
        ("reviewer@clinic.example", Role::Reviewer),
    ] {
        staff
            .create(
                c.org,
                NewStaffUser {
                    email: email.parse().unwrap(),
                    display_name: "Staff".parse().unwrap(),
                    role,
                },
                "a long enough password",
            )
            .await
            .unwrap();
    }
    let alert = c
        .store
        .alerts()
        .raise(
            c.org,
            NewAlert {
                patient_id: c.patient.id,
                kind: AlertKind::MissedDoses,
                category: Some("missed_in_a_row".into()),
                message_id: None,
                details: serde_json::json!({"missed_in_a_row": 3}),
            },
        )
        .await
        .unwrap();
    let settings: careloop_channels::email::EmailSettings =
        serde_json::from_value(serde_json::json!({
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_tls": "none",
            "from_address": "care@clinic.example",
            "signing_key": "a signing key that is long enough for the tests",
            "command_timeout_secs": 5,
            "send_timeout_secs": 10,
        }))
        .unwrap();
    let mailer = AlertMailer {
        email: careloop_channels::email::EmailChannel::new(settings).unwrap(),
        dashboard_url: Some("https://care.example/staff/alerts".into()),
    };
    let round = mail_once(&c.store, &mailer, Utc::now()).await.unwrap();
    assert_eq!(round.mailed, 1, "{round:?}");
    let again = mail_once(&c.store, &mailer, Utc::now()).await.unwrap();
    assert_eq!(again.mailed, 0, "mailed once");

    let received = smtp.received();
    assert_eq!(received.len(), 1);
    let mail = String::from_utf8_lossy(&received[0]).into_owned();
    assert!(mail.contains("nurse@clinic.example"), "{mail}");
    assert!(!mail.contains("reviewer@clinic.example"), "{mail}");
    assert!(mail.contains(&alert.id.to_string()), "{mail}");
    assert!(mail.contains("Missed in a row: 3"), "{mail}");
    assert!(mail.contains("https://care.example/staff/alerts"), "{mail}");
    assert!(
        !mail.contains("Ana"),
        "the patient's name stays out: {mail}"
    );
    assert!(
        c.store
            .alerts()
            .list_for_patient(c.org, c.patient.id)
            .await
            .unwrap()[0]
            .notified_at
            .is_some()
    );
}

#[tokio::test]
async fn new_quiet_hours_move_planned_doses_when_the_worker_follows_the_change() {
    use careloop_reminders::follow::follow_once;
    let c = common::clinic("en", "America/New_York", None).await;
    let now = at("2026-03-05T12:00:00Z");
    let (schedule, _) = create(&c.store, c.org, c.patient.id, &input(), None, now)
        .await
        .unwrap();
    // The patient sets quiet hours in the chat: 07:00-08:30 their time.
    c.store
        .patients()
        .update_preferences(
            c.org,
            c.patient.id,
            &careloop_store::PatientPreferences {
                language: c.patient.language,
                reading_level: c.patient.reading_level,
                timezone: c.patient.timezone,
                quiet_hours: Some("07:00-08:30".parse().unwrap()),
            },
        )
        .await
        .unwrap();
    let wall = Utc::now();
    let done = follow_once(&c.store, wall - chrono::TimeDelta::minutes(5), wall, now)
        .await
        .unwrap();
    assert_eq!(done.patients, 1);
    assert_eq!(done.doses_changed, 5, "each 08:00 dose moves to 08:30");
    let (_, local) = planned_local(&c, &schedule).await;
    assert_eq!(
        local,
        [
            "06 08:30", "06 20:00", "07 08:30", "07 20:00", "08 08:30", "08 20:00", "09 08:30",
            "09 20:00", "10 08:30", "10 20:00"
        ]
    );
}
