//! End-to-end checks of `MistralEngine` with the real SmolLM2-135M model on the CPU,
//! greedy decoding, small `max_tokens`. One engine per configuration per binary; the
//! tests run one at a time (`common::serial`) because their timings share 2 cores.

// Integration-test crates are not `cfg(test)` code for clippy; panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use careloop_llm::api::{
    FinishReason, GenerationEvent, LlmError, LlmService, TokenStream, collect_completion,
};
use careloop_llm::{EngineHandle, LoadState, MistralEngine};
use common::{RUNTIME, ask, cpu_used_during, drain, long_request, serial, settings};
use futures::StreamExt;
use futures::future::join_all;

/// Two generation slots, a roomy queue: the engine of most tests.
static ENGINE: LazyLock<MistralEngine> = LazyLock::new(|| {
    let started = Instant::now();
    let engine = MistralEngine::load_blocking(settings(2, 8)).expect("load the test model");
    eprintln!("model loaded in {:?}", started.elapsed());
    engine
});

/// The Q8_0 file the CPU default runs (made from the test model as `careloop model prepare`
/// makes it), two slots: exercises careloop's patched candle Q8_0 matmul and mistral.rs's
/// batched CPU attention (vendor/README.md).
static Q8_ENGINE: LazyLock<MistralEngine> = LazyLock::new(|| {
    let q8 = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-test.Q8_0.gguf");
    careloop_llm::prepare_if_needed(&common::model_path(), &q8).expect("prepare the Q8_0 file");
    MistralEngine::load_blocking(careloop_llm::LlmSettings {
        model_path: q8,
        ..settings(2, 8)
    })
    .expect("load the Q8_0 test model")
});

/// One slot, a queue of one: for the admission tests.
static SMALL: LazyLock<MistralEngine> =
    LazyLock::new(|| MistralEngine::load_blocking(settings(1, 1)).expect("load the test model"));

