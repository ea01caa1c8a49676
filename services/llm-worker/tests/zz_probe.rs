mod common;
use std::time::Instant;
use careloop_llm::MistralEngine;
use careloop_llm::api::LlmService;
use common::*;
use futures::future::join_all;

#[test]
fn probe() {
    for conc in [1usize, 2, 4] {
        let engine = MistralEngine::load_blocking(settings(conc, 8)).unwrap();
        RUNTIME.block_on(async {
            let _ = engine.complete(ask("Hi", 2)).await.unwrap();
            let qs = ["What is the capital of France?", "Name a color.", "What is 2 + 2?", "Say hello in Spanish."];
            let start = Instant::now();
            let r = join_all(qs.iter().map(|q| engine.complete(ask(q, 16)))).await;
            let toks: u32 = r.iter().map(|c| c.as_ref().unwrap().usage.completion_tokens).sum();
            let ptoks: u32 = r.iter().map(|c| c.as_ref().unwrap().usage.prompt_tokens).sum();
            eprintln!("conc {conc}: 4 requests, prompt {ptoks} compl {toks} tokens in {:?} = {:.1} compl tok/s", start.elapsed(), toks as f64 / start.elapsed().as_secs_f64());
            let start = Instant::now();
            let mut toks = 0;
            for q in qs { toks += engine.complete(ask(q, 16)).await.unwrap().usage.completion_tokens; }
            eprintln!("conc {conc}: same 4 sequentially: {toks} tokens in {:?}", start.elapsed());
        });
    }
}
