#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The server answers health and readiness, and readiness follows its checks.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use careloop_gateway::{AppState, Application, ReadinessCheck, ServerConfig};
use futures::FutureExt;

fn spawn(
    checks: Vec<ReadinessCheck>,
) -> (
    String,
    careloop_gateway::StopHandle,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        shutdown_timeout: Duration::from_secs(1),
    };
    let app = Application::build(&config, AppState::new(checks)).unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    let task = tokio::spawn(app.run_until_stopped());
    (url, stop, task)
}

#[tokio::test]
async fn readiness_follows_the_checks() {
    let model_loaded = Arc::new(AtomicBool::new(false));
    let flag = model_loaded.clone();
    let checks = vec![
        ReadinessCheck::new("database", || async { Ok(()) }.boxed()),
        ReadinessCheck::new("model", move || {
            let loaded = flag.load(Ordering::SeqCst);
            async move {
                if loaded {
                    Ok(())
                } else {
                    Err("loading".to_owned())
                }
            }
            .boxed()
        }),
    ];
    let (url, stop, task) = spawn(checks);
    let client = reqwest::Client::new();

    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let not_ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["model"], "loading");
    assert_eq!(body["checks"]["database"], "ok");

    model_loaded.store(true, Ordering::SeqCst);
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let missing = client.get(format!("{url}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    stop.stop().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hanging_check_counts_as_not_ready() {
    let checks = vec![ReadinessCheck::new("queue", || {
        futures::future::pending().boxed()
    })];
    let (url, stop, task) = spawn(checks);
    let response = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["queue"], "timed out");
    stop.stop().await;
    task.await.unwrap().unwrap();
}
