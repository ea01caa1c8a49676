//! [`RedisLlmClient`]: an [`LlmService`] whose generations run on remote workers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use careloop_llm_api::{
    CancellationToken, GenerationEvent, GenerationRequest, LlmError, LlmService, TokenStream,
};
use futures::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{JobEnvelope, Keys, PoolConfig, RedisLlmError, WireEvent, millis, now_ms, ttl_until};

/// Tuning of a [`RedisLlmClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Jobs waiting or running in the pool above which `generate` answers `Overloaded`.
    pub max_pending: usize,
    /// How often the cached worker list (for `is_ready`/`model_id`) is refreshed.
    pub refresh_interval: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_pending: 256,
            refresh_interval: Duration::from_secs(1),
        }
    }
}

/// A live worker as it advertises itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    pub name: String,
    pub model_id: String,
    pub capacity: u32,
    pub in_flight: u32,
    pub heartbeat_ms: u64,
}

/// Sends generation jobs to the worker pool and streams their answers back.
/// Cheap to clone.
#[derive(Clone)]
pub struct RedisLlmClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    options: ClientOptions,
    workers: RwLock<Vec<WorkerInfo>>,
}

impl std::fmt::Debug for RedisLlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLlmClient")
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

/// Block time of one `XREAD` on a reply stream.
const READ_BLOCK: Duration = Duration::from_millis(1000);

impl RedisLlmClient {
    /// Connects, reads the worker list once and keeps it fresh in the background
    /// (until the last clone is dropped).
    pub async fn connect(
        config: &PoolConfig,
        options: ClientOptions,
    ) -> Result<Self, RedisLlmError> {
        if options.max_pending == 0 {
            return Err(RedisLlmError::InvalidConfig(
                "max_pending must be at least 1".into(),
            ));
        }
        let client = redis::Client::open(config.url.as_str())?;
        let conn = crate::command_connection(client.clone()).await?;
        let this = Self {
            inner: Arc::new(ClientInner {
                client,
                conn,
                keys: config.keys(),
                options,
                workers: RwLock::new(Vec::new()),
            }),
        };
        this.refresh().await?;
        let weak = Arc::downgrade(&this.inner);
        tokio::spawn(refresh_loop(weak));
        Ok(this)
    }

    /// The workers advertised now (heartbeat within their TTL), fresh from Redis.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, RedisLlmError> {
        list_workers(&self.inner).await
    }

    async fn refresh(&self) -> Result<(), RedisLlmError> {
        let workers = self.workers().await?;
        if let Ok(mut cached) = self.inner.workers.write() {
            *cached = workers;
        }
        Ok(())
    }

    fn cached_workers(&self) -> Vec<WorkerInfo> {
        self.inner
            .workers
            .read()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    async fn start(&self, req: GenerationRequest) -> Result<TokenStream, LlmError> {
        req.validate()?;
        let accepted = Instant::now();
        let deadline = req.deadline_from(accepted.into_std());
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let pending: usize = conn
            .xlen(inner.keys.jobs())
            .await
            .map_err(|e| transport("count jobs", &e))?;
        if pending >= inner.options.max_pending {
            tracing::warn!(pending, "LLM pool overloaded");
            return Err(LlmError::Overloaded);
        }
        let workers = list_workers(inner)
            .await
            .map_err(|e| LlmError::ModelFailure(format!("cannot list LLM workers: {e}")))?;
        if workers.is_empty() {
            return Err(LlmError::NotReady);
        }

        let job_id = uuid::Uuid::now_v7().to_string();
        let deadline_ms = now_ms().saturating_add(millis(req.timeout));
        let cancel = req.cancel.clone();
        let envelope = JobEnvelope {
            job_id: job_id.clone(),
            request: req,
            deadline_ms,
            reply_key: inner.keys.reply(&job_id),
        };
        let payload = serde_json::to_string(&envelope)
            .map_err(|e| LlmError::ModelFailure(format!("cannot encode the job: {e}")))?;
        // A dedicated connection: blocking reads would stall the shared one.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
        let reader = inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| transport("connect", &e))?;
        let _: String = conn
            .xadd(inner.keys.jobs(), "*", &[("job", payload)])
            .await
            .map_err(|e| transport("send job", &e))?;
        tracing::debug!(job_id = %job_id, "LLM job sent");

        let (started_tx, started_rx) = oneshot::channel();
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let follower = Follower {
            conn: inner.conn.clone(),
            reader,
            keys: inner.keys.clone(),
            job_id,
            deadline_ms,
            deadline: Instant::from_std(deadline),
            cancel,
            started: Some(started_tx),
            events: events_tx,
        };
        tokio::spawn(follower.run());
        match started_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(LlmError::ModelFailure("the reply reader stopped".into())),
        }
        let stream = futures::stream::poll_fn(move |cx| events_rx.poll_recv(cx));
        Ok(Box::pin(stream))
    }
}

