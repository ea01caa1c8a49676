//! The reminder worker on the real SQLite queue and on the real Redis: a due dose becomes one
//! localized reminder message in the outbox however often its job is delivered, the sweeper
//! enqueues due doses by itself, and the worker stops on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use careloop_config::QueueBackend;
use careloop_core::{
    ChannelKind, OccurrenceState, OrganizationId, ReminderOccurrenceId, TelegramChatId,
};
use careloop_queue::{QueueConnection, ReminderDue};
use careloop_reminders::{Dispatch, dispatch, run};
use careloop_store::{ChannelAddress, NewMedicationSchedule, NewReminderOccurrence, Store};
use chrono::Utc;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    org: OrganizationId,
    patient: careloop_store::Patient,
    occurrence: ReminderOccurrenceId,
}

/// A Spanish-speaking patient on Telegram with a metformin schedule, the approved templates, and
/// one dose due now.
async fn fixture() -> Fixture {
    let common::Clinic {
        _dir: dir,
        store,
        org,
        patient,
    } = common::clinic("es", "Europe/Madrid", None).await;
    let templates: Vec<_> = careloop_content::load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content"),
    )
    .unwrap()
    .into_iter()
    .filter(|d| d.kind == careloop_core::ContentKind::Template)
    .collect();
    store
        .content()
        .import_documents(org, &templates, true)
        .await
        .unwrap();
    store
        .channel_identities()
        .link(
            org,
            patient.id,
            &ChannelAddress::Telegram(TelegramChatId::new(4242)),
            None,
        )
        .await
        .unwrap();
    let schedule = store
        .medication_schedules()
        .create(
            org,
            NewMedicationSchedule {
                patient_id: patient.id,
                medicine_name: "Metformina".parse().unwrap(),
                dose_text: "500 mg con la comida".parse().unwrap(),
                rrule: "FREQ=DAILY;BYHOUR=8;BYMINUTE=0".parse().unwrap(),
                timezone: patient.timezone,
                starts_on: Utc::now().date_naive(),
                ends_on: None,
                quiet_hours_policy: careloop_core::QuietHoursPolicy::Delay,
                channels: vec![ChannelKind::Email, ChannelKind::Telegram],
                created_by: None,
            },
        )
        .await
        .unwrap();
    let occurrence = store
        .reminder_occurrences()
        .insert_if_absent(
            org,
            NewReminderOccurrence {
                schedule_id: Some(schedule.id),
                campaign_id: None,
                patient_id: patient.id,
                due_at: Utc::now(),
                idempotency_key: format!("schedule:{}:now", schedule.id),
            },
        )
        .await
        .unwrap()
        .into_inner()
        .id;
    Fixture {
        _dir: dir,
        store,
        org,
        patient,
        occurrence,
    }
}

/// The outbound messages of the fixture's patient.
async fn outbound(f: &Fixture) -> Vec<careloop_store::Message> {
    f.store
        .messages()
        .list_for_patient(f.org, f.patient.id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == careloop_core::MessageDirection::Outbound)
        .collect()
}