fn tokens_of(items: &[(Duration, Result<GenerationEvent, LlmError>)]) -> Vec<String> {
    items
        .iter()
        .filter_map(|(_, item)| match item {
            Ok(GenerationEvent::Token(t)) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_answer_streams_token_by_token() {
    let _serial = serial();
    let engine = &*ENGINE;
    RUNTIME.block_on(async {
        let start = Instant::now();
        let stream = engine.generate(ask("What is the capital of France?", 24)).await.unwrap();
        let items = drain(stream, start).await;
        let tokens = tokens_of(&items);
        let (done_at, last) = items.last().expect("at least one event");
        let Ok(GenerationEvent::Done(done)) = last else {
            panic!("the stream must end with Done, got {last:?}");
        };
        assert!(tokens.len() > 1, "expected several tokens, got {}", tokens.len());
        assert_eq!(items.len(), tokens.len() + 1, "Done comes last, once");
        assert_eq!(done.text, tokens.concat());
        assert!(!done.text.trim().is_empty());
        assert!(done.usage.prompt_tokens > 0);
        assert!(done.usage.completion_tokens > 0 && done.usage.completion_tokens <= 24);
        assert_eq!(done.model_id, "smollm2-test");
        assert_eq!(engine.model_id(), "smollm2-test");
        assert!(engine.is_ready());

        // Streaming, not buffering: the first token arrives long before the end.
        let first_at = items[0].0;
        if tokens.len() >= 5 {
            assert!(
                first_at.as_secs_f64() < done_at.as_secs_f64() * 0.8,
                "first token at {first_at:?}, done at {done_at:?}"
            );
        }
        let gen_secs = (*done_at - first_at).as_secs_f64();
        eprintln!(
            "streamed {} tokens ({:?}, prompt {} tokens): first token after {first_at:?}, done after {done_at:?}, {:.1} tokens/s after the first",
            done.usage.completion_tokens,
            done.finish_reason,
            done.usage.prompt_tokens,
            f64::from(done.usage.completion_tokens.saturating_sub(1)) / gen_secs.max(1e-3),
        );
    });
}

#[test]
fn greedy_decoding_is_reproducible() {
    let _serial = serial();
    let engine = &*ENGINE;
    RUNTIME.block_on(async {
        let question = "Name three fruits.";
        let first = engine.complete(ask(question, 16)).await.unwrap();
        let second = engine.complete(ask(question, 16)).await.unwrap();
        assert!(!first.text.is_empty());
        assert_eq!(first.text, second.text);
        assert_eq!(first.usage, second.usage);
    });
}

#[test]
fn cancellation_stops_generation_promptly() {
    let _serial = serial();
    let engine = &*ENGINE;
    RUNTIME.block_on(async {
        let req = long_request(256);
        let cancel = req.cancel.clone();
        let mut stream: TokenStream = engine.generate(req).await.unwrap();
        let first = stream.next().await.expect("an item");
        assert!(matches!(first, Ok(GenerationEvent::Token(_))), "{first:?}");

        let cancelled_at = Instant::now();
        cancel.cancel();
        let mut extra_tokens = 0;
        let end = loop {
            match stream.next().await.expect("a terminal item") {
                Ok(GenerationEvent::Token(_)) => extra_tokens += 1,
                other => break other,
            }
        };
        assert_eq!(end, Err(LlmError::Cancelled));
        assert!(cancelled_at.elapsed() < Duration::from_millis(500));
        assert!(extra_tokens < 5, "{extra_tokens} tokens after cancel");
        assert!(
            stream.next().await.is_none(),
            "nothing after the terminal item"
        );

        // mistral.rs really stopped: within a token or two the process goes idle
        // (generating keeps at least one core busy).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(engine.running(), 0);
        let cpu = cpu_used_during(Duration::from_secs(1)).await;
        assert!(
            cpu < Duration::from_millis(400),
            "still burning CPU after cancel: {cpu:?} in 1 s"
        );

        // And the engine serves the next request.
        let next = engine.complete(ask("Say hello.", 4)).await.unwrap();
        assert!(next.usage.completion_tokens > 0);
    });
}

#[test]
fn a_deadline_mid_generation_times_out_and_stops() {
    let _serial = serial();
    let engine = &*ENGINE;
    RUNTIME.block_on(async {
        let timeout = Duration::from_secs(3);
        let start = Instant::now();
        let stream = engine
            .generate(long_request(512).with_timeout(timeout))
            .await
            .unwrap();
        let items = drain(stream, start).await;
        let (ended_at, last) = items.last().expect("a terminal item");
        assert_eq!(
            *last,
            Err(LlmError::TimedOut),
            "after {} tokens",
            tokens_of(&items).len()
        );
        assert!(
            !tokens_of(&items).is_empty(),
            "some tokens before the deadline"
        );
        assert!(
            *ended_at >= timeout && *ended_at < timeout + Duration::from_secs(1),
            "{ended_at:?}"
        );

        tokio::time::sleep(Duration::from_millis(400)).await;
        let cpu = cpu_used_during(Duration::from_secs(1)).await;
        assert!(
            cpu < Duration::from_millis(400),
            "still burning CPU after the deadline: {cpu:?} in 1 s"
        );
    });
}

#[test]
fn concurrent_requests_all_complete() {
    let _serial = serial();
    let engine = &*ENGINE;
    RUNTIME.block_on(async {
        let questions = [
            "What is the capital of France?",
            "Name a color.",
            "What is 2 + 2?",
            "Say hello in Spanish.",
        ];
        let solo = engine.complete(ask(questions[2], 8)).await.unwrap();

        let start = Instant::now();
        let results = join_all(questions.iter().map(|q| engine.complete(ask(q, 8)))).await;
        let elapsed = start.elapsed();
        let mut total_tokens = 0;
        for result in &results {
            let completion = result.as_ref().expect("every request completes");
            assert!(completion.usage.completion_tokens > 0);
            assert!(!completion.text.is_empty());
            total_tokens += completion.usage.completion_tokens;
        }
        assert_eq!(engine.queued(), 0);
        assert_eq!(engine.running(), 0);
        let batched_same = results[2].as_ref().map(|c| c.text == solo.text).unwrap_or(false);
        eprintln!(
            "4 concurrent requests (2 slots): {total_tokens} tokens in {elapsed:?} ({:.1} tokens/s aggregate); batched greedy answer equals solo answer: {batched_same}",
            f64::from(total_tokens) / elapsed.as_secs_f64()
        );
    });
}

/// Sequences decoded together in one batch answer exactly what they answer alone (greedy).
/// mistral.rs 0.8.1's CPU decode attention gave every sequence of a batch the last one's
/// attention output (fixed in vendor/mistralrs-core); the Q8_0 matmul sums each row the same
/// way whatever the batch size, so the tokens are identical, not just similar.
#[test]
fn batched_greedy_answers_equal_the_same_questions_asked_alone() {
    let _serial = serial();
    let engine = &*Q8_ENGINE;
    RUNTIME.block_on(async {
        // Same length in tokens, so the two running at once are batched from the first step.
        let questions = [
            "Name a color.",
            "Name a fruit.",
            "Name a city.",
            "Name a planet.",
        ];
        let mut alone = Vec::new();
        for q in questions {
            alone.push(engine.complete(ask(q, 16)).await.unwrap().text);
        }
        assert!(
            alone.iter().any(|a| a != &alone[0]),
            "different questions should get different answers: {alone:?}"
        );
        let together = join_all(questions.iter().map(|q| engine.complete(ask(q, 16)))).await;
        for ((q, alone), together) in questions.iter().zip(&alone).zip(&together) {
            assert_eq!(&together.as_ref().unwrap().text, alone, "{q}");
        }
    });
}

#[test]
fn a_full_queue_refuses_extras_and_queued_requests_keep_their_deadline() {
    let _serial = serial();
    let engine = &*SMALL;
    RUNTIME.block_on(async {
        // One running, one queued, two refused at once.
        let results = join_all((0..4).map(|i| async move {
            let stream = engine.generate(ask("Name a fruit.", 6)).await;
            (
                i,
                match stream {
                    Ok(stream) => collect_completion(stream).await,
                    Err(e) => Err(e),
                },
            )
        }))
        .await;
        let done = results.iter().filter(|(_, r)| r.is_ok()).count();
        let overloaded: Vec<usize> = results
            .iter()
            .filter(|(_, r)| *r == Err(LlmError::Overloaded))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(done, 2, "{results:?}");
        assert_eq!(overloaded, vec![2, 3], "{results:?}");

        // A queued request whose deadline passes before a slot frees up times out.
        let long = long_request(512);
        let cancel_long = long.cancel.clone();
        let running = engine.generate(long).await.unwrap();
        let start = Instant::now();
        let queued = engine
            .generate(ask("Name a fruit.", 4).with_timeout(Duration::from_millis(400)))
            .await;
        assert_eq!(queued.err(), Some(LlmError::TimedOut));
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(engine.queued(), 0);

        // A queued request that is cancelled leaves the queue at once.
        let req = ask("Name a fruit.", 4);
        let cancel = req.cancel.clone();
        let (queued, ()) = tokio::join!(engine.generate(req), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cancel.cancel();
        });
        assert_eq!(queued.err(), Some(LlmError::Cancelled));

        cancel_long.cancel();
        assert_eq!(collect_completion(running).await, Err(LlmError::Cancelled));
    });
}

#[test]
fn dropping_the_stream_frees_the_slot() {
    let _serial = serial();
    let engine = &*SMALL;
    RUNTIME.block_on(async {
        let mut stream = engine.generate(long_request(512)).await.unwrap();
        assert!(matches!(
            stream.next().await,
            Some(Ok(GenerationEvent::Token(_)))
        ));
        drop(stream);
        // With one slot, the next request only runs once the dropped one let go.
        let next = tokio::time::timeout(
            Duration::from_secs(20),
            engine.complete(ask("Say hello.", 4)),
        )
        .await
        .expect("the slot was freed")
        .unwrap();
        assert!(matches!(
            next.finish_reason,
            FinishReason::Stop | FinishReason::Length
        ));
    });
}

#[test]
fn a_handle_is_not_ready_until_the_model_is_loaded() {
    let _serial = serial();
    let handle = EngineHandle::load_in_background(settings(1, 4));
    assert!(!handle.is_ready());
    assert_eq!(handle.state(), LoadState::Loading);
    assert_eq!(handle.model_id(), "smollm2-test");
    RUNTIME.block_on(async {
        assert_eq!(
            handle.complete(ask("Hi", 2)).await.err(),
            Some(LlmError::NotReady)
        );
        handle.wait_ready().await.expect("the model loads");
        assert!(handle.is_ready());
        assert_eq!(handle.state(), LoadState::Ready);
        let answer = handle.complete(ask("Say hello.", 4)).await.unwrap();
        assert!(answer.usage.completion_tokens > 0);
    });
}