fn transport(what: &str, e: &redis::RedisError) -> LlmError {
    tracing::warn!(error = %e, what, "LLM pool transport failure");
    LlmError::ModelFailure(format!("LLM pool transport: cannot {what}"))
}

async fn refresh_loop(weak: Weak<ClientInner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let interval = inner.options.refresh_interval;
        match list_workers(&inner).await {
            Ok(workers) => {
                if let Ok(mut cached) = inner.workers.write() {
                    *cached = workers;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot refresh the LLM worker list"),
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

async fn list_workers(inner: &ClientInner) -> Result<Vec<WorkerInfo>, RedisLlmError> {
    let mut conn = inner.conn.clone();
    let names: Vec<String> = conn.zrange(inner.keys.live_workers(), 0, -1).await?;
    let mut workers = Vec::new();
    for name in names {
        let fields: HashMap<String, String> = conn.hgetall(inner.keys.worker(&name)).await?;
        // The hash expires with its TTL: a missing one is a dead worker.
        let (Some(model_id), Some(heartbeat)) =
            (fields.get("model_id"), fields.get("heartbeat_ms"))
        else {
            let _: redis::RedisResult<()> = conn.zrem(inner.keys.live_workers(), &name).await;
            continue;
        };
        let number = |key: &str| fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        workers.push(WorkerInfo {
            name,
            model_id: model_id.clone(),
            capacity: number("capacity"),
            in_flight: number("in_flight"),
            heartbeat_ms: heartbeat.parse().unwrap_or(0),
        });
    }
    Ok(workers)
}

impl LlmService for RedisLlmClient {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        Box::pin(self.start(req))
    }

    fn model_id(&self) -> String {
        self.cached_workers()
            .into_iter()
            .next()
            .map(|w| w.model_id)
            .unwrap_or_default()
    }

    fn is_ready(&self) -> bool {
        !self.cached_workers().is_empty()
    }
}

/// Follows one job's reply stream and forwards its events.
struct Follower {
    conn: ConnectionManager,
    reader: MultiplexedConnection,
    keys: Keys,
    job_id: String,
    deadline_ms: u64,
    deadline: Instant,
    cancel: CancellationToken,
    /// Until the job starts, outcomes go here (`generate` is still waiting).
    started: Option<oneshot::Sender<Result<(), LlmError>>>,
    events: mpsc::Sender<Result<GenerationEvent, LlmError>>,
}

enum Step {
    Cancelled,
    CallerGone,
    Deadline,
    Read(redis::RedisResult<StreamReadReply>),
}

impl Follower {
    async fn run(mut self) {
        let reply_key = self.keys.reply(&self.job_id);
        let mut last_id = "0".to_owned();
        let mut attempt: Option<String> = None;
        let mut tokens_passed = false;
        loop {
            let step = {
                let options = StreamReadOptions::default()
                    .block(usize::try_from(READ_BLOCK.as_millis()).unwrap_or(1000))
                    .count(256);
                let keys = [reply_key.as_str()];
                let ids = [last_id.as_str()];
                let read = self.reader.xread_options(&keys, &ids, &options);
                let gone = async {
                    match &mut self.started {
                        Some(tx) => tx.closed().await,
                        None => self.events.closed().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => Step::Cancelled,
                    () = gone => Step::CallerGone,
                    () = tokio::time::sleep_until(self.deadline) => Step::Deadline,
                    reply = read => Step::Read(reply),
                }
            };
            match step {
                Step::Cancelled => {
                    self.publish_cancel().await;
                    self.finish(Err(LlmError::Cancelled)).await;
                    return;
                }
                Step::CallerGone => {
                    tracing::debug!(job_id = %self.job_id, "LLM stream dropped: cancelling the job");
                    self.publish_cancel().await;
                    return;
                }
                Step::Deadline => {
                    self.publish_cancel().await;
                    self.finish(Err(LlmError::TimedOut)).await;
                    return;
                }
                Step::Read(Err(e)) => {
                    let err = transport("read the reply", &e);
                    self.publish_cancel().await;
                    self.finish(Err(err)).await;
                    return;
                }
                Step::Read(Ok(reply)) => {
                    for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                        last_id.clone_from(&entry.id);
                        let Some(tag) = entry.get::<String>("a") else {
                            continue;
                        };
                        let event = entry
                            .get::<String>("e")
                            .and_then(|json| serde_json::from_str::<WireEvent>(&json).ok());
                        let Some(event) = event else {
                            tracing::warn!(job_id = %self.job_id, "unreadable LLM reply event");
                            continue;
                        };
                        if let WireEvent::Start { restart, .. } = &event {
                            if *restart {
                                tracing::info!(job_id = %self.job_id, "LLM job restarted by another worker");
                            }
                            attempt = Some(tag);
                            if let Some(tx) = self.started.take() {
                                let _ = tx.send(Ok(()));
                            } else if tokens_passed {
                                tokens_passed = false;
                                if self.events.send(Ok(GenerationEvent::Reset)).await.is_err() {
                                    self.publish_cancel().await;
                                    return;
                                }
                            }
                            continue;
                        }
                        // Only the latest attempt counts (a stalled old worker may still
                        // write). A job refused before it started has a final event only.
                        if attempt.as_ref().is_some_and(|a| *a != tag) {
                            continue;
                        }
                        let item = match event {
                            WireEvent::Token(text) => {
                                tokens_passed = true;
                                Ok(GenerationEvent::Token(text))
                            }
                            WireEvent::Done(completion) => {
                                self.finish(Ok(GenerationEvent::Done(completion))).await;
                                return;
                            }
                            WireEvent::Error(e) => {
                                self.finish(Err(e)).await;
                                return;
                            }
                            WireEvent::Start { .. } => continue,
                        };
                        if self.events.send(item).await.is_err() {
                            self.publish_cancel().await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Delivers the terminal item: to `generate` if the job never started, else to the stream.
    async fn finish(&mut self, item: Result<GenerationEvent, LlmError>) {
        match self.started.take() {
            Some(tx) => {
                let _ = tx.send(item.and_then(|_| {
                    Err(LlmError::ModelFailure(
                        "the job finished without starting".into(),
                    ))
                }));
            }
            None => {
                let _ = self.events.send(item).await;
            }
        }
    }

    async fn publish_cancel(&mut self) {
        let ttl = ttl_until(self.deadline_ms);
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.keys.cancel(&self.job_id))
            .arg(1)
            .arg("PX")
            .arg(ttl)
            .query_async(&mut self.conn)
            .await;
        if let Err(e) = result {
            tracing::warn!(job_id = %self.job_id, error = %e, "cannot publish an LLM cancel marker");
        }
    }
}