async fn state(f: &Fixture) -> OccurrenceState {
    f.store
        .reminder_occurrences()
        .get(f.org, f.occurrence)
        .await
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn dispatch_queues_one_localized_message_with_buttons_and_ignores_redelivery() {
    let f = fixture().await;
    let job = ReminderDue {
        organization_id: f.org,
        occurrence_id: f.occurrence,
    };
    assert_eq!(dispatch(&f.store, &job).await.unwrap(), Dispatch::Queued);
    assert_eq!(
        dispatch(&f.store, &job).await.unwrap(),
        Dispatch::AlreadyHandled
    );
    assert_eq!(state(&f).await, OccurrenceState::Sent);
    let sent = outbound(&f).await;
    assert_eq!(sent.len(), 1, "one message for one dose");
    let m = &sent[0];
    assert_eq!(
        m.channel,
        ChannelKind::Telegram,
        "the first reachable channel"
    );
    assert_eq!(m.status, careloop_core::MessageStatus::Queued);
    assert!(m.body.contains("Metformina") && m.body.contains("500 mg con la comida"));
    assert!(!m.body.contains("{medicine}"));
    assert_eq!(m.language, Some(careloop_core::Language::Spanish));
    let meta: careloop_channels::DeliveryMeta =
        serde_json::from_value(m.delivery_meta.clone().unwrap()).unwrap();
    assert_eq!(meta.purpose, careloop_channels::Purpose::Reminder);
    let labels: Vec<_> = meta.buttons.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, vec!["Tomado", "Omitir", "Recordar en 30 min"]);
    assert_eq!(
        meta.buttons[0].action,
        format!("reminder:{}:taken", f.occurrence)
    );
    let occurrence = f
        .store
        .reminder_occurrences()
        .get(f.org, f.occurrence)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(occurrence.message_id, Some(m.id));
    assert!(
        !m.provenance
            .as_ref()
            .unwrap()
            .content_version_ids
            .is_empty()
    );

    let unknown = ReminderDue {
        organization_id: f.org,
        occurrence_id: ReminderOccurrenceId::new(),
    };
    assert_eq!(dispatch(&f.store, &unknown).await.unwrap(), Dispatch::Gone);
    // Another organization's id never reaches this organization's occurrence.
    let other = ReminderDue {
        organization_id: OrganizationId::new(),
        occurrence_id: f.occurrence,
    };
    assert_eq!(dispatch(&f.store, &other).await.unwrap(), Dispatch::Gone);
}

#[tokio::test]
async fn two_workers_at_once_make_one_message() {
    let f = fixture().await;
    let job = ReminderDue {
        organization_id: f.org,
        occurrence_id: f.occurrence,
    };
    let (a, b) = tokio::join!(dispatch(&f.store, &job), dispatch(&f.store, &job));
    let outcomes = [a.unwrap(), b.unwrap()];
    assert!(outcomes.contains(&Dispatch::Queued), "{outcomes:?}");
    assert_eq!(outbound(&f).await.len(), 1);
}

#[tokio::test]
async fn withdrawn_consent_cancels_and_an_unreachable_patient_fails_with_the_reason() {
    let f = fixture().await;
    f.store
        .patients()
        .set_consent(
            f.org,
            f.patient.id,
            careloop_core::ConsentState::Withdrawn,
            &careloop_store::Actor::System,
        )
        .await
        .unwrap();
    let job = ReminderDue {
        organization_id: f.org,
        occurrence_id: f.occurrence,
    };
    assert!(matches!(
        dispatch(&f.store, &job).await.unwrap(),
        Dispatch::Cancelled(_)
    ));
    assert_eq!(state(&f).await, OccurrenceState::Cancelled);
    assert!(outbound(&f).await.is_empty());

    // A patient whose only channel is not linked: failed, with why, nothing queued.
    let g = fixture().await;
    g.store
        .patients()
        .set_channel_opt_out(g.org, g.patient.id, ChannelKind::Telegram, true)
        .await
        .unwrap();
    let job = ReminderDue {
        organization_id: g.org,
        occurrence_id: g.occurrence,
    };
    let Dispatch::Failed(why) = dispatch(&g.store, &job).await.unwrap() else {
        panic!("expected a failure")
    };
    assert!(why.contains("no reachable channel"), "{why}");
    assert_eq!(state(&g).await, OccurrenceState::Failed);
    let audit = g
        .store
        .audit()
        .list_for_entity(g.org, "reminder_occurrence", &g.occurrence.to_string())
        .await
        .unwrap();
    assert_eq!(audit[0].action, "reminder.failed");
}

