//! Per-IP limits on the public patient routes, through a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use careloop_channels::ratelimit::{KeyedLimiter, quota_per};
use careloop_gateway::{AppState, Application, ServerConfig};

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_webhooks_are_not_limited() {
    let mut state = AppState::new(Vec::new());
    state.per_ip = Some(KeyedLimiter::new(quota_per(3, Duration::from_secs(60))));
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        shutdown_timeout: Duration::from_secs(1),
    };
    let app = Application::build(&config, state).unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    let task = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let post = |path: &'static str| {
        client
            .post(format!("{url}{path}"))
            .json(&serde_json::json!({"session": "s", "text": "hi"}))
            .send()
    };
    for _ in 0..3 {
        let status = post("/api/v1/conversation/messages")
            .await
            .unwrap()
            .status();
        assert_ne!(status, 429);
    }
    let limited = post("/api/v1/conversation/messages").await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests")
    );
    // Provider webhooks and health are not limited by the client's IP.
    for _ in 0..5 {
        assert_ne!(
            post("/channels/telegram/webhook").await.unwrap().status(),
            429
        );
        let health = client.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
    stop.stop().await;
    task.await.unwrap().unwrap();
}
