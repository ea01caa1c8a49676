#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Redis worker pool against a real Redis (127.0.0.1:6379) with a scripted engine.
//! Every test uses its own namespace, so tests run in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use careloop_llm_api::testing::ScriptedLlm;
use careloop_llm_api::{
    CancellationToken, ChatMessage, GenerationEvent, GenerationRequest, LlmError, LlmService,
    TokenStream,
};
use careloop_llm_redis::{
    ClientOptions, JobEnvelope, PoolConfig, RedisLlmClient, WireEvent, WorkerOptions, run_worker,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use redis::AsyncCommands;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};

const URL: &str = "redis://127.0.0.1:6379/";

fn pool() -> PoolConfig {
    PoolConfig::new(URL, format!("t-{}", uuid::Uuid::new_v4().simple()))
}

async fn conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn request() -> GenerationRequest {
    GenerationRequest::new(vec![ChatMessage::user("When do I take my metformin?")])
        .with_max_tokens(32)
        .with_timeout(Duration::from_secs(10))
}

/// A scripted engine that waits `delay` before every item.
struct SlowLlm {
    inner: ScriptedLlm,
    delay: Duration,
}

impl LlmService for SlowLlm {
    fn generate(
        &self,
        req: GenerationRequest,
    ) -> BoxFuture<'_, Result<TokenStream, careloop_llm_api::LlmError>> {
        let delay = self.delay;
        Box::pin(async move {
            let stream = self.inner.generate(req).await?;
            let slow = stream.then(move |item| async move {
                tokio::time::sleep(delay).await;
                item
            });
            Ok(Box::pin(slow) as TokenStream)
        })
    }
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
    fn is_ready(&self) -> bool {
        true
    }
}

fn scripted() -> Arc<dyn LlmService> {
    Arc::new(ScriptedLlm::new("scripted", ["With", " food", "."]))
}

fn slow(delay_ms: u64, tokens: usize) -> Arc<dyn LlmService> {
    Arc::new(SlowLlm {
        inner: ScriptedLlm::new("slow", vec!["x"; tokens]),
        delay: Duration::from_millis(delay_ms),
    })
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn start_worker(engine: Arc<dyn LlmService>, pool: &PoolConfig, options: WorkerOptions) -> Running {
    let stop = CancellationToken::new();
    let pool = pool.clone();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        run_worker(engine, &pool, options, token).await.unwrap();
    });
    Running { stop, task }
}

async fn ready_client(pool: &PoolConfig) -> RedisLlmClient {
    let client = RedisLlmClient::connect(pool, ClientOptions::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.workers().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no worker advertised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
}

async fn drain(mut stream: TokenStream) -> Vec<Result<GenerationEvent, LlmError>> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
    }
    items
}

async fn reply_events(pool: &PoolConfig, job_id: &str) -> Vec<WireEvent> {
    let key = format!("{}:llm:reply:{job_id}", pool.namespace);
    let reply: StreamRangeReply = conn().await.xrange_all(key).await.unwrap();
    reply
        .ids
        .iter()
        .map(|e| serde_json::from_str(&e.get::<String>("e").unwrap()).unwrap())
        .collect()
}

/// Writes a job envelope straight to the jobs stream (as a client or a redelivery would) and
/// waits until a worker has taken and finished it.
async fn push_raw_job(pool: &PoolConfig, envelope: &impl serde::Serialize) {
    let _: String = conn()
        .await
        .xadd(
            format!("{}:llm:jobs", pool.namespace),
            "*",
            &[("job", serde_json::to_string(envelope).unwrap())],
        )
        .await
        .unwrap();
    wait_jobs_drained(pool).await;
}

