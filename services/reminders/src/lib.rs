//! Medication reminders: planning them in the patient's own time, and apalis workers that
//! dispatch them.
//!
//! [`planner`] computes when each dose of a schedule is due (pure: DST, quiet hours, stable
//! idempotency keys); [`plan()`] stores those doses as occurrences and re-plans them after a
//! change without duplicating what was sent.
//!
//! [`dispatch()`] turns one due occurrence into a reminder message in the channel outbox, once.
//!
//! [`run`] starts the reminder worker on whichever storage the queue settings chose (SQLite for the
//! embedded default, Redis for scale-out) and stops it gracefully when `shutdown` resolves. Several
//! worker processes may run at once: a dose's message has an idempotency key derived from the
//! occurrence's, so two workers or a redelivered job still make one message, and the occurrence's
//! state (only `planned` or `dispatching` moves on, to `sent`) makes a late redelivery a no-op.

pub mod dispatch;
mod outgoing;
pub mod plan;
pub mod planner;
pub mod respond;
pub mod sweep;

pub use dispatch::{Dispatch, dispatch};
pub use plan::{PlanError, PlanOutcome, plan};

use std::future::Future;

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use careloop_queue::{QueueConnection, QueueStorage, ReminderDue};
use careloop_store::Store;

async fn handle(job: ReminderDue, store: Data<Store>) -> Result<(), BoxDynError> {
    dispatch(&store, &job).await?;
    Ok(())
}

/// Runs the reminder worker and the due sweeper (which turns due occurrences into jobs, see
/// [`sweep`]) until `shutdown` resolves, then lets in-flight jobs finish.
pub async fn run(
    queue: QueueConnection,
    store: Store,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stop_sweeper = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(sweep::run(
        store.clone(),
        queue.clone(),
        sweep::SweepSettings::default(),
        stop_sweeper.clone(),
    ));
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
            stop_sweeper.cancel();
            Ok(())
        })
        .await?;
    sweeper.await?;
    tracing::info!("reminder worker stopped");
    Ok(())
}
