//! Job payloads and the apalis storage that carries them.
//!
//! The storage is chosen by configuration alone: the SQLite-backed queue for the embedded default,
//! Redis for scale-out. Payloads are plain serde structs holding ids only — never message text or
//! contact details, which stay in the database.

use std::{path::Path, time::Duration};

use apalis::prelude::{BackendExt, IntervalStrategy, PollWith, TaskBuilder, TaskSink};
use apalis_redis::{ConnectionManager, RedisStorage};
use apalis_sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use careloop_config::QueueBackend;
use careloop_core::{OrganizationId, ReminderOccurrenceId};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

/// A planned reminder has come due and must be dispatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderDue {
    pub organization_id: OrganizationId,
    pub occurrence_id: ReminderOccurrenceId,
}

/// How often a worker tells the queue it is alive, and how many beats it may miss before the
/// jobs it had fetched go back to the queue for another worker (apalis's own recovery: 30 s).
/// apalis-redis's default would wait 5 minutes after a crash.
const HEARTBEAT: Duration = Duration::from_secs(10);
const MISSED_HEARTBEATS: usize = 3;

/// A worker fetches jobs at most this often (apalis polls at a fixed interval, idle or busy), so
/// a worker's rate is bounded by its fetch batch per interval: 20 ms on Redis (an idle poll is
/// one script call), 100 ms on the SQLite queue (one query).
const REDIS_POLL: Duration = Duration::from_millis(20);
const SQLITE_POLL: Duration = Duration::from_millis(100);

/// Jobs fetched at once by other users of the storage.
const FETCH_BATCH: usize = 32;

/// Jobs a reminder worker fetches at once: four times what it runs at once (between 32 and
/// 512), so that the next jobs are at hand when a batch finishes and a poll interval never
/// caps the rate below what the worker can do. Jobs fetched and not yet run are recovered like
/// running ones if the worker dies (after the missed heartbeats).
pub fn fetch_batch(concurrency: usize) -> usize {
    concurrency.saturating_mul(4).clamp(32, 512)
}

/// Queue names are stable strings (`<namespace>.reminder_due`), not Rust type paths, so renaming a
/// type never strands jobs, and deployments sharing one Redis keep apart by namespace.
const REMINDER_QUEUE: &str = "reminder_due";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("could not create the queue folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("SQLite queue unavailable: {0}")]
    Sqlite(#[from] apalis_sqlite::SqlxError),
    #[error("SQLite queue set-up failed: {0}")]
    SqliteSetup(String),
    #[error("Redis queue unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("could not enqueue a job: {0}")]
    Push(String),
}

/// The storage under a [`QueueConnection`].
#[derive(Clone)]
pub enum QueueStorage {
    Sqlite(SqlitePool),
    Redis(ConnectionManager),
}

/// An open connection to the configured queue storage, with the namespace of its queue names.
/// Cheap to clone.
#[derive(Clone)]
pub struct QueueConnection {
    storage: QueueStorage,
    namespace: String,
}

impl std::fmt::Debug for QueueConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QueueConnection({}, {})", self.kind(), self.namespace)
    }
}

impl QueueConnection {
    /// Connects and, for SQLite, creates the file and applies apalis's own schema.
    pub async fn connect(backend: &QueueBackend, namespace: &str) -> Result<Self, QueueError> {
        let storage = match backend {
            QueueBackend::Sqlite { path } => {
                QueueStorage::Sqlite(Self::connect_sqlite(path).await?)
            }
            QueueBackend::Redis { url } => {
                let client = redis::Client::open(url.expose_secret())?;
                QueueStorage::Redis(
                    // Replies may take longer than redis-rs's 500 ms default on a busy machine.
                    ConnectionManager::new_with_config(
                        client,
                        redis::aio::ConnectionManagerConfig::new()
                            .set_response_timeout(Some(Duration::from_secs(5)))
                            .set_connection_timeout(Some(Duration::from_secs(5))),
                    )
                    .await?,
                )
            }
        };
        Ok(QueueConnection {
            storage,
            namespace: namespace.to_owned(),
        })
    }

    pub fn storage(&self) -> &QueueStorage {
        &self.storage
    }

    /// The full name of the reminder queue.
    pub fn reminder_queue(&self) -> String {
        format!("{}.{REMINDER_QUEUE}", self.namespace)
    }

