//! A fake Telegram Bot API server for tests (feature `fake-telegram`): real HTTP on a free local
//! port, answering the methods careloop calls the way Telegram does. It records every sent
//! message, edit, callback answer and webhook change, serves queued updates to `getUpdates`, and
//! can be told to answer a chat's next calls with 429 (`retry_after`) or 403 (bot blocked).
//! Point teloxide at [`FakeTelegram::api_url`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{HashMap, VecDeque},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One recorded call that changed what a chat shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    Sent {
        chat_id: i64,
        message_id: i64,
        text: String,
        parse_mode: Option<String>,
        buttons: Vec<(String, String)>,
    },
    Edited {
        chat_id: i64,
        message_id: i64,
        text: String,
    },
}

impl Recorded {
    pub fn chat_id(&self) -> i64 {
        match self {
            Recorded::Sent { chat_id, .. } | Recorded::Edited { chat_id, .. } => *chat_id,
        }
    }
    pub fn text(&self) -> &str {
        match self {
            Recorded::Sent { text, .. } | Recorded::Edited { text, .. } => text,
        }
    }
}

/// What to answer a chat's next call with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    TooManyRequests { retry_after: u32 },
    Blocked,
    ServerError,
}

#[derive(Default)]
struct State {
    next_message_id: i64,
    log: Vec<Recorded>,
    /// Every request: (method, chat id if any).
    calls: Vec<(String, Option<i64>)>,
    failures: HashMap<i64, VecDeque<Failure>>,
    updates: VecDeque<Value>,
    webhook: Option<(String, Option<String>)>,
    callback_answers: Vec<String>,
}

/// The running fake. Stops when dropped.
pub struct FakeTelegram {
    state: Arc<Mutex<State>>,
    port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl FakeTelegram {
    /// Starts the server on a free port, on its own thread and runtime.
    pub fn start() -> FakeTelegram {
        let state = Arc::new(Mutex::new(State {
            next_message_id: 1000,
            ..State::default()
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake telegram");
        let port = listener.local_addr().expect("local addr").port();
        let data = web::Data::new(Arc::clone(&state));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(1 << 20))
                        .route("/bot{token}/{method}", web::post().to(handle))
                        .route("/bot{token}/{method}", web::get().to(handle))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                tx.send(server.handle()).expect("send handle");
                let _ = server.await;
            });
        });
        let handle = rx.recv().expect("fake telegram started");
        FakeTelegram {
            state,
            port,
            handle,
        }
    }

    /// The URL to give teloxide (`set_api_url`) or `channels.telegram.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Everything sent or edited, in order.
    pub fn log(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().log.clone()
    }

    /// Messages sent to (not edits in) one chat.
    pub fn sent_to(&self, chat: i64) -> Vec<Recorded> {
        self.log()
            .into_iter()
            .filter(|r| matches!(r, Recorded::Sent { chat_id, .. } if *chat_id == chat))
            .collect()
    }

    /// The text a chat shows now: each sent message with its latest edit applied.
    pub fn visible(&self, chat: i64) -> Vec<String> {
        let mut shown: Vec<(i64, String)> = Vec::new();
        for r in self.log() {
            match r {
                Recorded::Sent {
                    chat_id,
                    message_id,
                    text,
                    ..
                } if chat_id == chat => shown.push((message_id, text)),
                Recorded::Edited {
                    chat_id,
                    message_id,
                    text,
                } if chat_id == chat => {
                    if let Some(m) = shown.iter_mut().find(|(id, _)| *id == message_id) {
                        m.1 = text;
                    }
                }
                _ => {}
            }
        }
        shown.into_iter().map(|(_, t)| t).collect()
    }

    /// Calls of a method so far.
    pub fn calls(&self, method: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(m, _)| m.eq_ignore_ascii_case(method))
            .count()
    }

    /// The chat's next calls fail, in this order.
    pub fn fail_next(&self, chat: i64, failures: &[Failure]) {
        self.state
            .lock()
            .unwrap()
            .failures
            .entry(chat)
            .or_default()
            .extend(failures.iter().copied());
    }

    /// Queues an update for `getUpdates`.
    pub fn push_update(&self, update: Value) {
        self.state.lock().unwrap().updates.push_back(update);
    }

    /// The registered webhook: (url, secret token).
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.state.lock().unwrap().webhook.clone()
    }

    pub fn callback_answers(&self) -> Vec<String> {
        self.state.lock().unwrap().callback_answers.clone()
    }

    /// Waits until `done(self)` or `timeout`; returns whether it happened.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&FakeTelegram) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if done(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done(self)
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
    }
}

/// A message in a private chat, as an update.
pub fn text_update(update_id: u64, chat: i64, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Pat"},
            "from": {"id": chat, "is_bot": false, "first_name": "Pat"},
            "text": text,
        }
    })
}

/// A sticker in a private chat, as an update.
pub fn sticker_update(update_id: u64, chat: i64) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": "private", "first_name": "Pat"},
            "from": {"id": chat, "is_bot": false, "first_name": "Pat"},
            "sticker": {"file_id": "f", "file_unique_id": "u", "type": "regular",
                "width": 512, "height": 512, "is_animated": false, "is_video": false},
        }
    })
}

