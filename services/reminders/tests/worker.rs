//! The reminder worker on the real SQLite queue and on the real Redis: a due job claims its
//! occurrence exactly once, a redelivered job is a no-op, and the worker stops on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use careloop_config::QueueBackend;
use careloop_core::{OccurrenceState, OrganizationId, ReminderOccurrenceId};
use careloop_queue::{QueueConnection, ReminderDue};
use careloop_reminders::{Dispatch, dispatch, run};
use careloop_store::{NewReminderOccurrence, Store};
use chrono::Utc;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    org: OrganizationId,
    occurrence: ReminderOccurrenceId,
}

async fn fixture() -> Fixture {
    let common::Clinic {
        _dir: dir,
        store,
        org,
        patient,
    } = common::clinic("es", "Europe/Madrid", None).await;
    let occurrence = store
        .reminder_occurrences()
        .insert_if_absent(
            org,
            NewReminderOccurrence {
                schedule_id: None,
                campaign_id: None,
                patient_id: patient.id,
                due_at: Utc::now(),
                idempotency_key: format!("test:{}", patient.id),
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
        occurrence,
    }
}

/// Audit entries recorded for the fixture's occurrence (one per claim).
async fn claims(f: &Fixture) -> usize {
    f.store
        .audit()
        .list_for_entity(f.org, "reminder_occurrence", &f.occurrence.to_string())
        .await
        .unwrap()
        .len()
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
async fn dispatch_claims_once_and_ignores_redelivery() {
    let f = fixture().await;
    let job = ReminderDue {
        organization_id: f.org,
        occurrence_id: f.occurrence,
    };
    assert_eq!(dispatch(&f.store, &job).await.unwrap(), Dispatch::Claimed);
    assert_eq!(
        dispatch(&f.store, &job).await.unwrap(),
        Dispatch::AlreadyHandled
    );
    assert_eq!(state(&f).await, OccurrenceState::Dispatching);
    assert_eq!(claims(&f).await, 1, "one audit entry for one claim");

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

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(queue, f.store.clone(), 2, async move {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&f).await != OccurrenceState::Dispatching {
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
    assert_eq!(
        claims(&f).await,
        1,
        "a redelivered job claims nothing twice"
    );
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
