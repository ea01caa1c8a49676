//! The due sweeper: every `interval` it claims the occurrences that are due (`planned` →
//! `dispatching`, one process wins each) and enqueues a job for each on the apalis queue; it also
//! enqueues again any occurrence left in `dispatching` longer than `stale_after` (its job was
//! lost with a worker). Dispatching is idempotent, so a job enqueued twice still makes one
//! message.

use std::time::Duration;

use careloop_core::OccurrenceState;
use careloop_queue::{QueueConnection, ReminderDue};
use careloop_store::Store;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub interval: Duration,
    /// Occurrences claimed per round.
    pub batch: u64,
    pub stale_after: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            interval: Duration::from_secs(1),
            batch: 1000,
            stale_after: Duration::from_secs(120),
        }
    }
}

/// One round; returns how many jobs were enqueued.
pub async fn sweep_once(
    store: &Store,
    queue: &QueueConnection,
    settings: &SweepSettings,
) -> anyhow::Result<usize> {
    let occurrences = store.reminder_occurrences();
    let now = Utc::now();
    let mut enqueued = 0;
    for occurrence in occurrences.due(now, settings.batch).await? {
        let claimed = occurrences
            .transition_state(
                occurrence.organization_id,
                occurrence.id,
                OccurrenceState::Planned,
                OccurrenceState::Dispatching,
            )
            .await?;
        if claimed {
            let job = ReminderDue {
                organization_id: occurrence.organization_id,
                occurrence_id: occurrence.id,
            };
            queue.enqueue_reminder(job, now).await?;
            enqueued += 1;
        }
    }
    let stale_before = now
        - chrono::Duration::from_std(settings.stale_after)
            .unwrap_or_else(|_| chrono::Duration::minutes(2));
    for occurrence in occurrences
        .stale_dispatching(stale_before, settings.batch)
        .await?
    {
        // Touch it (dispatching → dispatching) so the next round does not enqueue it again.
        let touched = occurrences
            .transition_state(
                occurrence.organization_id,
                occurrence.id,
                OccurrenceState::Dispatching,
                OccurrenceState::Dispatching,
            )
            .await?;
        if touched {
            let job = ReminderDue {
                organization_id: occurrence.organization_id,
                occurrence_id: occurrence.id,
            };
            queue.enqueue_reminder(job, now).await?;
            tracing::warn!(occurrence_id = %occurrence.id, "stale reminder enqueued again");
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Sweeps until `shutdown`. Failures are logged and retried next round.
pub async fn run(
    store: Store,
    queue: QueueConnection,
    settings: SweepSettings,
    shutdown: CancellationToken,
) {
    loop {
        match sweep_once(&store, &queue, &settings).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(enqueued = n, "due reminders enqueued"),
            Err(e) => tracing::warn!(error = %e, "reminder sweep failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}
