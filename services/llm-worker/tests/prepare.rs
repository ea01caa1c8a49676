//! Model preparation on the real SmolLM2 file: Q4_1 tensors become Q8_0, the original is kept, a
//! second run does nothing, and the prepared model loads and answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use careloop_llm::{
    LlmSettings, MistralEngine, PrepareError, Prepared, api::LlmService, prepare_if_needed,
};
use careloop_llm_api::{ChatMessage, GenerationRequest};

fn source() -> PathBuf {
    std::env::var_os("CARELOOP_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        })
}

#[test]
fn q4_1_becomes_q8_0_once_and_still_answers() {
    let src = source();
    assert!(
        src.exists(),
        "{} is missing: run ./careloop.sh setup",
        src.display()
    );
    let before = careloop_llm::model_file_sha256(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.Q8_0.gguf");

    let Prepared::Written(report) = prepare_if_needed(&src, &out).unwrap() else {
        panic!("first run must write the file");
    };
    let q4_1 = report.converted.get("Q4_1 -> Q8_0").copied().unwrap_or(0);
    assert!(q4_1 > 0, "converted: {:?}", report.converted);
    assert!(out.exists());
    assert_eq!(
        careloop_llm::model_file_sha256(&src).unwrap(),
        before,
        "the source is never modified"
    );
    assert_eq!(
        careloop_llm::model_file_sha256(&out).unwrap(),
        report.output_sha256
    );

    match prepare_if_needed(&src, &out).unwrap() {
        Prepared::UpToDate { output_sha256, .. } => assert_eq!(output_sha256, report.output_sha256),
        Prepared::Written(_) => panic!("second run must do nothing"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = MistralEngine::load(LlmSettings::for_model(&out))
            .await
            .unwrap();
        let request = GenerationRequest::new(vec![ChatMessage::user("What is blood pressure?")])
            .with_max_tokens(12);
        let completion = engine.complete(request).await.unwrap();
        assert!(!completion.text.trim().is_empty());
        assert!(completion.usage.completion_tokens > 0);
    });
}

#[test]
fn missing_and_garbage_sources_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        prepare_if_needed(&dir.path().join("nope.gguf"), &dir.path().join("o.gguf")).unwrap_err();
    assert!(matches!(err, PrepareError::Missing { .. }));
    assert!(err.to_string().contains("./careloop.sh setup"), "{err}");

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, vec![7u8; 1024]).unwrap();
    let err = prepare_if_needed(&garbage, &dir.path().join("o.gguf")).unwrap_err();
    assert!(matches!(err, PrepareError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("garbage.gguf"));
    assert!(
        !dir.path().join("o.gguf").exists(),
        "nothing written for a bad source"
    );
}
