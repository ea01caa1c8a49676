//! The web chat through the real gateway process with the real SmolLM2 model: the HTTP contract
//! (sessions, tokens, server-sent events resumed with Last-Event-ID, idempotent messages, field
//! errors, preferences), then the widget in Debian's chromium (`tests/browser/webchat.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use careloop_e2e::{Careloop, workspace_root};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Reads server-sent events from a streaming response.
struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

/// One event: its `id:` (if any) and its JSON `data:`.
#[derive(Debug, Clone)]
struct Event {
    id: Option<u64>,
    data: Value,
}

impl Sse {
    async fn open(client: &reqwest::Client, base: &str, token: &str, last: Option<u64>) -> Sse {
        let mut request = client
            .get(format!("{base}/webchat/events"))
            .bearer_auth(token);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` if none comes within `timeout`. Comments are skipped.
    async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let frame = String::from_utf8(frame).unwrap();
                let mut id = None;
                let mut data = None;
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let Some(data) = data {
                    return Some(Event { id, data });
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .ok()?;
            let chunk = chunk.unwrap()?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Events until one of `kind` arrives (inclusive), within `timeout`.
    async fn until(&mut self, kind: &str, timeout: Duration) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next(left).await else {
                panic!("no {kind} event within {timeout:?}; got {events:?}");
            };
            let done = event.data["type"] == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Everything that arrives within `window`.
    async fn drain(&mut self, window: Duration) -> Vec<Event> {
        let deadline = Instant::now() + window;
        let mut events = Vec::new();
        while let Some(event) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            events.push(event);
        }
        events
    }
}

async fn new_session(client: &reqwest::Client, base: &str, body: Value) -> (String, String) {
    let resp = client
        .post(format!("{base}/webchat/session"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let session = body["session_id"].as_str().unwrap().to_owned();
    assert_eq!(session.len(), 32, "{body}");
    assert!(body["expires_at"].as_str().is_some(), "{body}");
    (session, body["token"].as_str().unwrap().to_owned())
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let resp = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn messages(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.data["type"] == "message")
        .collect()
}

#[tokio::test]
async fn the_web_chat_works_over_http_and_in_a_browser() {
    // Fail, not skip: the set-up step installs these.
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: ./careloop.sh test installs it (setup_browser), or run apt-get install --no-install-recommends chromium"
    );
    let browser_dir = workspace_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: ./careloop.sh test installs it (setup_browser), or run npm ci --prefix tests/browser"
    );

    let started = Instant::now();
    let mut app = Careloop::start(&["serve"], &[]).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    let base = app.base_url.clone();
    let client = reqwest::Client::new();
    let mut secrets = Vec::new();

    // Static assets.
    let widget = client
        .get(format!("{base}/webchat/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(widget.status(), 200);
    assert!(
        widget.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let widget = widget.text().await.unwrap();
    assert!(
        widget.len() < 20 * 1024,
        "widget.js is {} bytes",
        widget.len()
    );
    let page = client.get(format!("{base}/chat")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/webchat/widget.js"));
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{base}/webchat/messages"))
        .header("Origin", "http://clinic.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");

    // Sessions and tokens.
    let (session, token) = new_session(&client, &base, json!({})).await;
    secrets.extend([session.clone(), token.clone()]);
    let bad = client
        .post(format!("{base}/webchat/session"))
        .json(&json!({ "language": "xx" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "language");
    let no_token = client
        .get(format!("{base}/webchat/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(no_token.json::<Value>().await.unwrap()["field"], "token");
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let (status, body) = post(
        &client,
        &base,
        "/webchat/messages",
        &tampered,
        json!({ "text": "hi", "client_message_id": "a" }),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // Field errors name the field.
    for (body, status, field) in [
        (json!({ "client_message_id": "a" }), 422, "text"),
        (
            json!({ "text": "  ", "client_message_id": "a" }),
            422,
            "text",
        ),
        (
            json!({ "text": "x".repeat(2001), "client_message_id": "a" }),
            413,
            "text",
        ),
        (json!({ "text": "hi" }), 422, "client_message_id"),
        (
            json!({ "text": "hi", "client_message_id": "no spaces" }),
            422,
            "client_message_id",
        ),
        (
            json!({ "text": "hi", "client_message_id": "a", "txt": 1 }),
            422,
            "txt",
        ),
        (json!({ "text": 5, "client_message_id": "a" }), 422, "text"),
    ] {
        let (got, response) = post(&client, &base, "/webchat/messages", &token, body).await;
        assert_eq!(got, status, "{response}");
        assert_eq!(response["field"], field, "{response}");
    }

    // A message streams typing, then the recorded reply; a retry with the same id is answered once.
    let mut stream = Sse::open(&client, &base, &token, None).await;
    let (status, body) = post(
        &client,
        &base,
        "/webchat/messages",
        &token,
        json!({ "text": "Hello", "client_message_id": "m-1" }),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let first = stream.until("message", Duration::from_secs(60)).await;
    assert_eq!(first[0].data["type"], "typing", "{first:?}");
    let welcome = messages(&first)[0].clone();
    assert!(
        welcome.data["text"]
            .as_str()
            .unwrap()
            .contains("1. English")
    );
    assert_eq!(welcome.data["source"], "template");
    let ids: Vec<u64> = first.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (status, _) = post(
        &client,
        &base,
        "/webchat/messages",
        &token,
        json!({ "text": "Hello", "client_message_id": "m-1" }),
    )
    .await;
    assert_eq!(status, 202);
    let retried = stream.drain(Duration::from_secs(3)).await;
    assert!(messages(&retried).is_empty(), "answered twice: {retried:?}");
    drop(stream);

    // Reconnecting after the typing notice resumes with the reply, exactly once; after the
    // reply, with nothing old.
    let mut resumed = Sse::open(&client, &base, &token, Some(ids[0])).await;
    let backlog = resumed.drain(Duration::from_secs(1)).await;
    let again = messages(&backlog);
    assert_eq!(again.len(), 1, "{backlog:?}");
    assert_eq!(again[0].id, welcome.id);
    assert_eq!(again[0].data["message_id"], welcome.data["message_id"]);
    assert!(backlog.iter().all(|e| e.id.is_none_or(|id| id > ids[0])));
    drop(resumed);
    let mut current = Sse::open(&client, &base, &token, welcome.id).await;
    let nothing_old = current.drain(Duration::from_secs(1)).await;
    assert!(messages(&nothing_old).is_empty(), "{nothing_old:?}");

    // Preferences of the patient: recorded and confirmed like the LANGUAGE command.
    let (status, body) = post(
        &client,
        &base,
        "/webchat/preferences",
        &token,
        json!({ "language": "es" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], "patient");
    assert!(
        body["confirmation"].as_str().unwrap().contains("Español"),
        "{body}"
    );
    let confirmed = current.until("message", Duration::from_secs(30)).await;
    assert_eq!(
        messages(&confirmed)[0].data["language"],
        "es",
        "{confirmed:?}"
    );
    let (status, body) = post(
        &client,
        &base,
        "/webchat/preferences",
        &token,
        json!({ "level": "hard" }),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("level")));
    drop(current);
    // Before the first message they are remembered for onboarding.
    let (other_session, other) = new_session(&client, &base, json!({ "level": "standard" })).await;
    secrets.extend([other_session, other.clone()]);
    let (status, body) = post(
        &client,
        &base,
        "/webchat/preferences",
        &other,
        json!({ "language": "fr" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], "remembered");
    // ...and applied once the first message has made the visitor a patient.
    let mut stream = Sse::open(&client, &base, &other, None).await;
    for (id, text) in [("o-1", "Hello there"), ("o-2", "help")] {
        let (status, body) = post(
            &client,
            &base,
            "/webchat/messages",
            &other,
            json!({ "text": text, "client_message_id": id }),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let events = stream.until("message", Duration::from_secs(60)).await;
        if id == "o-2" {
            assert_eq!(messages(&events)[0].data["language"], "fr", "{events:?}");
        }
    }
    drop(stream);
    let http_done = started.elapsed();

    // The widget in a real browser.
    let browser_started = Instant::now();
    let output = Command::new("node")
        .arg(browser_dir.join("webchat.mjs"))
        .arg(&base)
        .output()
        .expect("node runs (install Node.js 20+)");
    let browser_log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{browser_log}\ncareloop logs:\n{}",
        output.status,
        app.logs()
    );
    eprintln!("{browser_log}");

    // Every web chat reply went through the outbox: none is left queued, and every one records
    // its delivery to the browser.
    let store = app.store().await.unwrap();
    let mut queued = u64::MAX;
    for _ in 0..100 {
        queued = store
            .outbox()
            .queued_count(Some(careloop_core::ChannelKind::WebChat))
            .await
            .unwrap();
        if queued == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued, 0, "web chat replies left in the outbox");

    app.signal_and_wait("TERM", Duration::from_secs(20))
        .unwrap();
    let logs = app.logs();
    assert!(logs.contains("web chat reply published"), "logs:\n{logs}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a session id or token leaked into the logs"
        );
    }
    for text in ["blood sugar under control", "1. English"] {
        assert!(
            !logs.contains(text),
            "message text leaked into the logs: {text}"
        );
    }
    eprintln!(
        "web chat e2e: HTTP checks {:?} (with start-up), browser {:?}, total {:?}",
        http_done,
        browser_started.elapsed(),
        started.elapsed()
    );
}
