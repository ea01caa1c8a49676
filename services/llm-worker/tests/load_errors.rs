//! Loading fails with a typed error whose message names the file (no model needed).

// Integration-test crates are not `cfg(test)` code for clippy; panicking is the point here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use careloop_llm::{LlmSettings, LoadError, MistralEngine};

#[tokio::test]
async fn a_missing_model_file_says_to_run_setup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let err = MistralEngine::load(LlmSettings::for_model(&path))
        .await
        .unwrap_err();
    assert_eq!(err, LoadError::ModelMissing { path: path.clone() });
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("./careloop.sh setup"), "{message}");

    // Also when the directory itself is missing (mistral.rs would ask the hub then).
    let path = dir.path().join("no-such-dir/model.gguf");
    let err = MistralEngine::load(LlmSettings::for_model(&path))
        .await
        .unwrap_err();
    assert_eq!(err, LoadError::ModelMissing { path });
}

#[tokio::test]
async fn a_garbage_file_is_an_invalid_model() {
    let mut file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    let garbage: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    file.write_all(&garbage).unwrap();
    let path = file.path().to_path_buf();

    let err = MistralEngine::load(LlmSettings::for_model(&path))
        .await
        .unwrap_err();
    let LoadError::InvalidModel {
        path: reported,
        reason,
    } = &err
    else {
        panic!("expected InvalidModel, got {err:?}");
    };
    assert_eq!(reported, &path);
    assert!(!reason.is_empty());
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

/// A valid GGUF header with nothing behind it gets past the header check and is
/// rejected by mistral.rs itself (an error or a caught panic, never a crash).
#[tokio::test]
async fn a_gguf_without_a_model_is_an_invalid_model() {
    let mut file = tempfile::Builder::new().suffix(".gguf").tempfile().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"GGUF");
    bytes.extend_from_slice(&3u32.to_le_bytes()); // version
    bytes.extend_from_slice(&0u64.to_le_bytes()); // tensor count
    bytes.extend_from_slice(&0u64.to_le_bytes()); // metadata count
    bytes.resize(1024, 0);
    file.write_all(&bytes).unwrap();
    let path = file.path().to_path_buf();

    let err = MistralEngine::load(LlmSettings::for_model(&path))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LoadError::InvalidModel { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