fn params(req: &HttpRequest, body: &[u8]) -> Value {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    } else if let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    {
        // multipart/form-data (teloxide sends setWebhook this way): text fields only.
        let text = String::from_utf8_lossy(body);
        let mut fields = serde_json::Map::new();
        for part in text.split(&format!("--{}", boundary.trim_matches('"'))) {
            let Some((head, value)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let Some(name) = head
                .split("name=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
            else {
                continue;
            };
            let value = value.trim_end_matches("\r\n");
            let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
            fields.insert(name.to_owned(), value);
        }
        Value::Object(fields)
    } else {
        let pairs: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        json!(pairs)
    }
}

fn ok(result: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"ok": true, "result": result}))
}

fn failure(f: Failure) -> HttpResponse {
    match f {
        Failure::TooManyRequests { retry_after } => HttpResponse::TooManyRequests().json(json!({
            "ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {retry_after}"),
            "parameters": {"retry_after": retry_after},
        })),
        Failure::Blocked => HttpResponse::Forbidden().json(json!({
            "ok": false, "error_code": 403,
            "description": "Forbidden: bot was blocked by the user",
        })),
        Failure::ServerError => HttpResponse::InternalServerError().json(json!({
            "ok": false, "error_code": 500,
            "description": "Internal Server Error",
        })),
    }
}

fn chat_of(p: &Value) -> Option<i64> {
    match p.get("chat_id")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn message(chat: i64, id: i64, text: &str) -> Value {
    json!({
        "message_id": id,
        "date": 1_700_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Pat"},
        "text": text,
    })
}

async fn handle(
    state: web::Data<Arc<Mutex<State>>>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (_token, method) = path.into_inner();
    let p = params(&req, &body);
    let chat = chat_of(&p);
    let method = method.to_ascii_lowercase();
    // getUpdates long-polls briefly, outside the lock.
    if method == "getupdates" {
        let offset = p.get("offset").and_then(Value::as_i64).unwrap_or(0);
        let wait = p.get("timeout").and_then(Value::as_u64).unwrap_or(0).min(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(wait);
        loop {
            {
                let mut s = state.lock().unwrap();
                s.calls.push((method.clone(), None));
                s.updates
                    .retain(|u| u.get("update_id").and_then(Value::as_i64).unwrap_or(0) >= offset);
                if !s.updates.is_empty() || std::time::Instant::now() >= deadline {
                    return ok(json!(s.updates.iter().cloned().collect::<Vec<_>>()));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut s = state.lock().unwrap();
    s.calls.push((method.clone(), chat));
    if let Some(chat) = chat
        && let Some(f) = s.failures.get_mut(&chat).and_then(VecDeque::pop_front)
    {
        return failure(f);
    }
    match method.as_str() {
        "getme" => ok(
            json!({"id": 123456, "is_bot": true, "first_name": "careloop", "username": "careloop_test_bot"}),
        ),
        "sendmessage" => {
            let Some(chat) = chat else {
                return HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat_id is empty"}));
            };
            let text = p
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if text.is_empty() {
                return HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400, "description": "Bad Request: message text is empty"}));
            }
            if unescaped_len(&text) > 4096 {
                return HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"}));
            }
            s.next_message_id += 1;
            let id = s.next_message_id;
            let buttons = p
                .pointer("/reply_markup/inline_keyboard")
                .and_then(Value::as_array)
                .map(|rows| {
                    rows.iter()
                        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                        .map(|b| {
                            (
                                b.get("text")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                                b.get("callback_data")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            s.log.push(Recorded::Sent {
                chat_id: chat,
                message_id: id,
                text: text.clone(),
                parse_mode: p
                    .get("parse_mode")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                buttons,
            });
            ok(message(chat, id, &text))
        }
        "editmessagetext" => {
            let (Some(chat), Some(id)) = (chat, p.get("message_id").and_then(Value::as_i64)) else {
                return HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"}));
            };
            let text = p
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let exists = s.log.iter().any(|r| matches!(r, Recorded::Sent { chat_id, message_id, .. } if *chat_id == chat && *message_id == id));
            if !exists {
                return HttpResponse::BadRequest().json(json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"}));
            }
            s.log.push(Recorded::Edited {
                chat_id: chat,
                message_id: id,
                text: text.clone(),
            });
            ok(message(chat, id, &text))
        }
        "answercallbackquery" => {
            let id = p
                .get("callback_query_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            s.callback_answers.push(id);
            ok(json!(true))
        }
        "setwebhook" => {
            let url = p
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let secret = p
                .get("secret_token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            s.webhook = Some((url, secret));
            ok(json!(true))
        }
        "deletewebhook" => {
            s.webhook = None;
            ok(json!(true))
        }
        _ => HttpResponse::NotFound().json(
            json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}),
        ),
    }
}

/// Length of a MarkdownV2 text after removing escapes (what Telegram counts).
fn unescaped_len(text: &str) -> usize {
    let mut n = 0;
    let mut escaped = false;
    for c in text.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        n += 1;
    }
    n
}
