//! # careloop-llm-redis
//!
//! The scale-out transport of the LLM service over Redis streams: [`RedisLlmClient`]
//! implements [`careloop_llm_api::LlmService`] for any gateway replica, and [`run_worker`]
//! serves the jobs with any local `LlmService` (in the binary: the mistral.rs engine). This
//! crate has no inference backend.
//!
//! ## Keys (all under the namespace `<ns>`)
//!
//! * `<ns>:llm:jobs`: the jobs stream. One entry per request, field `job` = JSON
//!   [`JobEnvelope`] (job id, the request with its *remaining* budget as timeout, the
//!   absolute deadline in unix ms and the reply key). Workers read it in the consumer group
//!   `<ns>:llm:workers`; an answered job is `XACK`ed and `XDEL`eted, so `XLEN` counts the
//!   jobs waiting or running (the client refuses new ones as `Overloaded` above a bound).
//! * `<ns>:llm:reply:<job_id>`: the reply stream of one job, fields `a` (the attempt id)
//!   and `e` (JSON [`WireEvent`]). Every append refreshes its TTL, so nothing leaks.
//! * `<ns>:llm:cancel:<job_id>`: set (with a TTL) by a client that cancelled or dropped
//!   its stream; the worker polls it and stops the generation.
//! * `<ns>:llm:worker:<name>`: a hash per live worker (`model_id`, `capacity`,
//!   `in_flight`, `heartbeat_ms`) with a TTL of a few heartbeats, and the sorted set
//!   `<ns>:llm:workers:live` (name → last heartbeat) to list them without `SCAN`.
//!
//! ## Leases, take-over and exactly-once answers
//!
//! A job stays in the group's pending list until its worker has written the final event
//! (`done` or `error`); only then is it acknowledged. A live worker renews its in-flight
//! jobs (re-`XCLAIM`s the ones it still owns every lease/3), so their idle time stays below
//! the lease. A job of a dead worker goes idle and, after the lease, another worker takes
//! it over with `XAUTOCLAIM`: it writes a `start` event with a new attempt id and
//! `restart = true`, and generates the answer again from scratch. The client follows only
//! the latest attempt: events of older attempts are ignored, and if it had already passed
//! tokens on it yields [`careloop_llm_api::GenerationEvent::Reset`] (discard the text so
//! far; `Done.text` is authoritative). A worker that finds a final event already in the
//! reply stream (a redelivered, already answered job) acknowledges the job without
//! answering it again. A job past its deadline is not started; its reply gets `TimedOut`.

mod client;
mod worker;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use careloop_llm_api::{Completion, GenerationRequest, LlmError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

pub use client::{ClientOptions, RedisLlmClient, WorkerInfo};
pub use worker::{WorkerOptions, run_worker};

/// Where the pool lives: the Redis URL and the namespace that keeps deployments apart.
#[derive(Clone)]
pub struct PoolConfig {
    /// `redis://…` (may hold a password: never logged).
    pub url: String,
    /// Prefix of every key (the `queue.namespace` setting).
    pub namespace: String,
}

impl std::fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolConfig")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl PoolConfig {
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: namespace.into(),
        }
    }

    pub(crate) fn keys(&self) -> Keys {
        Keys {
            ns: self.namespace.clone(),
        }
    }
}

/// Failures of the Redis transport itself (not of a generation).
#[derive(Debug, thiserror::Error)]
pub enum RedisLlmError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid LLM pool settings: {0}")]
    InvalidConfig(String),
}

/// Key names of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn jobs(&self) -> String {
        format!("{}:llm:jobs", self.ns)
    }
    pub(crate) fn group(&self) -> String {
        format!("{}:llm:workers", self.ns)
    }
    pub(crate) fn reply(&self, job_id: &str) -> String {
        format!("{}:llm:reply:{job_id}", self.ns)
    }
    pub(crate) fn cancel(&self, job_id: &str) -> String {
        format!("{}:llm:cancel:{job_id}", self.ns)
    }
    pub(crate) fn worker(&self, name: &str) -> String {
        format!("{}:llm:worker:{name}", self.ns)
    }
    pub(crate) fn live_workers(&self) -> String {
        format!("{}:llm:workers:live", self.ns)
    }
}

/// One job as it travels on the jobs stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub job_id: String,
    /// The request; its `timeout` is the budget that remained when the job was sent.
    pub request: GenerationRequest,
    /// Absolute deadline, unix milliseconds.
    pub deadline_ms: u64,
    /// The reply stream's key.
    pub reply_key: String,
}

/// One event on a reply stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "d", rename_all = "snake_case")]
pub enum WireEvent {
    /// A worker started (or, with `restart`, took over and restarted) the job.
    Start {
        worker: String,
        restart: bool,
    },
    Token(String),
    Done(Completion),
    Error(LlmError),
}

impl WireEvent {
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Error(_))
    }
}

/// How long a reply stream or cancel marker outlives its job's deadline.
pub(crate) const KEY_GRACE: Duration = Duration::from_secs(60);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// TTL in ms for a key that must live until `deadline_ms` plus the grace.
pub(crate) fn ttl_until(deadline_ms: u64) -> u64 {
    deadline_ms
        .saturating_sub(now_ms())
        .saturating_add(millis(KEY_GRACE))
}

/// A multiplexed connection for commands. redis-rs gives up on a reply after 500 ms by default;
/// a process whose cores are busy generating tokens can take longer to read one, which is not a
/// failure of Redis, so commands wait up to 5 s (blocking reads use their own connections).
pub(crate) async fn command_connection(
    client: redis::Client,
) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    ConnectionManager::new_with_config(client, config).await
}
