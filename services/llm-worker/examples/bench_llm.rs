//! careloop's side of `scripts/bench_llm.sh`: drives [`MistralEngine`] through the
//! [`LlmService`] API exactly as the conversation engine does, and prints one JSON object.
//!
//! cargo run -p careloop-llm --example bench_llm -- \
//!     --model models/SmolLM2-135M-Instruct.Q8_0.gguf \
//!     --questions scripts/bench_llm.questions.json [--concurrency 8] [--max-concurrent N] \
//!     [--prepare-from models/SmolLM2-135M-Instruct.Q4_1.gguf]
//!
//! `--prepare-from` first makes `--model` from that file when it is missing or stale, with the
//! same library call as `careloop model prepare` (so the benchmark needs no careloop binary).
//!
//! * single stream: the questions one after another; per question the time to the first token
//!   and the decode rate after it (`(completion_tokens - 1) / (done - first token)`).
//! * concurrent: the first `--concurrency` questions submitted at the same instant; aggregate
//!   rate = all completion tokens / wall time until the last answer is done (prompt processing
//!   and queueing included); time to first token counted from the common start.
//! * peak memory: this process's `VmHWM` at the end.
//!
//! The engine runs with `LlmSettings`' defaults (what careloop runs) unless `--max-concurrent`
//! overrides the number of generations in flight (for exploring the settings).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use careloop_llm::{LlmSettings, MistralEngine};
use careloop_llm_api::{ChatMessage, GenerationEvent, GenerationRequest, LlmService};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Questions {
    system: String,
    max_tokens: u32,
    questions: Vec<String>,
}

struct Args {
    model: PathBuf,
    questions: PathBuf,
    concurrency: usize,
    max_concurrent: Option<usize>,
    prepare_from: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut model = None;
    let mut questions = None;
    let mut concurrency = 8;
    let mut max_concurrent = None;
    let mut prepare_from = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--questions" => questions = Some(PathBuf::from(value()?)),
            "--concurrency" => concurrency = value()?.parse()?,
            "--max-concurrent" => max_concurrent = Some(value()?.parse()?),
            "--prepare-from" => prepare_from = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        model: model.context("--model is required")?,
        questions: questions.context("--questions is required")?,
        concurrency,
        max_concurrent,
        prepare_from,
    })
}

/// One answer as the caller saw it.
struct Measured {
    prompt_tokens: u32,
    completion_tokens: u32,
    /// From submission to the first token.
    first_token: Duration,
    /// From submission to `Done`.
    done: Duration,
}

async fn ask(
    engine: &MistralEngine,
    system: &str,
    question: &str,
    max_tokens: u32,
    start: Instant,
) -> anyhow::Result<Measured> {
    let request = GenerationRequest::new(vec![
        ChatMessage::system(system),
        ChatMessage::user(question),
    ])
    .with_max_tokens(max_tokens)
    .with_timeout(Duration::from_secs(600));
    let mut stream = engine.generate(request).await?;
    let mut first_token = None;
    while let Some(event) = stream.next().await {
        match event? {
            GenerationEvent::Token(_) => {
                first_token.get_or_insert_with(|| start.elapsed());
            }
            GenerationEvent::Reset => {}
            GenerationEvent::Done(done) => {
                let elapsed = start.elapsed();
                if std::env::var_os("BENCH_PRINT_ANSWERS").is_some() {
                    eprintln!("--- {question}\n{}", done.text);
                }
                return Ok(Measured {
                    prompt_tokens: done.usage.prompt_tokens,
                    completion_tokens: done.usage.completion_tokens,
                    first_token: first_token.unwrap_or(elapsed),
                    done: elapsed,
                });
            }
        }
    }
    bail!("the stream ended without Done")
}

fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let q: Questions = serde_json::from_slice(
        &std::fs::read(&args.questions)
            .with_context(|| format!("read {}", args.questions.display()))?,
    )?;
    if q.questions.len() < args.concurrency {
        bail!("need at least {} questions", args.concurrency);
    }
    if let Some(source) = &args.prepare_from
        && let careloop_llm::Prepared::Written(report) =
            careloop_llm::prepare_if_needed(source, &args.model)?
    {
        eprintln!("prepared {}: {report:?}", args.model.display());
    }
    let mut settings = LlmSettings::for_model(&args.model);
    if let Some(n) = args.max_concurrent {
        settings.max_concurrent = n;
    }
    settings.max_queued = settings.max_queued.max(args.concurrency);
    settings.queue_timeout_ms = 600_000;
    let load_start = Instant::now();
    let engine = MistralEngine::load(settings.clone()).await?;
    let load_s = secs(load_start.elapsed());

    // Warm-up, not counted (the other side gets the same).
    ask(&engine, &q.system, &q.questions[0], 16, Instant::now()).await?;

    let mut single = Vec::new();
    for question in &q.questions {
        let start = Instant::now();
        let m = ask(&engine, &q.system, question, q.max_tokens, start).await?;
        single.push(json!({
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "ttft_s": secs(m.first_token),
            "total_s": secs(m.done),
        }));
    }

    let start = Instant::now();
    let tasks: Vec<_> = q.questions[..args.concurrency]
        .iter()
        .map(|question| {
            let engine = engine.clone();
            let system = q.system.clone();
            let question = question.clone();
            let max_tokens = q.max_tokens;
            tokio::spawn(async move { ask(&engine, &system, &question, max_tokens, start).await })
        })
        .collect();
    let mut concurrent = Vec::new();
    for task in tasks {
        let m = task.await??;
        concurrent.push(json!({
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "ttft_s": secs(m.first_token),
            "total_s": secs(m.done),
        }));
    }
    let wall_s = secs(start.elapsed());

    let report = json!({
        "engine": "careloop (mistral.rs 0.8.1)",
        "config": format!(
            "MistralEngine, max_concurrent={}, tokio workers={}",
            settings.max_concurrent,
            tokio::runtime::Handle::current().metrics().num_workers()
        ),
        "load_s": load_s,
        "single": single,
        "concurrent": concurrent,
        "concurrent_wall_s": wall_s,
        "peak_rss_mib": peak_rss_mib()?,
    });
    println!("{report}");
    Ok(())
}