async fn worker_round_trip(backend: QueueBackend) {
    let f = fixture().await;
    let namespace = format!("test_{}", uuid_like());
    let queue = QueueConnection::connect(&backend, &namespace)
        .await
        .unwrap();
    queue.ping().await.unwrap();
    let job = ReminderDue {
        organization_id: f.org,
        occurrence_id: f.occurrence,
    };
    // The same job twice, as a redelivery would: the occurrence is still claimed once.
    queue
        .enqueue_reminder(job.clone(), Utc::now())
        .await
        .unwrap();
    queue.enqueue_reminder(job, Utc::now()).await.unwrap();
    assert_eq!(queue.waiting_reminder_jobs().await.unwrap(), 2);

    run_until_sent(&f, queue.clone()).await;
    assert_eq!(
        outbound(&f).await.len(),
        1,
        "a redelivered job makes no second message"
    );
    // Both jobs ran. Once finished long enough, the queue forgets them: its storage does not grow
    // with every reminder ever sent.
    assert_eq!(queue.waiting_reminder_jobs().await.unwrap(), 0);
    assert_eq!(
        queue
            .forget_finished_reminder_jobs(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "jobs finished a moment ago are kept"
    );
    // The two above, and the one the worker's own sweeper may have enqueued for the due dose.
    let forgotten = queue
        .forget_finished_reminder_jobs(Duration::ZERO)
        .await
        .unwrap();
    assert!((2..=3).contains(&forgotten), "{forgotten}");
    assert_eq!(
        queue
            .forget_finished_reminder_jobs(Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}

/// Runs the worker (and its sweeper) until the fixture's dose is sent, then stops it cleanly.
async fn run_until_sent(f: &Fixture, queue: QueueConnection) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(queue, f.store.clone(), 2, async move {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(f).await != OccurrenceState::Sent {
        assert!(
            Instant::now() < deadline,
            "the worker did not pick up the job"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn uuid_like() -> String {
    careloop_core::MessageId::new().to_string().replace('-', "")
}

#[tokio::test]
async fn worker_on_the_sqlite_queue() {
    let dir = tempfile::tempdir().unwrap();
    worker_round_trip(QueueBackend::Sqlite {
        path: dir.path().join("queue.sqlite"),
    })
    .await;
}

#[tokio::test]
async fn worker_on_redis() {
    worker_round_trip(QueueBackend::Redis {
        url: "redis://127.0.0.1:6379/".to_owned().into(),
    })
    .await;
}

#[tokio::test]
async fn the_sweeper_enqueues_due_doses_by_itself_and_recovers_lost_jobs() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let queue = QueueConnection::connect(
        &QueueBackend::Sqlite {
            path: dir.path().join("queue.sqlite"),
        },
        "sweep",
    )
    .await
    .unwrap();
    let settings = careloop_reminders::sweep::SweepSettings {
        stale_after: Duration::from_millis(300),
        ..Default::default()
    };
    // A due dose is claimed and enqueued once; a second round finds nothing new.
    assert_eq!(
        careloop_reminders::sweep::sweep_once(&f.store, &queue, &settings)
            .await
            .unwrap(),
        1
    );
    assert_eq!(state(&f).await, OccurrenceState::Dispatching);
    assert_eq!(
        careloop_reminders::sweep::sweep_once(&f.store, &queue, &settings)
            .await
            .unwrap(),
        0
    );
    // Past `stale_after` but its job still waits on the queue (a backlog, not a loss): not
    // enqueued again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(queue.waiting_reminder_jobs().await.unwrap(), 1);
    assert_eq!(
        careloop_reminders::sweep::sweep_once(&f.store, &queue, &settings)
            .await
            .unwrap(),
        0
    );
    // The queue loses its jobs (a Redis restarted empty; here a new queue file): the stale dose
    // is enqueued again.
    let emptied = QueueConnection::connect(
        &QueueBackend::Sqlite {
            path: dir.path().join("emptied.sqlite"),
        },
        "sweep",
    )
    .await
    .unwrap();
    assert_eq!(
        careloop_reminders::sweep::sweep_once(&f.store, &emptied, &settings)
            .await
            .unwrap(),
        1
    );
    // The worker then sends it once, whatever the number of jobs: the new one, then the old one
    // (run on the first queue) finds it sent.
    run_until_sent(&f, emptied).await;
    run_until_sent(&f, queue.clone()).await;
    assert_eq!(queue.waiting_reminder_jobs().await.unwrap(), 0);
    assert_eq!(outbound(&f).await.len(), 1);
}
