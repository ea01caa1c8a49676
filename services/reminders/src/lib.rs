//! Medication reminders: planning them in the patient's own time, and apalis workers that
//! dispatch them.
//!
//! [`planner`] computes when each dose of a schedule is due (pure: DST, quiet hours, stable
//! idempotency keys); [`plan()`] stores those doses as occurrences and re-plans them after a
//! change without duplicating what was sent.
//!
//! [`run`] starts the reminder worker on whichever storage the queue settings chose (SQLite for the
//! embedded default, Redis for scale-out) and stops it gracefully when `shutdown` resolves. Several
//! worker processes may run at once: a job is claimed by one worker, and the occurrence's state
//! transition in the database (only a `planned` occurrence moves on) makes a redelivered job a no-op.

pub mod plan;
pub mod planner;

pub use plan::{PlanError, PlanOutcome, plan};

use std::future::Future;

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use careloop_core::OccurrenceState;
use careloop_queue::{QueueConnection, QueueStorage, ReminderDue};
use careloop_store::{Actor, NewAuditEntry, Store};

/// What the handler did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// The occurrence was planned and is now being dispatched.
    Claimed,
    /// Already past `planned` (a redelivered or duplicate job): nothing to do.
    AlreadyHandled,
    /// The occurrence no longer exists (schedule deleted): nothing to do.
    Gone,
}

/// Handles one due reminder: claims the occurrence exactly once and records it in the audit log.
/// Rendering the template and sending through the channel outbox hang off this claim.
pub async fn dispatch(
    store: &Store,
    job: &ReminderDue,
) -> Result<Dispatch, careloop_store::StoreError> {
    let occurrences = store.reminder_occurrences();
    let moved = occurrences
        .transition_state(
            job.organization_id,
            job.occurrence_id,
            OccurrenceState::Planned,
            OccurrenceState::Dispatching,
        )
        .await?;
    let outcome = if moved {
        Dispatch::Claimed
    } else if occurrences
        .get(job.organization_id, job.occurrence_id)
        .await?
        .is_some()
    {
        Dispatch::AlreadyHandled
    } else {
        Dispatch::Gone
    };
    if outcome == Dispatch::Claimed {
        store
            .audit()
            .append(NewAuditEntry {
                organization_id: Some(job.organization_id),
                actor: Actor::System,
                action: "reminder.dispatching".into(),
                entity_type: "reminder_occurrence".into(),
                entity_id: job.occurrence_id.to_string(),
                details: serde_json::json!({}),
            })
            .await?;
    }
    tracing::info!(occurrence_id = %job.occurrence_id, outcome = ?outcome, "reminder job handled");
    Ok(outcome)
}

async fn handle(job: ReminderDue, store: Data<Store>) -> Result<(), BoxDynError> {
    dispatch(&store, &job).await?;
    Ok(())
}

/// Runs the reminder worker until `shutdown` resolves, then lets in-flight jobs finish.
pub async fn run(
    queue: QueueConnection,
    store: Store,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let name = format!("reminders-{}", std::process::id());
    let monitor = match queue.storage().clone() {
        QueueStorage::Sqlite(pool) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.sqlite_reminders(&pool))
                .data(store.clone())
                .concurrency(concurrency)
                .build(handle)
        }),
        QueueStorage::Redis(conn) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.redis_reminders(&conn))
                .data(store.clone())
                .concurrency(concurrency)
                .build(handle)
        }),
    };
    tracing::info!(concurrency, "reminder worker started");
    monitor
        .shutdown_timeout(std::time::Duration::from_secs(10))
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await?;
    tracing::info!("reminder worker stopped");
    Ok(())
}
