//! `careloop serve` on the embedded default and on PostgreSQL + Redis: it starts in an empty folder,
//! becomes ready once database, queue and model are usable, and stops cleanly on SIGTERM/SIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use careloop_e2e::{Careloop, TestDatabase};

const READY_WITHIN: Duration = Duration::from_secs(180);

#[tokio::test]
async fn embedded_default_serves_and_shuts_down_on_sigterm() {
    let mut app = Careloop::start(&["serve"], &[]).unwrap();

    let health = app
        .wait_for("/healthz", 200, Duration::from_secs(30))
        .await
        .unwrap();
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    let ready = app.wait_for("/readyz", 200, READY_WITHIN).await.unwrap();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for check in ["database", "queue", "model"] {
        assert_eq!(body["checks"][check], "ok", "{check}: {body}");
    }

    // The embedded default keeps everything under ./data of the working folder.
    let data = app.dir.path().join("data");
    assert!(data.join("careloop.sqlite").exists(), "database file");
    assert!(data.join("queue.sqlite").exists(), "queue file");

    let status = app
        .signal_and_wait("TERM", Duration::from_secs(20))
        .unwrap();
    assert!(
        status.success(),
        "exit status {status}; logs:\n{}",
        app.logs()
    );
    let logs = app.logs();
    assert!(logs.contains("shutting down"), "logs:\n{logs}");
    // Seed content was imported, and no message text or address appears in the logs.
    assert!(logs.contains("content imported"), "logs:\n{logs}");
    assert!(
        !logs.contains("Type 2 diabetes means"),
        "content text leaked into logs"
    );
}

#[tokio::test]
async fn postgres_and_redis_by_configuration_alone() {
    let db = TestDatabase::create().await.unwrap();
    let mut app = Careloop::start(
        &["serve", "--roles", "gateway,llm,reminders"],
        &[
            ("CARELOOP_DATABASE__URL", db.url.clone()),
            ("CARELOOP_QUEUE__URL", "redis://127.0.0.1:6379/".to_owned()),
        ],
    )
    .unwrap();
    let ready = app.wait_for("/readyz", 200, READY_WITHIN).await.unwrap();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["queue"], "ok");
    let logs = app.logs();
    assert!(logs.contains("\"backend\":\"postgres\""), "logs:\n{logs}");
    assert!(logs.contains("\"queue\":\"redis\""), "logs:\n{logs}");
    // No SQLite file appears when PostgreSQL and Redis are configured.
    assert!(!app.dir.path().join("data/careloop.sqlite").exists());
    assert!(!app.dir.path().join("data/queue.sqlite").exists());

    let status = app.signal_and_wait("INT", Duration::from_secs(20)).unwrap();
    assert!(status.success(), "exit status {status}");
    db.drop_now().await.unwrap();
}

#[tokio::test]
async fn a_missing_model_fails_start_up_with_a_clear_message() {
    let mut app = Careloop::start(
        &["serve"],
        &[(
            "CARELOOP_LLM__MODEL_PATH",
            "/nonexistent/model.gguf".to_owned(),
        )],
    )
    .unwrap();
    let status = careloop_e2e::wait_timeout(&mut app.child, Duration::from_secs(30)).unwrap();
    assert!(!status.success());
    let logs = app.logs();
    assert!(logs.contains("/nonexistent/model.gguf"), "{logs}");
    assert!(logs.contains("./careloop.sh setup"), "{logs}");
}

#[tokio::test]
async fn a_process_without_the_gateway_role_still_reports_health() {
    let mut app = Careloop::start(&["serve", "--roles", "reminders"], &[]).unwrap();
    let ready = app
        .wait_for("/readyz", 200, Duration::from_secs(60))
        .await
        .unwrap();
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["queue"], "ok");
    assert!(
        body["checks"].get("model").is_none(),
        "a reminders worker needs no model: {body}"
    );
    let status = app
        .signal_and_wait("TERM", Duration::from_secs(20))
        .unwrap();
    assert!(status.success());
}
