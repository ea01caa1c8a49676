//! Shared set-up of the integration tests: the real model, one runtime, one test at a time.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use careloop_llm::LlmSettings;
use careloop_llm::api::{ChatMessage, GenerationEvent, GenerationRequest, LlmError, TokenStream};
use futures::StreamExt;

/// The SmolLM2 test model: `$CARELOOP_TEST_MODEL`, else `<workspace>/models/...`.
/// Missing is a failure, not a skip.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("CARELOOP_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "the test model {} is missing: run `./careloop.sh setup` (or point CARELOOP_TEST_MODEL at a GGUF file)",
        path.display()
    );
    path
}

pub fn settings(max_concurrent: usize, max_queued: usize) -> LlmSettings {
    LlmSettings {
        model_id: Some("smollm2-test".into()),
        max_concurrent,
        max_queued,
        queue_timeout_ms: 60_000,
        ..LlmSettings::for_model(model_path())
    }
}

/// One multi-threaded runtime for all tests of a binary (the engines outlive tests).
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
});

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests share 2 CPU cores; timing checks need them to run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn ask(question: &str, max_tokens: u32) -> GenerationRequest {
    GenerationRequest::new(vec![
        ChatMessage::system("You are a helpful assistant. Answer briefly."),
        ChatMessage::user(question),
    ])
    .with_max_tokens(max_tokens)
    .with_timeout(Duration::from_secs(60))
}

/// A prompt that makes the model talk for a long time.
pub fn long_request(max_tokens: u32) -> GenerationRequest {
    GenerationRequest::new(vec![ChatMessage::user(
        "Count from 1 to 300, writing every number in words, separated by commas.",
    )])
    .with_max_tokens(max_tokens)
    .with_timeout(Duration::from_secs(60))
}

/// Every item of a stream with the time it arrived (since `start`).
pub async fn drain(
    mut stream: TokenStream,
    start: Instant,
) -> Vec<(Duration, Result<GenerationEvent, LlmError>)> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push((start.elapsed(), item));
    }
    items
}

/// CPU time (user + system) this process used so far, from /proc (USER_HZ = 100).
pub fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// CPU time the process uses during the next `window`.
pub async fn cpu_used_during(window: Duration) -> Duration {
    let before = process_cpu_time();
    tokio::time::sleep(window).await;
    process_cpu_time().saturating_sub(before)
}
