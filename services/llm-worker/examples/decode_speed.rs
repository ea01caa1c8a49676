//! Side-by-side decode speed of GGUF files through careloop's engine (greedy, one stream).
//!
//! cargo run -p careloop-llm --example decode_speed -- models/A.gguf models/B.gguf
//! Runs each model in turn, three rounds interleaved, and prints tokens/s per round, so the ratio
//! is measured under the same machine load.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use careloop_llm::{LlmSettings, MistralEngine, api::LlmService};
use careloop_llm_api::{ChatMessage, GenerationRequest};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let mut engines = Vec::new();
    for path in &paths {
        engines.push((
            path.clone(),
            MistralEngine::load(LlmSettings::for_model(path)).await?,
        ));
    }
    let question = "Explain in simple words what high blood pressure is and why it matters.";
    for round in 1..=3 {
        for (path, engine) in &engines {
            let request =
                GenerationRequest::new(vec![ChatMessage::user(question)]).with_max_tokens(96);
            let started = Instant::now();
            let completion = engine.complete(request).await?;
            let secs = started.elapsed().as_secs_f64();
            let tokens = completion.usage.completion_tokens;
            println!(
                "round {round} {path}: {tokens} tokens in {secs:.2}s = {:.1} tokens/s (incl. prompt)",
                f64::from(tokens) / secs
            );
        }
    }
    Ok(())
}
