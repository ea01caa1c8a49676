//! [`run_worker`]: serves the pool's jobs with a local [`LlmService`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careloop_llm_api::{CancellationToken, GenerationEvent, LlmError, LlmService};
use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadOptions,
    StreamReadReply,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::{JobEnvelope, Keys, PoolConfig, RedisLlmError, WireEvent, millis, now_ms, ttl_until};

/// Identity and tuning of one worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Unique in the pool (the consumer name in the group and the advertised name).
    pub name: String,
    /// Jobs run at once (keep it within the engine's concurrency plus its queue).
    pub capacity: usize,
    /// A job not renewed for this long is taken over by another worker.
    pub lease: Duration,
    /// How often the worker advertises itself; its advert lives three heartbeats.
    pub heartbeat: Duration,
    /// On shutdown, how long running jobs may finish before they are left to the lease.
    pub shutdown_grace: Duration,
    /// How often a running job checks for its cancel marker.
    pub cancel_poll: Duration,
}

impl WorkerOptions {
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        Self {
            name: name.into(),
            capacity,
            lease: Self::DEFAULT_LEASE,
            heartbeat: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            cancel_poll: Duration::from_millis(250),
        }
    }

    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

struct Worker {
    conn: ConnectionManager,
    keys: Keys,
    options: WorkerOptions,
    engine: Arc<dyn LlmService>,
    /// Jobs this worker runs (stream entry id → "lost ownership" token).
    in_flight: Mutex<HashMap<String, CancellationToken>>,
}

/// Block time of one `XREADGROUP`.
const READ_BLOCK: Duration = Duration::from_millis(1000);

/// Joins the pool and serves jobs with `engine` until `shutdown` fires.
///
/// Returns an error only if Redis cannot be reached at start; later transport failures
/// are logged and retried.
pub async fn run_worker(
    engine: Arc<dyn LlmService>,
    config: &PoolConfig,
    options: WorkerOptions,
    shutdown: CancellationToken,
) -> Result<(), RedisLlmError> {
    if options.capacity == 0
        || options.name.is_empty()
        || options.lease < Duration::from_millis(300)
    {
        return Err(RedisLlmError::InvalidConfig(
            "a worker needs a name, a capacity of at least 1 and a lease of at least 300 ms".into(),
        ));
    }
    let client = redis::Client::open(config.url.as_str())?;
    let mut conn = crate::command_connection(client.clone()).await?;
    let mut reader = blocking_connection(&client).await?;
    let keys = config.keys();
    let created: redis::RedisResult<()> = conn
        .xgroup_create_mkstream(keys.jobs(), keys.group(), "0")
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e.into());
    }

    let worker = Arc::new(Worker {
        conn,
        keys,
        options,
        engine,
        in_flight: Mutex::new(HashMap::new()),
    });
    let name = worker.options.name.clone();
    tracing::info!(worker = %name, capacity = worker.options.capacity, "LLM worker joined the pool");
    let background = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(worker.clone(), background.clone()));
    let keepalive = tokio::spawn(keepalive_loop(worker.clone(), background.clone()));

    let slots = Arc::new(Semaphore::new(worker.options.capacity));
    let mut jobs = JoinSet::new();
    loop {
        while jobs.try_join_next().is_some() {}
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        // Jobs of dead workers first: they are the oldest.
        match worker.take_over(permits.len()).await {
            Ok(entries) => {
                for entry in entries {
                    if let Some(permit) = permits.pop() {
                        jobs.spawn(worker.clone().process(entry, true, permit));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "cannot take over LLM jobs");
            }
        }
        if permits.is_empty() {
            continue;
        }
        let options = StreamReadOptions::default()
            .group(worker.keys.group(), &name)
            .count(permits.len())
            .block(usize::try_from(READ_BLOCK.as_millis()).unwrap_or(1000));
        let stream_keys = [worker.keys.jobs()];
        let read: redis::RedisResult<StreamReadReply> = tokio::select! {
            () = shutdown.cancelled() => break,
            read = reader.xread_options(&stream_keys, &[">"], &options) => read,
        };
        match read {
            Ok(reply) => {
                for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                    if let Some(permit) = permits.pop() {
                        jobs.spawn(worker.clone().process(entry, false, permit));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "cannot read LLM jobs; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(fresh) = blocking_connection(&client).await {
                    reader = fresh;
                }
            }
        }
    }

    tracing::info!(worker = %name, running = jobs.len(), "LLM worker stopping");
    let grace = worker.options.shutdown_grace;
    if tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(worker = %name, left = jobs.len(), "LLM jobs left to the lease of another worker");
        jobs.abort_all();
    }
    background.cancel();
    let _ = heartbeat.await;
    let _ = keepalive.await;
    let mut conn = worker.conn.clone();
    let _: redis::RedisResult<()> = redis::pipe()
        .del(worker.keys.worker(&name))
        .zrem(worker.keys.live_workers(), &name)
        .query_async(&mut conn)
        .await;
    tracing::info!(worker = %name, "LLM worker left the pool");
    Ok(())
}

