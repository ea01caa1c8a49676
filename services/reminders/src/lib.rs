//! Medication reminders: planning them in the patient's own time, and apalis workers that
//! dispatch them.
//!
//! [`planner`] computes when each dose of a schedule is due (pure: DST, quiet hours, stable
//! idempotency keys); [`plan()`] stores those doses as occurrences and re-plans them after a
//! change without duplicating what was sent.
//!
//! [`dispatch()`] turns one due occurrence into a reminder message in the channel outbox, once.
//!
//! [`campaign`] runs campaigns: approved templates sent to an audience, each step at an absolute
//! time or relative to a patient date, as occurrences the same sweeper and worker dispatch.
//!
//! [`run`] starts the reminder worker on whichever storage the queue settings chose (SQLite for the
//! embedded default, Redis for scale-out) and stops it gracefully when `shutdown` resolves. Several
//! worker processes may run at once: a dose's message has an idempotency key derived from the
//! occurrence's, so two workers or a redelivered job still make one message, and the occurrence's
//! state (only `planned` or `dispatching` moves on, to `sent`) makes a late redelivery a no-op.

pub mod alert_mail;
pub mod campaign;
pub mod dispatch;
pub mod missed;
mod outgoing;
pub mod plan;
pub mod planner;
pub mod respond;
pub mod schedules;
pub mod sweep;

pub use dispatch::{Dispatch, dispatch};
pub use plan::{PlanError, PlanOutcome, plan};

use std::future::Future;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use careloop_queue::{QueueConnection, QueueStorage, ReminderDue};
use careloop_store::Store;

async fn handle(job: ReminderDue, store: Data<Store>) -> Result<(), BoxDynError> {
    dispatch(&store, &job).await?;
    Ok(())
}

/// What a reminder process runs besides the worker, and how.
#[derive(Debug)]
pub struct WorkerSettings {
    /// Reminder jobs run at once.
    pub concurrency: usize,
    /// Missed doses and alerts (`careloop_adherence`).
    pub adherence: careloop_adherence::AdherencePolicy,
    /// How often unanswered reminders are checked.
    pub missed_interval: Duration,
    /// How far ahead schedules are planned, and how often.
    pub plan_horizon: chrono::TimeDelta,
    pub plan_interval: Duration,
    /// Mails the care team about new alerts, when email is set up.
    pub alert_mailer: Option<alert_mail::AlertMailer>,
    pub alert_mail_interval: Duration,
}

impl WorkerSettings {
    pub fn new(concurrency: usize) -> Self {
        WorkerSettings {
            concurrency,
            adherence: careloop_adherence::AdherencePolicy::default(),
            missed_interval: Duration::from_secs(60),
            plan_horizon: schedules::DEFAULT_HORIZON,
            plan_interval: Duration::from_secs(3600),
            alert_mailer: None,
            alert_mail_interval: Duration::from_secs(15),
        }
    }
}

/// [`run_with`] with the default settings and `concurrency` jobs at once.
pub async fn run(
    queue: QueueConnection,
    store: Store,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(queue, store, WorkerSettings::new(concurrency), shutdown).await
}

/// Runs the reminder worker, the due sweeper (which turns due occurrences into jobs, see
/// [`sweep`]), the planner ([`schedules::run_planner`]), the missed-dose sweep ([`missed`]) and
/// the alert mailer ([`alert_mail`], when configured) until `shutdown` resolves, then lets
/// in-flight jobs finish.
pub async fn run_with(
    queue: QueueConnection,
    store: Store,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let concurrency = settings.concurrency;
    let stop_sweeper = tokio_util::sync::CancellationToken::new();
    let mut background = vec![
        tokio::spawn(sweep::run(
            store.clone(),
            queue.clone(),
            sweep::SweepSettings::default(),
            stop_sweeper.clone(),
        )),
        tokio::spawn(schedules::run_planner(
            store.clone(),
            settings.plan_horizon,
            settings.plan_interval,
            stop_sweeper.clone(),
        )),
        tokio::spawn(missed::run(
            store.clone(),
            settings.adherence,
            settings.missed_interval,
            stop_sweeper.clone(),
        )),
    ];
    if let Some(mailer) = settings.alert_mailer {
        background.push(tokio::spawn(alert_mail::run(
            store.clone(),
            mailer,
            settings.alert_mail_interval,
            stop_sweeper.clone(),
        )));
    }
    let name = format!("reminders-{}", std::process::id());
    let monitor = match queue.storage().clone() {
        QueueStorage::Sqlite(pool) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.sqlite_reminder_worker(&pool))
                .data(store.clone())
                .concurrency(concurrency)
                .build(handle)
        }),
        QueueStorage::Redis(conn) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.redis_reminder_worker(&conn))
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
    for task in background {
        task.await?;
    }
    tracing::info!("reminder worker stopped");
    Ok(())
}
