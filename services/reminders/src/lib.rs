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
pub mod follow;
pub mod missed;
mod outgoing;
pub mod plan;
pub mod planner;
pub mod respond;
pub mod schedules;
pub mod sweep;

pub use dispatch::{Dispatch, JobError, dispatch, dispatch_batch, dispatch_job};
pub use plan::{PlanError, PlanOutcome, plan};

use std::future::Future;
use std::time::Duration;

use apalis::layers::retry::backoff::{ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use apalis::layers::retry::{BackoffRetryPolicy, HasherRng, RetryPolicy};
use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use careloop_queue::{QueueConnection, QueueStorage, RemindersDue};
use careloop_store::Store;

async fn handle(job: RemindersDue, store: Data<Store>) -> Result<(), BoxDynError> {
    let started = std::time::Instant::now();
    dispatch_job(&store, &job).await?;
    tracing::debug!(
        reminders = job.reminders.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reminder job dispatched"
    );
    Ok(())
}

/// The monitor that runs one apalis worker for reminder jobs on the configured queue.
fn worker_monitor(
    queue: &QueueConnection,
    name: String,
    store: &Store,
    retry: &BackoffRetryPolicy<ExponentialBackoff<HasherRng>>,
    concurrency: usize,
) -> Monitor {
    let (queue, store, retry) = (queue.clone(), store.clone(), retry.clone());
    match queue.storage().clone() {
        QueueStorage::Sqlite(pool) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.sqlite_reminder_worker(&pool, concurrency))
                .data(store.clone())
                .concurrency(concurrency)
                .retry(retry.clone())
                .build(handle)
        }),
        QueueStorage::Redis(conn) => Monitor::new().register(move |_| {
            WorkerBuilder::new(name.clone())
                .backend(queue.redis_reminder_worker(&conn, concurrency))
                .data(store.clone())
                .concurrency(concurrency)
                .retry(retry.clone())
                .build(handle)
        }),
    }
}

/// A job that fails (the database or the queue is unavailable: a dose that must not or cannot be
/// sent is recorded and succeeds) is tried again up to 5 times, 200 ms to 10 s apart with jitter,
/// then left to the sweeper, which enqueues its still-unsent occurrence again once it is stale.
fn retry_policy() -> anyhow::Result<BackoffRetryPolicy<ExponentialBackoff<HasherRng>>> {
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(200),
        Duration::from_secs(10),
        0.5,
        HasherRng::default(),
    )
    .map_err(|e| anyhow::anyhow!("reminder retry backoff: {e}"))?
    .make_backoff();
    Ok(RetryPolicy::retries(5).with_backoff(backoff))
}

/// What a reminder process runs besides the worker, and how.
#[derive(Debug)]
pub struct WorkerSettings {
    /// Reminder jobs run at once (each carries up to
    /// [`careloop_queue::REMINDERS_PER_JOB`] reminders, dispatched together).
    pub concurrency: usize,
    /// How due occurrences become jobs ([`sweep`]).
    pub sweep: sweep::SweepSettings,
    /// Missed doses and alerts (`careloop_adherence`).
    pub adherence: careloop_adherence::AdherencePolicy,
    /// How often unanswered reminders are checked.
    pub missed_interval: Duration,
    /// How far ahead schedules are planned, and how often.
    pub plan_horizon: chrono::TimeDelta,
    pub plan_interval: Duration,
    /// Following patients' changes ([`follow`]).
    pub follow: follow::FollowSettings,
    /// Mails the care team about new alerts, when email is set up.
    pub alert_mailer: Option<alert_mail::AlertMailer>,
    pub alert_mail_interval: Duration,
}

impl WorkerSettings {
    pub fn new(concurrency: usize) -> Self {
        WorkerSettings {
            concurrency,
            sweep: sweep::SweepSettings::default(),
            adherence: careloop_adherence::AdherencePolicy::default(),
            missed_interval: Duration::from_secs(60),
            plan_horizon: schedules::DEFAULT_HORIZON,
            plan_interval: Duration::from_secs(3600),
            follow: follow::FollowSettings::default(),
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
/// [`sweep`]), the planner ([`schedules::run_planner`]), the follower of patients' changes
/// ([`follow`]), the missed-dose sweep ([`missed`]) and
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
            settings.sweep,
            stop_sweeper.clone(),
        )),
        tokio::spawn(schedules::run_planner(
            store.clone(),
            settings.plan_horizon,
            settings.plan_interval,
            stop_sweeper.clone(),
        )),
        tokio::spawn(follow::run(
            store.clone(),
            settings.follow,
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
    let retry = retry_policy()?;
    let stop = stop_sweeper.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    // The apalis worker ends when its queue fails (Redis restarted or unreachable, the SQLite
    // queue unavailable): it is started again, after a pause that grows while it keeps failing.
    // Jobs the queue lost are enqueued again by the sweeper once stale.
    let mut failures: u32 = 0;
    for run in 0u64.. {
        let name = format!("reminders-{}-{run}", std::process::id());
        let monitor = worker_monitor(&queue, name, &store, &retry, concurrency);
        tracing::info!(concurrency, run, "reminder worker started");
        let started = std::time::Instant::now();
        let stop = stop_sweeper.clone();
        let ended = monitor
            .shutdown_timeout(Duration::from_secs(10))
            .run_with_signal(async move {
                stop.cancelled().await;
                Ok(())
            })
            .await;
        if stop_sweeper.is_cancelled() {
            ended?;
            break;
        }
        failures = if started.elapsed() > Duration::from_secs(60) {
            1
        } else {
            failures.saturating_add(1)
        };
        let pause =
            Duration::from_millis(100 * 2u64.pow(failures.min(7))).min(Duration::from_secs(10));
        tracing::warn!(run, ?pause, outcome = ?ended.err(), "reminder worker ended without a shutdown (queue failed); starting it again");
        tokio::select! {
            () = stop_sweeper.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    for task in background {
        task.await?;
    }
    tracing::info!("reminder worker stopped");
    Ok(())
}
