//! Group dispatch: the jobs a worker runs at once are dispatched together.
//!
//! Each apalis job still runs, succeeds, fails and retries on its own; its handler hands the job
//! to the [`Batcher`] and waits for that job's answer. The batcher takes every job waiting (up to
//! `max_batch`, gathering for at most `linger` after the first) and dispatches them with
//! [`dispatch_batch`]: a few reads and one commit for the lot. When the batch as a whole fails
//! (a read or its one transaction), nothing of it was written and each job is dispatched again
//! alone, so one bad dose costs its own job, not its neighbours'.

use std::sync::Arc;
use std::time::Duration;

use careloop_queue::ReminderDue;
use careloop_store::{Store, StoreError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::dispatch::{Dispatch, dispatch, dispatch_batch};

type Answer = Result<Dispatch, StoreError>;
type Waiting = (ReminderDue, oneshot::Sender<Answer>);

/// How a [`Batcher`] groups jobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Jobs dispatched together at most.
    pub max_batch: usize,
    /// How long the first job of a batch waits for others to join it.
    pub linger: Duration,
    /// Batches dispatched at once.
    pub parallel: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_batch: 64,
            linger: Duration::from_millis(2),
            parallel: 2,
        }
    }
}

/// The handle the worker's job handlers share. Cheap to clone; the batcher stops when every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    jobs: mpsc::Sender<Waiting>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the reminder batcher has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Batcher {
    /// Starts the batcher's task on the current runtime.
    pub fn start(store: Store, settings: BatchSettings) -> Batcher {
        let (jobs, waiting) = mpsc::channel(settings.max_batch.max(1) * 4);
        tokio::spawn(run(store, waiting, settings));
        Batcher { jobs }
    }

    /// Dispatches `job` with whichever others are waiting, and returns its own answer.
    pub async fn dispatch(&self, job: ReminderDue) -> Result<Dispatch, BatchError> {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send((job, answer))
            .await
            .map_err(|_| BatchError::Stopped)?;
        Ok(answered.await.map_err(|_| BatchError::Stopped)??)
    }
}

async fn run(store: Store, mut waiting: mpsc::Receiver<Waiting>, settings: BatchSettings) {
    let max_batch = settings.max_batch.max(1);
    let permits = Arc::new(Semaphore::new(settings.parallel.max(1)));
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + settings.linger;
        while batch.len() < max_batch {
            match tokio::time::timeout_at(until, waiting.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let store = store.clone();
        tokio::spawn(async move {
            answer(&store, batch).await;
            drop(permit);
        });
    }
}

/// Dispatches a batch and sends each job its answer (a job whose handler is gone is skipped).
async fn answer(store: &Store, batch: Vec<Waiting>) {
    let (jobs, senders): (Vec<ReminderDue>, Vec<oneshot::Sender<Answer>>) =
        batch.into_iter().unzip();
    let started = std::time::Instant::now();
    match dispatch_batch(store, &jobs).await {
        Ok(answers) => {
            tracing::debug!(
                jobs = jobs.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "reminder batch dispatched"
            );
            for (sender, answer) in senders.into_iter().zip(answers) {
                let _ = sender.send(answer);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = jobs.len(), "reminder batch failed; dispatching its jobs one at a time");
            for (job, sender) in jobs.iter().zip(senders) {
                let _ = sender.send(dispatch(store, job).await);
            }
        }
    }
}