async fn wait_jobs_drained(pool: &PoolConfig) {
    let key = format!("{}:llm:jobs", pool.namespace);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let len: usize = conn().await.xlen(&key).await.unwrap();
        if len == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{len} jobs left in the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_streams_tokens_and_completes() {
    let pool = pool();
    let worker = start_worker(scripted(), &pool, WorkerOptions::new("w1", 2));
    let client = ready_client(&pool).await;
    assert!(client.is_ready() || !client.workers().await.unwrap().is_empty());
    let workers = client.workers().await.unwrap();
    assert_eq!(workers[0].name, "w1");
    assert_eq!(workers[0].model_id, "scripted");
    assert_eq!(workers[0].capacity, 2);

    let items = drain(client.generate(request()).await.unwrap()).await;
    let tokens: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(GenerationEvent::Token(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let Some(Ok(GenerationEvent::Done(done))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(tokens, "With food.");
    assert_eq!(done.text, "With food.");
    assert_eq!(done.model_id, "scripted");
    assert_eq!(client.complete(request()).await.unwrap().text, "With food.");
    wait_jobs_drained(&pool).await;
    worker.stop().await;
    // A stopped worker withdraws its advert.
    assert!(client.workers().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_deadline_times_out_and_late_jobs_are_not_started() {
    let pool = pool();
    let worker = start_worker(slow(300, 50), &pool, WorkerOptions::new("w1", 1));
    let client = ready_client(&pool).await;
    let started = Instant::now();
    let items = drain(
        client
            .generate(request().with_timeout(Duration::from_millis(1000)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items.last(), Some(&Err(LlmError::TimedOut)), "{items:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    // A job whose deadline passed while it waited is answered TimedOut without starting.
    let job_id = "late-job".to_owned();
    let envelope = JobEnvelope {
        job_id: job_id.clone(),
        request: request(),
        deadline_ms: 1,
        reply_key: format!("{}:llm:reply:{job_id}", pool.namespace),
    };
    push_raw_job(&pool, &envelope).await;
    assert_eq!(
        reply_events(&pool, &job_id).await,
        vec![WireEvent::Error(LlmError::TimedOut)]
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_long_queue_is_overloaded_and_no_worker_is_not_ready() {
    let pool = pool();
    let client = RedisLlmClient::connect(
        &pool,
        ClientOptions {
            max_pending: 2,
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(!client.is_ready());
    assert_eq!(
        client.generate(request()).await.err(),
        Some(LlmError::NotReady)
    );
    let mut c = conn().await;
    for _ in 0..2 {
        let _: String = c
            .xadd(
                format!("{}:llm:jobs", pool.namespace),
                "*",
                &[("job", "{}")],
            )
            .await
            .unwrap();
    }
    assert_eq!(
        client.generate(request()).await.err(),
        Some(LlmError::Overloaded)
    );
    let _: () = c.del(format!("{}:llm:jobs", pool.namespace)).await.unwrap();
}

#[tokio::test]
async fn cancelling_stops_the_worker() {
    let pool = pool();
    let worker = start_worker(slow(100, 200), &pool, WorkerOptions::new("w1", 1));
    let client = ready_client(&pool).await;
    let cancel = CancellationToken::new();
    let mut stream = client
        .generate(request().with_max_tokens(200).with_cancel(cancel.clone()))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(GenerationEvent::Token(_)))
    ));
    cancel.cancel();
    let mut rest = Vec::new();
    while let Some(item) = stream.next().await {
        rest.push(item);
    }
    assert_eq!(rest.last(), Some(&Err(LlmError::Cancelled)), "{rest:?}");
    // The worker notices the marker, writes the final event and acknowledges the job.
    wait_jobs_drained(&pool).await;
    // Its slot is free again: a new job is answered.
    let second = drain(client.generate(request().with_max_tokens(2)).await.unwrap()).await;
    assert!(
        matches!(second.last(), Some(Ok(GenerationEvent::Done(_)))),
        "{second:?}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_dead_workers_job_is_taken_over_and_answered_once() {
    let pool = pool();
    let ns = pool.namespace.clone();
    let jobs = format!("{ns}:llm:jobs");
    let group = format!("{ns}:llm:workers");
    let mut c = conn().await;
    let _: () = c.xgroup_create_mkstream(&jobs, &group, "0").await.unwrap();
    // The dead worker is still advertised (its heartbeat has not expired yet).
    let _: () = redis::pipe()
        .hset_multiple(
            format!("{ns}:llm:worker:dead"),
            &[
                ("model_id", "scripted"),
                ("capacity", "1"),
                ("in_flight", "1"),
                ("heartbeat_ms", "1"),
            ],
        )
        .pexpire(format!("{ns}:llm:worker:dead"), 5000)
        .zadd(format!("{ns}:llm:workers:live"), "dead", 1)
        .query_async(&mut c)
        .await
        .unwrap();
    let client = ready_client(&pool).await;
    let caller = {
        let client = client.clone();
        tokio::spawn(async move { drain(client.generate(request()).await?).await.pipe_ok() })
    };

    // "dead" reads the job, starts answering, and dies without acknowledging it.
    let entry = loop {
        let reply: StreamReadReply = c
            .xread_options(
                &[&jobs],
                &[">"],
                &StreamReadOptions::default()
                    .group(&group, "dead")
                    .count(1)
                    .block(500),
            )
            .await
            .unwrap();
        if let Some(entry) = reply.keys.into_iter().flat_map(|k| k.ids).next() {
            break entry;
        }
    };
    let envelope: JobEnvelope = serde_json::from_str(&entry.get::<String>("job").unwrap()).unwrap();
    for event in [
        WireEvent::Start {
            worker: "dead".into(),
            restart: false,
        },
        WireEvent::Token("partial".into()),
    ] {
        let _: String = c
            .xadd(
                &envelope.reply_key,
                "*",
                &[
                    ("a", "dead-attempt".to_owned()),
                    ("e", serde_json::to_string(&event).unwrap()),
                ],
            )
            .await
            .unwrap();
    }

    let started = Instant::now();
    let live = start_worker(
        scripted(),
        &pool,
        WorkerOptions::new("live", 1).with_lease(Duration::from_millis(1000)),
    );
    let items = tokio::time::timeout(Duration::from_secs(10), caller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "taken over before the lease"
    );
    assert_eq!(
        items.first(),
        Some(&Ok(GenerationEvent::Token("partial".into()))),
        "{items:?}"
    );
    let reset = items
        .iter()
        .rposition(|i| i == &Ok(GenerationEvent::Reset))
        .expect("a Reset after the take-over");
    let after: String = items[reset..]
        .iter()
        .filter_map(|i| match i {
            Ok(GenerationEvent::Token(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let dones: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Ok(GenerationEvent::Done(d)) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dones.len(), 1, "{items:?}");
    assert_eq!(dones[0].text, "With food.");
    assert_eq!(after, dones[0].text);
    assert!(items.iter().all(Result::is_ok), "{items:?}");

    let events = reply_events(&pool, &envelope.job_id).await;
    assert_eq!(
        events.iter().filter(|e| e.is_final()).count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&WireEvent::Start {
        worker: "live".into(),
        restart: true
    }));
    wait_jobs_drained(&pool).await;
    live.stop().await;
}

#[tokio::test]
async fn a_redelivered_answered_job_is_not_answered_twice() {
    let pool = pool();
    let worker = start_worker(scripted(), &pool, WorkerOptions::new("w1", 1));
    let client = ready_client(&pool).await;
    let done = client.complete(request()).await.unwrap();
    assert_eq!(done.text, "With food.");
    wait_jobs_drained(&pool).await;

    // Find the answered job and send it again (a redelivery).
    let mut c = conn().await;
    let keys: Vec<String> = c
        .keys(format!("{}:llm:reply:*", pool.namespace))
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    let job_id = keys[0].rsplit(':').next().unwrap().to_owned();
    let before = reply_events(&pool, &job_id).await;
    let envelope = JobEnvelope {
        job_id: job_id.clone(),
        request: request(),
        deadline_ms: u64::MAX / 2,
        reply_key: keys[0].clone(),
    };
    push_raw_job(&pool, &envelope).await;
    let after = reply_events(&pool, &job_id).await;
    assert_eq!(before, after, "the redelivered job was answered again");
    assert_eq!(after.iter().filter(|e| e.is_final()).count(), 1);
    worker.stop().await;
}

trait PipeOk<T> {
    fn pipe_ok(self) -> Result<T, LlmError>;
}

impl<T> PipeOk<T> for T {
    fn pipe_ok(self) -> Result<T, LlmError> {
        Ok(self)
    }
}
