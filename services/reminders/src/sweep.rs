//! The due sweeper: every `interval` it claims the occurrences that are due (`planned` →
//! `dispatching`, one process wins each) and enqueues a job for each on the apalis queue; it also
//! enqueues again any occurrence left in `dispatching` longer than `stale_after` (its job was
//! lost with a worker). Dispatching is idempotent, so a job enqueued twice still makes one
//! message. Stale occurrences are enqueued again only while the queue has no job waiting: under a
//! backlog longer than `stale_after` (100,000 doses due in one minute) an occurrence still
//! waiting in the queue is late, not lost, and enqueueing it again would only add duplicate jobs
//! to the backlog. Jobs lost with a restarted Redis are enqueued again once the queue drains.
//!
//! The sweeper also has the queue forget jobs that finished more than `forget_after` ago (apalis
//! keeps every finished job's payload and result otherwise).
//!
//! Claims and enqueues go by batches of `batch`: one transaction claims a batch, one write
//! enqueues its jobs, so 100,000 doses due in the same minute cost a few hundred round trips, not
//! 200,000. A process killed between the two leaves that batch in `dispatching` without jobs;
//! the stale path enqueues it again after `stale_after`. A batch that cannot be enqueued (queue
//! down) is released back to `planned` for the next round.

use std::time::Duration;

use careloop_core::ReminderOccurrenceId;
use careloop_queue::{QueueConnection, ReminderDue};
use careloop_store::{ReminderOccurrence, Store};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// How often to look for due occurrences (a full batch is followed by the next at once).
    pub interval: Duration,
    /// Occurrences claimed and enqueued per round trip.
    pub batch: u64,
    pub stale_after: Duration,
    /// Finished jobs are kept this long on the queue (for its own statistics), then forgotten.
    pub forget_after: Duration,
    /// How often finished jobs are forgotten.
    pub forget_interval: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            interval: Duration::from_millis(250),
            batch: 1000,
            stale_after: Duration::from_secs(120),
            forget_after: Duration::from_secs(3600),
            forget_interval: Duration::from_secs(300),
        }
    }
}

fn jobs(claimed: &[ReminderOccurrence]) -> Vec<ReminderDue> {
    claimed
        .iter()
        .map(|o| ReminderDue {
            organization_id: o.organization_id,
            occurrence_id: o.id,
        })
        .collect()
}

/// Enqueues a claimed batch; if that fails, releases the claims and returns the error.
async fn enqueue(
    store: &Store,
    queue: &QueueConnection,
    claimed: &[ReminderOccurrence],
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    if let Err(e) = queue.enqueue_reminders(jobs(claimed), now).await {
        let ids: Vec<ReminderOccurrenceId> = claimed.iter().map(|o| o.id).collect();
        if let Err(release) = store.reminder_occurrences().release_claims(&ids).await {
            tracing::warn!(error = %release, claimed = ids.len(), "releasing reminder claims failed; the stale sweep will retry them");
        }
        return Err(e.into());
    }
    Ok(())
}

/// One round; returns how many jobs were enqueued.
pub async fn sweep_once(
    store: &Store,
    queue: &QueueConnection,
    settings: &SweepSettings,
) -> anyhow::Result<usize> {
    let occurrences = store.reminder_occurrences();
    let now = Utc::now();
    let batch = settings.batch.max(1);
    let mut enqueued = 0;
    loop {
        let claimed = occurrences.claim_due(now, batch).await?;
        enqueue(store, queue, &claimed, now).await?;
        enqueued += claimed.len();
        if (claimed.len() as u64) < batch {
            break;
        }
    }
    let stale_before = now
        - chrono::Duration::from_std(settings.stale_after)
            .unwrap_or_else(|_| chrono::Duration::minutes(2));
    if queue.waiting_reminder_jobs().await? > 0 {
        return Ok(enqueued);
    }
    // Touched as they are taken, so the next round does not enqueue them again.
    let stale = occurrences
        .claim_stale_dispatching(stale_before, batch)
        .await?;
    if !stale.is_empty() {
        queue.enqueue_reminders(jobs(&stale), now).await?;
        tracing::warn!(count = stale.len(), "stale reminders enqueued again");
        enqueued += stale.len();
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
    let mut last_forget = tokio::time::Instant::now();
    loop {
        match sweep_once(&store, &queue, &settings).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(enqueued = n, "due reminders enqueued"),
            Err(e) => tracing::warn!(error = %e, "reminder sweep failed"),
        }
        if last_forget.elapsed() >= settings.forget_interval {
            last_forget = tokio::time::Instant::now();
            forget_finished(&queue, settings.forget_after).await;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}

/// Has the queue forget the reminder jobs that finished more than `age` ago.
pub async fn forget_finished(queue: &QueueConnection, age: Duration) {
    match queue.forget_finished_reminder_jobs(age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(forgotten = n, "finished reminder jobs forgotten"),
        Err(e) => tracing::warn!(error = %e, "forgetting finished reminder jobs failed"),
    }
}
