//! The missed-dose sweep: every `interval` it marks sent reminders nobody answered as missed and
//! raises the care team's alert after missed doses in a row (`careloop_adherence::mark_missed`).

use std::time::Duration;

use careloop_adherence::{AdherencePolicy, mark_missed};
use careloop_store::Store;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

/// Reminders looked at per round.
const BATCH: u64 = 1000;

/// Sweeps until `shutdown`. Failures are logged and retried next round.
pub async fn run(
    store: Store,
    policy: AdherencePolicy,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        loop {
            match mark_missed(&store, Utc::now(), &policy, BATCH).await {
                // A full batch may mean more are waiting.
                Ok(round) if u64::from(round.missed) >= BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "missed-dose sweep failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