async fn blocking_connection(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

async fn heartbeat_loop(worker: Arc<Worker>, stop: CancellationToken) {
    let name = &worker.options.name;
    let ttl = millis(worker.options.heartbeat).saturating_mul(3).max(1000);
    loop {
        let mut conn = worker.conn.clone();
        let key = worker.keys.worker(name);
        let result: redis::RedisResult<()> = if worker.engine.is_ready() {
            let in_flight = worker.in_flight.lock().map(|m| m.len()).unwrap_or(0);
            let now = now_ms();
            redis::pipe()
                .hset_multiple(
                    &key,
                    &[
                        ("model_id", worker.engine.model_id()),
                        ("capacity", worker.options.capacity.to_string()),
                        ("in_flight", in_flight.to_string()),
                        ("heartbeat_ms", now.to_string()),
                    ],
                )
                .pexpire(&key, i64::try_from(ttl).unwrap_or(i64::MAX))
                .zadd(worker.keys.live_workers(), name, now)
                .query_async(&mut conn)
                .await
        } else {
            redis::pipe()
                .del(&key)
                .zrem(worker.keys.live_workers(), name)
                .query_async(&mut conn)
                .await
        };
        if let Err(e) = result {
            tracing::warn!(worker = %name, error = %e, "LLM worker heartbeat failed");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(worker.options.heartbeat) => {}
        }
    }
}

/// Renews the jobs this worker still owns, and stops the ones it lost.
async fn keepalive_loop(worker: Arc<Worker>, stop: CancellationToken) {
    let period = worker.options.lease / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        if let Err(e) = worker.renew().await {
            tracing::warn!(worker = %worker.options.name, error = %e, "cannot renew LLM job leases");
        }
    }
}

/// What ended a job's run.
enum Outcome {
    /// A final event to write; then the job is acknowledged.
    Final(WireEvent),
    /// Another worker owns the job now: write nothing, acknowledge nothing.
    Lost,
}

impl Worker {
    fn lease_ms(&self) -> u64 {
        millis(self.options.lease)
    }

    async fn take_over(&self, count: usize) -> redis::RedisResult<Vec<StreamId>> {
        let mut conn = self.conn.clone();
        let reply: StreamAutoClaimReply = conn
            .xautoclaim_options(
                self.keys.jobs(),
                self.keys.group(),
                &self.options.name,
                self.lease_ms(),
                "0-0",
                StreamAutoClaimOptions::default().count(count),
            )
            .await?;
        let running = self.in_flight.lock().map(|m| m.clone()).unwrap_or_default();
        Ok(reply
            .claimed
            .into_iter()
            .filter(|e| !running.contains_key(&e.id))
            .collect())
    }

    async fn renew(&self) -> redis::RedisResult<()> {
        let running = self.in_flight.lock().map(|m| m.clone()).unwrap_or_default();
        if running.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(self.keys.jobs())
            .arg(self.keys.group())
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(&self.options.name)
            .query_async(&mut conn)
            .await?;
        let owned: Vec<String> = pending.into_iter().map(|(id, ..)| id).collect();
        for (id, lost) in &running {
            if !owned.contains(id) {
                tracing::warn!(worker = %self.options.name, entry = %id, "LLM job taken over by another worker; stopping it here");
                lost.cancel();
            }
        }
        let mine: Vec<&String> = running.keys().filter(|id| owned.contains(id)).collect();
        if mine.is_empty() {
            return Ok(());
        }
        // Renew only jobs idle for a while, so a job that another worker has just taken
        // over (idle ≈ 0) cannot be taken back.
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(self.keys.jobs())
            .arg(self.keys.group())
            .arg(&self.options.name)
            .arg(self.lease_ms() / 6)
            .arg(&mine)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn process(
        self: Arc<Self>,
        entry: StreamId,
        restart: bool,
        permit: OwnedSemaphorePermit,
    ) {
        let entry_id = entry.id.clone();
        let lost = CancellationToken::new();
        if let Ok(mut map) = self.in_flight.lock() {
            map.insert(entry_id.clone(), lost.clone());
        }
        let started = std::time::Instant::now();
        let result = self.run_job(&entry, restart, &lost).await;
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(&entry_id);
        }
        drop(permit);
        let worker = &self.options.name;
        let ms = started.elapsed().as_millis();
        match result {
            Ok(job_id) => {
                tracing::info!(worker = %worker, job_id = %job_id, restart, ms, "LLM job finished")
            }
            Err(e) => {
                // Not acknowledged: the job goes idle and another worker (or this one)
                // takes it over after the lease.
                tracing::warn!(worker = %worker, entry = %entry_id, error = %e, ms, "LLM job left unfinished");
            }
        }
    }

