//! The conversation engine through the real gateway process on the embedded default, with the
//! real SmolLM2 model: onboarding, a grounded answer, a red flag, bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use careloop_e2e::Careloop;
use serde_json::{Value, json};

async fn say(client: &reqwest::Client, app: &Careloop, session: &str, text: &str) -> Value {
    let resp = client
        .post(format!("{}/api/v1/conversation/messages", app.base_url))
        .json(&json!({ "session": session, "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{text}");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_patient_talks_to_careloop_over_http() {
    let mut app = Careloop::start(&["serve"], &[]).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let session = "e2e-session-0123456789abcdef";

    let first = say(&client, &app, session, "Hello").await;
    assert_eq!(first["outcome"], "replied");
    assert_eq!(
        first["reply"]["provenance"]["checks"]["template"],
        "welcome"
    );
    for answer in ["1", "1", "1", "yes"] {
        let r = say(&client, &app, session, answer).await;
        assert_eq!(r["outcome"], "replied", "{answer}: {r}");
    }

    let answer = say(
        &client,
        &app,
        session,
        "What should I eat to keep my blood sugar under control?",
    )
    .await;
    let reply = &answer["reply"];
    assert_eq!(reply["language"], "en", "{answer}");
    let source = reply["source"].as_str().unwrap();
    assert!(source == "model" || source == "article", "{answer}");
    assert!(
        !reply["provenance"]["content_version_ids"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    if source == "model" {
        let prompt = reply["provenance"]["prompt_version"].as_str().unwrap();
        assert!(prompt.starts_with("answer-v1"), "{answer}");
        assert_eq!(
            reply["provenance"]["model_id"]
                .as_str()
                .map(|m| !m.is_empty()),
            Some(true)
        );
    }

    let urgent = say(
        &client,
        &app,
        session,
        "I have chest pain and I can't breathe",
    )
    .await;
    assert_eq!(
        urgent["reply"]["provenance"]["checks"]["template"],
        "urgent"
    );

    // A retried request with the same client message id is answered once.
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let resp = client
            .post(format!("{}/api/v1/conversation/messages", app.base_url))
            .json(&json!({ "session": session, "text": "HELP", "client_message_id": "m-1" }))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap();
        outcomes.push(body["outcome"].as_str().unwrap().to_owned());
    }
    assert_eq!(outcomes, ["replied", "duplicate"]);

    let bad = client
        .post(format!("{}/api/v1/conversation/messages", app.base_url))
        .json(&json!({ "session": "short", "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("session"));
    let unknown_field = client
        .post(format!("{}/api/v1/conversation/messages", app.base_url))
        .json(&json!({ "session": session, "txt": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);

    app.signal_and_wait("TERM", Duration::from_secs(20))
        .unwrap();
    let logs = app.logs();
    assert!(
        logs.contains("conversation reply recorded"),
        "logs:\n{logs}"
    );
    assert!(
        !logs.contains("blood sugar under control"),
        "message text leaked into the logs"
    );
    assert!(
        !logs.contains(session),
        "the session id leaked into the logs"
    );
}
