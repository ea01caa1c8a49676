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

/// The job on the reminder queue: reminders that came due together (up to
/// [`REMINDERS_PER_JOB`]), dispatched together by one worker. A job's reminders succeed, fail
/// and retry as one; dispatching is idempotent per reminder, so a retried job re-sends nothing
/// that went out. One job per reminder cost the queue a fetch, a decode, an acknowledgement
/// and a result record per reminder: at 100,000 reminders due in a minute that, not the
/// database, was what bounded a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemindersDue {
    pub reminders: Vec<ReminderDue>,
}

/// Reminders carried by one job at most: enough that the queue's per-job work is small beside
/// the dispatch, few enough that one job's dispatch (one transaction) stays well under a second.
pub const REMINDERS_PER_JOB: usize = 64;

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
const FETCH_BATCH: usize = 8;

/// Jobs a reminder worker fetches at once: twice what it runs at once (between 2 and 64), so
/// that the next jobs are at hand when one finishes and a poll interval never caps the rate
/// below what the worker can do. Jobs fetched and not yet run are recovered like running ones
/// if the worker dies (after the missed heartbeats).
pub fn fetch_batch(concurrency: usize) -> usize {
    concurrency.saturating_mul(2).clamp(2, 64)
}

/// Queue names are stable strings (`<namespace>.reminders_due`), not Rust type paths, so renaming
/// a type never strands jobs, and deployments sharing one Redis keep apart by namespace. (The
/// name changed with the payload, from one reminder per job to [`RemindersDue`].)
const REMINDER_QUEUE: &str = "reminders_due";

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
    pub fn sqlite_reminders(&self, pool: &SqlitePool) -> SqliteStorage<RemindersDue> {
        self.sqlite_fetching(pool, FETCH_BATCH)
    }

    fn sqlite_fetching(&self, pool: &SqlitePool, fetch: usize) -> SqliteStorage<RemindersDue> {
        SqliteStorage::new(pool).with_config(
            apalis_sqlite::Config::default()
                .queue(self.reminder_queue())
                .batch_size(fetch)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS),
        )
    }

    /// The Redis storage for reminder jobs.
    pub fn redis_reminders(&self, conn: &ConnectionManager) -> RedisStorage<RemindersDue> {
        self.redis_fetching(conn, FETCH_BATCH)
    }

    fn redis_fetching(&self, conn: &ConnectionManager, fetch: usize) -> RedisStorage<RemindersDue> {
        RedisStorage::new(conn.clone()).with_config(self.redis_config(fetch))
    }

    fn redis_config(&self, fetch: usize) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(self.reminder_queue())
            .batch_size(fetch)
            .heartbeat_interval(HEARTBEAT)
            .missed_heartbeats(MISSED_HEARTBEATS)
            // A fetch already moves each job into this worker's in-flight set, which is what
            // recovery after a crash goes by; a lease on top of it only adds, per job, a
            // `LREM` over the whole queue (O(queue length): 100,000 reminders due at once
            // made it quadratic). A reminder job takes milliseconds, far under a heartbeat.
            .lock_tasks(false)
            // Nobody subscribes to apalis's per-job pub/sub events.
            .emit_events(false)
    }

    /// The SQLite storage for a reminder worker running `concurrency` jobs at once: as
    /// [`Self::sqlite_reminders`], fetching [`fetch_batch`] jobs at a time, every 100 ms at most.
    pub fn sqlite_reminder_worker(
        &self,
        pool: &SqlitePool,
        concurrency: usize,
    ) -> PollWith<SqliteStorage<RemindersDue>, IntervalStrategy> {
        self.sqlite_fetching(pool, fetch_batch(concurrency))
            .poll_with_interval(SQLITE_POLL)
    }

    /// The Redis storage for a reminder worker running `concurrency` jobs at once: as
    /// [`Self::redis_reminders`], fetching [`fetch_batch`] jobs at a time, every 20 ms at most.
    pub fn redis_reminder_worker(
        &self,
        conn: &ConnectionManager,
        concurrency: usize,
    ) -> PollWith<RedisStorage<RemindersDue>, IntervalStrategy> {
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

    /// Enqueues reminders to run at `due` (at once when `due` has passed) in one write (one
    /// transaction on SQLite, one script call on Redis), as jobs of up to
    /// [`REMINDERS_PER_JOB`] reminders each. Either all are enqueued or none.
    pub async fn enqueue_reminders(
        &self,
        reminders: Vec<ReminderDue>,
        due: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        if reminders.is_empty() {
            return Ok(());
        }
        let delay = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let jobs: Vec<RemindersDue> = reminders
            .chunks(REMINDERS_PER_JOB)
            .map(|chunk| RemindersDue {
                reminders: chunk.to_vec(),
            })
            .collect();
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

    /// Reminder jobs waiting on the queue: due and not yet fetched, or waiting for a retry.
    /// (Jobs a worker has fetched are not counted: they run, or the queue gives them to
    /// another worker when that one stops beating.) The sweeper re-enqueues reminders it takes
    /// for lost only when this is zero: a long queue is a backlog, not a loss.
    pub async fn waiting_reminder_jobs(&self) -> Result<u64, QueueError> {
        match &self.storage {
            QueueStorage::Sqlite(pool) => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 \
                     AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))",
                )
                .bind(self.reminder_queue())
                .fetch_one(pool)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
            QueueStorage::Redis(conn) => {
                let config = self.redis_config(FETCH_BATCH);
                let mut conn = conn.clone();
                let (active, scheduled): (u64, u64) = redis::pipe()
                    .llen(config.active_jobs_list())
                    .zcard(config.scheduled_jobs_set())
                    .query_async(&mut conn)
                    .await?;
                Ok(active + scheduled)
            }
        }
    }

    /// Forgets reminder jobs that finished (done or given up) `age` ago or earlier, and
    /// returns how many. apalis keeps every finished job's payload and result until told
    /// otherwise: without this the queue's storage grows with every reminder ever sent. On
    /// Redis this takes rounds of at most 5,000 jobs, so Redis is never blocked
    /// for long.
    pub async fn forget_finished_reminder_jobs(&self, age: Duration) -> Result<u64, QueueError> {
        let cutoff = Utc::now().timestamp() - i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2);
        match &self.storage {
            QueueStorage::Sqlite(pool) => {
                let deleted = sqlx::query(
                    "DELETE FROM Jobs WHERE job_type = ?1 \
                     AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
                     AND done_at IS NOT NULL AND done_at <= ?2",
                )
                .bind(self.reminder_queue())
                .bind(cutoff)
                .execute(pool)
                .await?;
                Ok(deleted.rows_affected())
            }
            QueueStorage::Redis(conn) => {
                let config = self.redis_config(FETCH_BATCH);
                let script = redis::Script::new(FORGET_FINISHED_LUA);
                let mut conn = conn.clone();
                let mut total = 0;
                loop {
                    let forgotten: u64 = script
                        .key(config.job_data_hash())
                        .key(config.job_meta_hash())
                        .key(config.done_jobs_set())
                        .key(config.dead_jobs_set())
                        .arg(cutoff)
                        .arg(FORGET_PER_CALL)
                        .invoke_async(&mut conn)
                        .await?;
                    total += forgotten;
                    if forgotten < FORGET_PER_CALL as u64 {
                        return Ok(total);
                    }
                }
            }
        }
    }
}

/// Finished jobs forgotten per script call at most, so one call never blocks Redis for long.
const FORGET_PER_CALL: usize = 5_000;

/// apalis-redis keeps a finished job's id in the done (or dead) set and its payload and
/// metadata in hashes (`vacuum.lua` would drop the latter but reads the whole data hash and
/// leaves the sets). This walks the done and dead sets instead: a finished job older than the
/// cutoff loses its payload, result, metadata and set entry.
const FORGET_FINISHED_LUA: &str = r#"
local data, meta, cutoff, limit = KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])
local forgotten = 0
for _, set in ipairs({KEYS[3], KEYS[4]}) do
  local cursor = "0"
  repeat
    local page = redis.call("SSCAN", set, cursor, "COUNT", 500)
    cursor = page[1]
    for _, id in ipairs(page[2]) do
      local done_at = tonumber(redis.call("HGET", meta .. ":" .. id, "done_at"))
      if done_at == nil or done_at <= cutoff then
        redis.call("SREM", set, id)
        redis.call("HDEL", data, id)
        redis.call("HDEL", meta .. ":result", id)
        redis.call("DEL", meta .. ":" .. id)
        forgotten = forgotten + 1
      end
    end
  until cursor == "0" or forgotten >= limit
end
return forgotten
"#;