    /// Runs one job; `Ok` once it is acknowledged or given up to another worker.
    async fn run_job(
        &self,
        entry: &StreamId,
        restart: bool,
        lost: &CancellationToken,
    ) -> Result<String, JobError> {
        let Some(envelope) = entry
            .get::<String>("job")
            .and_then(|json| serde_json::from_str::<JobEnvelope>(&json).ok())
        else {
            tracing::warn!(entry = %entry.id, "unreadable LLM job dropped");
            self.ack(&entry.id).await?;
            return Ok(String::new());
        };
        let job_id = envelope.job_id.clone();
        let reply_key = self.keys.reply(&job_id);
        let mut conn = self.conn.clone();
        let replies: StreamRangeReply = conn.xrange_all(&reply_key).await?;
        let answered = replies.ids.iter().any(|e| {
            e.get::<String>("e")
                .and_then(|json| serde_json::from_str::<WireEvent>(&json).ok())
                .is_some_and(|ev| ev.is_final())
        });
        if answered {
            tracing::info!(job_id = %job_id, "LLM job already answered; acknowledging it again");
            self.ack(&entry.id).await?;
            return Ok(job_id);
        }
        let attempt = uuid::Uuid::new_v4().to_string();
        let deadline_ms = envelope.deadline_ms;
        let remaining = deadline_ms.saturating_sub(now_ms());
        let cancel_key = self.keys.cancel(&job_id);
        let outcome = if remaining == 0 {
            Outcome::Final(WireEvent::Error(LlmError::TimedOut))
        } else if conn.exists(&cancel_key).await? {
            Outcome::Final(WireEvent::Error(LlmError::Cancelled))
        } else {
            self.append(
                &reply_key,
                &attempt,
                deadline_ms,
                &WireEvent::Start {
                    worker: self.options.name.clone(),
                    restart,
                },
            )
            .await?;
            let mut request = envelope.request;
            request.timeout = Duration::from_millis(remaining);
            let generation = CancellationToken::new();
            request.cancel = generation.clone();
            let work = async {
                let mut stream = match self.engine.generate(request).await {
                    Ok(stream) => stream,
                    Err(e) => return Ok::<_, JobError>(WireEvent::Error(e)),
                };
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(GenerationEvent::Token(text)) => {
                            self.append(&reply_key, &attempt, deadline_ms, &WireEvent::Token(text))
                                .await?;
                        }
                        Ok(GenerationEvent::Done(completion)) => {
                            return Ok(WireEvent::Done(completion));
                        }
                        // A local engine does not restart; nothing to relay.
                        Ok(GenerationEvent::Reset) => {}
                        Err(e) => return Ok(WireEvent::Error(e)),
                    }
                }
                Ok(WireEvent::Error(LlmError::ModelFailure(
                    "the token stream ended without a completion".into(),
                )))
            };
            let cancel_poll = async {
                let mut conn = self.conn.clone();
                loop {
                    tokio::time::sleep(self.options.cancel_poll).await;
                    if let Ok(true) = conn.exists::<_, bool>(&cancel_key).await {
                        return;
                    }
                }
            };
            let outcome = tokio::select! {
                biased;
                () = lost.cancelled() => Outcome::Lost,
                () = cancel_poll => Outcome::Final(WireEvent::Error(LlmError::Cancelled)),
                result = work => Outcome::Final(result?),
            };
            generation.cancel();
            outcome
        };
        match outcome {
            Outcome::Lost => Ok(job_id),
            Outcome::Final(event) => {
                self.append(&reply_key, &attempt, deadline_ms, &event)
                    .await?;
                self.ack(&entry.id).await?;
                Ok(job_id)
            }
        }
    }

    async fn append(
        &self,
        reply_key: &str,
        attempt: &str,
        deadline_ms: u64,
        event: &WireEvent,
    ) -> Result<(), JobError> {
        let json = serde_json::to_string(event).map_err(|e| JobError::Encode(e.to_string()))?;
        let ttl = i64::try_from(ttl_until(deadline_ms)).unwrap_or(i64::MAX);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .xadd(reply_key, "*", &[("a", attempt), ("e", json.as_str())])
            .ignore()
            .pexpire(reply_key, ttl)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ack(&self, entry_id: &str) -> Result<(), JobError> {
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .xack(self.keys.jobs(), self.keys.group(), &[entry_id])
            .ignore()
            .xdel(self.keys.jobs(), &[entry_id])
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot encode an event: {0}")]
    Encode(String),
}
