#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Scale-out LLM: two `careloop serve --roles llm` workers in `remote` mode serve a Redis pool;
//! one is SIGKILLed while answering, and every question is still answered exactly once.

use std::time::{Duration, Instant};

use careloop_e2e::Careloop;
use careloop_llm_api::{ChatMessage, GenerationEvent, GenerationRequest, LlmService};
use careloop_llm_redis::{ClientOptions, PoolConfig, RedisLlmClient};
use futures::StreamExt;
use redis::AsyncCommands;

const REDIS: &str = "redis://127.0.0.1:6379/";
const QUESTIONS: usize = 6;

fn worker(namespace: &str) -> Careloop {
    Careloop::start(
        &["serve", "--roles", "llm"],
        &[
            ("CARELOOP_LLM__MODE", "remote".to_owned()),
            ("CARELOOP_QUEUE__URL", REDIS.to_owned()),
            ("CARELOOP_QUEUE__NAMESPACE", namespace.to_owned()),
            ("CARELOOP_LLM__LEASE_SECS", "3".to_owned()),
            ("CARELOOP_LLM__MAX_CONCURRENCY", "1".to_owned()),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_question() {
    let started = Instant::now();
    let namespace = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let mut workers = vec![worker(&namespace), worker(&namespace)];
    for w in &mut workers {
        w.wait_for("/readyz", 200, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let pool = PoolConfig::new(REDIS, namespace.clone());
    let client = RedisLlmClient::connect(&pool, ClientOptions::default())
        .await
        .unwrap();
    while client.workers().await.unwrap_or_default().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "workers never advertised"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (first_token_tx, mut first_token) = tokio::sync::mpsc::channel::<()>(QUESTIONS);
    let mut asks = Vec::new();
    for i in 0..QUESTIONS {
        let client = client.clone();
        let first_token_tx = first_token_tx.clone();
        asks.push(tokio::spawn(async move {
            let req = GenerationRequest::new(vec![
                ChatMessage::system("You are a careful nurse. Answer in one short paragraph."),
                ChatMessage::user(format!(
                    "Question {i}: why should I take my metformin with food?"
                )),
            ])
            .with_max_tokens(40)
            .with_timeout(Duration::from_secs(70));
            let mut stream = client.generate(req).await.unwrap();
            let mut items = Vec::new();
            while let Some(item) = stream.next().await {
                if matches!(item, Ok(GenerationEvent::Token(_))) {
                    let _ = first_token_tx.try_send(());
                }
                items.push(item);
            }
            items
        }));
    }

    // Kill the worker that is answering right now.
    first_token.recv().await.unwrap();
    let busy = loop {
        // A busy machine may delay a reply; the deadline below is what fails the test.
        let live = client.workers().await.unwrap_or_default();
        if let Some(w) = live.iter().find(|w| w.in_flight > 0) {
            break w.name.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(80),
            "no worker ever reported work"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = workers
        .iter()
        .position(|w| busy.starts_with(&format!("{}-", w.child.id())))
        .expect("the busy worker is one of ours");
    let killed_at = Instant::now();
    let mut dead = workers.remove(victim);
    dead.signal_and_wait("KILL", Duration::from_secs(10))
        .unwrap();

    for (i, ask) in asks.into_iter().enumerate() {
        let items = tokio::time::timeout(Duration::from_secs(80), ask)
            .await
            .unwrap()
            .unwrap();
        assert!(items.iter().all(Result::is_ok), "question {i}: {items:?}");
        let dones: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Ok(GenerationEvent::Done(d)) => Some(d.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(dones.len(), 1, "question {i}: {items:?}");
        assert!(matches!(items.last(), Some(Ok(GenerationEvent::Done(_)))));
        let from = items
            .iter()
            .rposition(|e| e == &Ok(GenerationEvent::Reset))
            .unwrap_or(0);
        let text: String = items[from..]
            .iter()
            .filter_map(|e| match e {
                Ok(GenerationEvent::Token(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, dones[0].text, "question {i}");
        assert!(!dones[0].text.is_empty(), "question {i}");
    }

    // The killed worker's job was taken over (a restarted attempt), and nothing is left over.
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let replies: Vec<String> = conn.keys(format!("{namespace}:llm:reply:*")).await.unwrap();
    assert_eq!(replies.len(), QUESTIONS);
    let mut restarts = 0;
    for key in &replies {
        let entries: redis::streams::StreamRangeReply = conn.xrange_all(key).await.unwrap();
        let events: Vec<String> = entries
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("e"))
            .collect();
        restarts += events
            .iter()
            .filter(|e| e.contains("\"restart\":true"))
            .count();
        let finals = events
            .iter()
            .filter(|e| e.contains("\"t\":\"done\"") || e.contains("\"t\":\"error\""))
            .count();
        assert_eq!(finals, 1, "{key}");
    }
    assert!(
        restarts >= 1,
        "the killed worker's job was never taken over"
    );
    let left: usize = conn.xlen(format!("{namespace}:llm:jobs")).await.unwrap();
    assert_eq!(left, 0);
    eprintln!(
        "{QUESTIONS} questions answered once each; {restarts} taken over; {:?} after the kill, {:?} in all",
        killed_at.elapsed(),
        started.elapsed()
    );

    let mut survivor = workers.pop().unwrap();
    let status = survivor
        .signal_and_wait("TERM", Duration::from_secs(20))
        .unwrap();
    assert!(status.success(), "{status}; logs:\n{}", survivor.logs());
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
}