    async fn connect_sqlite(path: &Path) -> Result<SqlitePool, QueueError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| QueueError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        SqliteStorage::setup(&pool)
            .await
            .map_err(|e| QueueError::SqliteSetup(e.to_string()))?;
        Ok(pool)
    }

    /// `"sqlite"` or `"redis"`, for logs and the readiness report.
    pub fn kind(&self) -> &'static str {
        match self.storage {
            QueueStorage::Sqlite(_) => "sqlite",
            QueueStorage::Redis(_) => "redis",
        }
    }

    /// Succeeds when the storage answers a trivial request.
    pub async fn ping(&self) -> Result<(), QueueError> {
        match &self.storage {
            QueueStorage::Sqlite(pool) => {
                pool.acquire().await?;
                Ok(())
            }
            QueueStorage::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                Ok(())
            }
        }
    }

    /// The SQLite storage for reminder jobs.
    pub fn sqlite_reminders(&self, pool: &SqlitePool) -> SqliteStorage<ReminderDue> {
        self.sqlite_fetching(pool, FETCH_BATCH)
    }

    fn sqlite_fetching(&self, pool: &SqlitePool, fetch: usize) -> SqliteStorage<ReminderDue> {
        SqliteStorage::new(pool).with_config(
            apalis_sqlite::Config::default()
                .queue(self.reminder_queue())
                .batch_size(fetch)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS),
        )
    }

    /// The Redis storage for reminder jobs.
    pub fn redis_reminders(&self, conn: &ConnectionManager) -> RedisStorage<ReminderDue> {
        self.redis_fetching(conn, FETCH_BATCH)
    }

    fn redis_fetching(&self, conn: &ConnectionManager, fetch: usize) -> RedisStorage<ReminderDue> {
        RedisStorage::new(conn.clone()).with_config(
            apalis_redis::Config::default()
                .queue(self.reminder_queue())
                .batch_size(fetch)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                // A fetch already moves each job into this worker's in-flight set, which is what
                // recovery after a crash goes by; a lease on top of it only adds, per job, a
                // `LREM` over the whole queue (O(queue length): 100,000 reminders due at once
                // made it quadratic). A reminder job takes milliseconds, far under a heartbeat.
                .lock_tasks(false),
        )
    }

    /// The SQLite storage for a reminder worker running `concurrency` jobs at once: as
    /// [`Self::sqlite_reminders`], fetching [`fetch_batch`] jobs at a time, every 100 ms at most.
    pub fn sqlite_reminder_worker(
        &self,
        pool: &SqlitePool,
        concurrency: usize,
    ) -> PollWith<SqliteStorage<ReminderDue>, IntervalStrategy> {
        self.sqlite_fetching(pool, fetch_batch(concurrency))
            .poll_with_interval(SQLITE_POLL)
    }

    /// The Redis storage for a reminder worker running `concurrency` jobs at once: as
    /// [`Self::redis_reminders`], fetching [`fetch_batch`] jobs at a time, every 20 ms at most.
    pub fn redis_reminder_worker(
        &self,
        conn: &ConnectionManager,
        concurrency: usize,
    ) -> PollWith<RedisStorage<ReminderDue>, IntervalStrategy> {
        self.redis_fetching(conn, fetch_batch(concurrency))
            .poll_with_interval(REDIS_POLL)
    }

    /// Enqueues a reminder to run at `due` (at once when `due` has passed).
    pub async fn enqueue_reminder(
        &self,
        job: ReminderDue,
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        self.enqueue_reminders(vec![job], due).await
    }

    /// Enqueues reminders to run at `due` (at once when `due` has passed) in one write: one
    /// transaction on SQLite, one script call on Redis. Either all are enqueued or none.
    pub async fn enqueue_reminders(
        &self,
        jobs: Vec<ReminderDue>,
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let delay = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let tasks = futures::stream::iter(
            jobs.into_iter()
                .map(|job| TaskBuilder::new(job).run_after(delay).build()),
        );
        let pushed = match &self.storage {
            QueueStorage::Sqlite(pool) => self
                .sqlite_reminders(pool)
                .push_all(tasks)
                .await
                .map_err(|e| e.to_string()),
            QueueStorage::Redis(conn) => self
                .redis_reminders(conn)
                .push_all(tasks)
                .await
                .map_err(|e| e.to_string()),
        };
        pushed.map_err(QueueError::Push)
    }
}
