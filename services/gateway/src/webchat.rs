//! The web chat over HTTP.
//!
//! - `POST /webchat/session` `{language?, level?}` → 201 `{session_id, token, expires_at}`: a new
//!   signed session. Preferences given here are applied once the visitor becomes a patient (their
//!   first message).
//! - `GET /webchat/events` (token in `Authorization: Bearer …` or `?token=`): the session's
//!   events as server-sent events, `id:` their sequence number, `data:` JSON
//!   (`{"type":"typing"|"draft"|"retract"|"message"|"error", …}`). `Last-Event-ID` (or
//!   `?last_event_id=`, the header winning) resumes after that event; `{"type":"gap"}` says some
//!   events after it can no longer be shown. A comment every 15 s keeps proxies from closing it.
//! - `POST /webchat/messages` `{text, client_message_id}` → 202: the engine answers in the
//!   background, the answer arriving as events (typing, drafts, the message). The same
//!   `client_message_id` twice is answered once (idempotency key `web_chat:<session>:<id>`).
//! - `POST /webchat/preferences` `{language?, level?}` → 200 with the confirmation: the patient's
//!   language or reading level changes (as the LANGUAGE / LEVEL commands do, recorded in the
//!   conversation), or, before the first message, is remembered for onboarding.
//! - `GET /webchat/widget.js`: the embeddable widget; `GET /chat`: the full-page chat.
//!
//! Errors are JSON `{"error": "<field>: <reason>", "field": "<field>"}`: 401 for a missing, bad
//! or expired token, 413 for a text over the engine's limit, 422 for a bad field. No log line
//! holds message text, session ids or tokens.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{Method, StatusCode, header},
    middleware::DefaultHeaders,
    web::{self, Bytes},
};
use careloop_channels::webchat::{
    ChatMessage, MessageSource, Preferences, SessionClaims, SessionEvent, SessionId, Subscription,
};
use careloop_conversation::{
    EngineSettings, Handled, Inbound, InboundContent, Reply, ReplyDelivery, ReplyEvent,
    ReplySource,
    commands::{self, Command},
};
use careloop_core::{Language, OrganizationId, ReadingLevel};
use careloop_store::{PatientPreferences, Store};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

pub use careloop_channels::webchat::{HubConfig, SigningKey, WebChatHub};

use crate::{AppState, ConversationState};

/// Largest request body of the web chat routes: a 2,000-character text, JSON-escaped.
const MAX_BODY_BYTES: usize = 32 * 1024;
/// Longest client message id.
const MAX_CLIENT_ID_CHARS: usize = 100;
/// How often a streamed draft is sent to the browser at most (tokens in between are batched).
const DRAFT_INTERVAL: Duration = Duration::from_millis(150);
/// A comment this often keeps an idle event stream open through proxies.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// What the browser shows when a message could not be answered.
const FAILED: &str = "Sorry, something went wrong. Please send your message again.";

const WIDGET_JS: &str = include_str!("../static/widget.js");
const CHAT_HTML: &str = include_str!("../static/chat.html");

/// The web chat of a gateway: the hub of open sessions and the store (to find the patient
/// behind a session).
#[derive(Clone, Debug)]
pub struct WebChatState {
    hub: WebChatHub,
    store: Store,
}

impl WebChatState {
    pub fn new(hub: WebChatHub, store: Store) -> WebChatState {
        WebChatState { hub, store }
    }

    /// The hub, which is also the web chat [`careloop_channels::Channel`] for the outbox.
    pub fn hub(&self) -> &WebChatHub {
        &self.hub
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/webchat")
            // Bearer tokens, no cookies: any site may embed the widget.
            .wrap(
                DefaultHeaders::new()
                    .add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            .service(with_preflight("/session", web::post().to(create_session)))
            .service(with_preflight("/events", web::get().to(events)))
            .service(with_preflight("/messages", web::post().to(post_message)))
            .service(with_preflight(
                "/preferences",
                web::post().to(set_preferences),
            ))
            .route("/widget.js", web::get().to(widget_js)),
    )
    .route("/chat", web::get().to(chat_page));
}

#[derive(Debug, thiserror::Error)]
enum WebChatError {
    #[error("token: {0}")]
    Unauthorized(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: {reason}")]
    TooLarge { field: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the web chat is not running in this process")]
    Unavailable,
    #[error("too many open chats; try again later")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl WebChatError {
    fn invalid(field: &str, reason: impl Into<String>) -> WebChatError {
        WebChatError::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<careloop_channels::webchat::HubError> for WebChatError {
    fn from(e: careloop_channels::webchat::HubError) -> Self {
        match e {
            careloop_channels::webchat::HubError::Full => WebChatError::Busy,
            other => WebChatError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl ResponseError for WebChatError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebChatError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebChatError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebChatError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebChatError::Conflict(_) => StatusCode::CONFLICT,
            WebChatError::Unavailable | WebChatError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            WebChatError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            WebChatError::Internal(e) => {
                tracing::error!(error = ?e, "web chat request failed");
                json!({ "error": "internal error" })
            }
            WebChatError::Unauthorized(_) => json!({ "error": self.to_string(), "field": "token" }),
            WebChatError::Invalid { field, .. } | WebChatError::TooLarge { field, .. } => {
                json!({ "error": self.to_string(), "field": field })
            }
            other => json!({ "error": other.to_string() }),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, WebChatError::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(body)
    }
}

/// The web chat and the engine, or 503 in a process without them.
fn services(state: &AppState) -> Result<(&WebChatState, &ConversationState), WebChatError> {
    match (&state.webchat, &state.conversation) {
        (Some(webchat), Some(conversation)) => Ok((webchat, conversation)),
        _ => Err(WebChatError::Unavailable),
    }
}

/// A query parameter, decoded.
fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The session of the request's token (`Authorization: Bearer` first, then `?token=`), which
/// must belong to this gateway's organization.
fn authenticate(
    req: &HttpRequest,
    webchat: &WebChatState,
    organization: OrganizationId,
) -> Result<SessionClaims, WebChatError> {
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let token = header_token
        .or_else(|| query_param(req, "token"))
        .ok_or_else(|| {
            WebChatError::Unauthorized(
                "missing: send Authorization: Bearer <token> (or ?token=)".into(),
            )
        })?;
    let claims = webchat
        .hub
        .verify(&token)
        .map_err(|e| WebChatError::Unauthorized(e.to_string()))?;
    if claims.organization_id != organization {
        return Err(WebChatError::Unauthorized(
            "the session belongs to another organization".into(),
        ));
    }
    Ok(claims)
}

/// A JSON object body with only the `allowed` fields (`None` for an empty body).
async fn read_body(
    mut payload: web::Payload,
    allowed: &[&str],
) -> Result<Option<Map<String, Value>>, WebChatError> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = payload
        .try_next()
        .await
        .map_err(|_| WebChatError::invalid("body", "could not be read"))?
    {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WebChatError::TooLarge {
                field: "body".into(),
                reason: format!("at most {MAX_BODY_BYTES} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(WebChatError::invalid("body", "must be a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(WebChatError::invalid(
            unknown,
            format!("unknown field; expected {}", allowed.join(", ")),
        ));
    }
    Ok(Some(map))
}

/// A string field: absent or null is `None`, another type is an error naming the field.
fn string_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, WebChatError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(WebChatError::invalid(name, "must be a string")),
    }
}

/// The `language` and `level` fields of a body.
fn preferences_field(body: Option<&Map<String, Value>>) -> Result<Preferences, WebChatError> {
    let Some(body) = body else {
        return Ok(Preferences::default());
    };
    let language = string_field(body, "language")?
        .map(|s| Language::from_str(&s))
        .transpose()
        .map_err(|e| WebChatError::invalid("language", e.reason.to_string()))?;
    let level = string_field(body, "level")?
        .map(|s| ReadingLevel::from_str(&s))
        .transpose()
        .map_err(|_| WebChatError::invalid("level", "must be one of: easy, standard"))?;
    Ok(Preferences { language, level })
}

async fn create_session(
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, WebChatError> {
    let (webchat, conversation) = services(&state)?;
    let body = read_body(payload, &["language", "level"]).await?;
    let preferences = preferences_field(body.as_ref())?;
    let issued = webchat.hub.issue(conversation.organization_id)?;
    if preferences != Preferences::default() {
        webchat
            .hub
            .remember_preferences(issued.session_id, preferences)?;
    }
    tracing::info!("web chat session created");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "session_id": issued.session_id.to_string(),
            "token": issued.token.as_str(),
            "expires_at": issued.expires_at,
            "language": preferences.language,
            "level": preferences.level,
        })))
}

/// The last event the browser saw: `Last-Event-ID` (set by EventSource when it reconnects)
/// before `?last_event_id=` (a reloaded page), 0 for none.
fn last_event_id(req: &HttpRequest) -> Result<u64, WebChatError> {
    let from_header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match from_header.or_else(|| query_param(req, "last_event_id")) {
        None => Ok(0),
        Some(s) if s.trim().is_empty() => Ok(0),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| WebChatError::invalid("last_event_id", "must be a whole number")),
    }
}

async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebChatError> {
    let (webchat, conversation) = services(&state)?;
    let claims = authenticate(&req, webchat, conversation.organization_id)?;
    let last_seen = last_event_id(&req)?;
    let subscription = webchat.hub.subscribe(claims.session_id, last_seen)?;
    tracing::debug!(
        backlog = subscription.backlog.len(),
        missed = subscription.missed,
        "web chat stream opened"
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(event_stream(subscription)))
}

/// The SSE body: a retry hint, a gap notice if events were lost, the backlog, then live events
/// and keep-alive comments. It ends when the hub drops a lagging browser (which reconnects);
/// the subscription lives as long as the stream.
fn event_stream(
    mut subscription: Subscription,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let mut head = String::from("retry: 2000\n\n");
    if subscription.missed {
        head.push_str("data: {\"type\":\"gap\"}\n\n");
    }
    for event in std::mem::take(&mut subscription.backlog) {
        head.push_str(&frame(event.seq, &event.event));
    }
    let keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    let live = futures::stream::unfold(
        (subscription, keep_alive),
        |(mut subscription, mut keep_alive)| async move {
            let bytes = tokio::select! {
                event = subscription.events.recv() => {
                    let event = event?;
                    Bytes::from(frame(event.seq, &event.event))
                }
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((bytes, (subscription, keep_alive)))
        },
    );
    futures::stream::once(async move { Bytes::from(head) })
        .chain(live)
        .map(Ok)
}

fn frame(seq: u64, event: &SessionEvent) -> String {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{\"type\":\"error\"}".into());
    format!("id: {seq}\ndata: {data}\n\n")
}

async fn post_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, WebChatError> {
    let (webchat, conversation) = services(&state)?;
    let claims = authenticate(&req, webchat, conversation.organization_id)?;
    let body = read_body(payload, &["text", "client_message_id"])
        .await?
        .ok_or_else(|| WebChatError::invalid("text", "is required"))?;
    let text =
        string_field(&body, "text")?.ok_or_else(|| WebChatError::invalid("text", "is required"))?;
    if text.trim().is_empty() {
        return Err(WebChatError::invalid("text", "must not be empty"));
    }
    let max_chars = EngineSettings::default().max_question_chars;
    if text.chars().count() > max_chars {
        return Err(WebChatError::TooLarge {
            field: "text".into(),
            reason: format!("at most {max_chars} characters"),
        });
    }
    let client_id = string_field(&body, "client_message_id")?
        .ok_or_else(|| WebChatError::invalid("client_message_id", "is required"))?;
    let id_ok = !client_id.is_empty()
        && client_id.chars().count() <= MAX_CLIENT_ID_CHARS
        && client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !id_ok {
        return Err(WebChatError::invalid(
            "client_message_id",
            format!(
                "must be 1-{MAX_CLIENT_ID_CHARS} characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
            ),
        ));
    }
    let session = claims.session_id;
    let inbound = Inbound {
        organization_id: conversation.organization_id,
        address: session.address(),
        content: InboundContent::Text(text),
        idempotency_key: Some(format!("web_chat:{session}:{client_id}")),
        reply: held_reply(),
        rate_limited: false,
    };
    let (webchat, conversation) = (webchat.clone(), conversation.clone());
    actix_web::rt::spawn(async move { answer(webchat, conversation, session, inbound).await });
    Ok(HttpResponse::Accepted().json(json!({ "accepted": true, "client_message_id": client_id })))
}

/// Runs the engine on one message, one answer per session at a time: typing, the draft as it
/// streams, then the recorded reply (or a retraction when there is none).
async fn answer(
    webchat: WebChatState,
    conversation: ConversationState,
    session: SessionId,
    inbound: Inbound,
) {
    let hub = &webchat.hub;
    let Ok(turn) = hub.turn_lock(session) else {
        tracing::warn!("web chat message dropped: too many open sessions");
        return;
    };
    let _turn = turn.lock().await;
    let started = Instant::now();
    let _ = hub.publish(session, SessionEvent::Typing);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = &conversation.engine;
    let handled = async move {
        let handled = engine.handle(inbound, Some(&tx)).await;
        drop(tx);
        handled
    };
    let (handled, ()) = tokio::join!(handled, stream_drafts(hub, session, rx));
    match handled {
        Ok(Handled::Replied(reply)) => {
            let delivered = publish_reply(hub, session, &reply);
            settle(&conversation, &reply, delivered).await;
        }
        Ok(Handled::NoReply { .. } | Handled::Duplicate) => {
            let _ = hub.publish(session, SessionEvent::Retract);
        }
        Err(e) => {
            tracing::error!(error = %e, "web chat message could not be answered");
            let _ = hub.publish(
                session,
                SessionEvent::Error {
                    text: FAILED.into(),
                },
            );
        }
    }
    if let Some(preferences) = hub.take_preferences(session)
        && let Err(e) = apply_remembered(&webchat, &conversation, session, preferences).await
    {
        tracing::error!(error = ?e, "remembered web chat preferences not applied");
    }
    tracing::info!(
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "web chat message handled"
    );
}

/// Forwards the engine's drafts (the whole text so far, at most every [`DRAFT_INTERVAL`]) and
/// retractions until the engine is done. The final reply is published by the caller.
async fn stream_drafts(
    hub: &WebChatHub,
    session: SessionId,
    mut rx: UnboundedReceiver<ReplyEvent>,
) {
    let mut draft = String::new();
    let mut dirty = false;
    let mut last_sent: Option<tokio::time::Instant> = None;
    let publish_draft = |draft: &str| {
        let _ = hub.publish(
            session,
            SessionEvent::Draft {
                text: draft.to_owned(),
            },
        );
    };
    loop {
        let flush_at = last_sent.map_or_else(tokio::time::Instant::now, |t| t + DRAFT_INTERVAL);
        tokio::select! {
            event = rx.recv() => match event {
                None => break,
                Some(ReplyEvent::Draft(text)) => {
                    draft.push_str(&text);
                    dirty = true;
                    if tokio::time::Instant::now() >= flush_at {
                        publish_draft(&draft);
                        dirty = false;
                        last_sent = Some(tokio::time::Instant::now());
                    }
                }
                Some(ReplyEvent::Retract) => {
                    draft.clear();
                    dirty = false;
                    let _ = hub.publish(session, SessionEvent::Retract);
                    // The engine goes on (a stricter attempt or approved content).
                    let _ = hub.publish(session, SessionEvent::Typing);
                }
                Some(ReplyEvent::Final(_)) => dirty = false,
            },
            () = tokio::time::sleep_until(flush_at), if dirty => {
                publish_draft(&draft);
                dirty = false;
                last_sent = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// A reply this gateway publishes itself: the outbox holds it meanwhile (another replica, which
/// does not hold the session, must not take it) and [`settle`] records the delivery.
fn held_reply() -> ReplyDelivery {
    ReplyDelivery {
        meta: None,
        hold: Some(std::time::Duration::from_secs(300)),
    }
}

/// Records a reply published to the session as sent (delivered when a browser had it) with its
/// delivery attempt, like the outbox does for the channels it sends itself. If this fails the
/// hold runs out and the outbox sends it (the hub skips a message already in the session).
async fn settle(conversation: &ConversationState, reply: &Reply, delivered: Option<bool>) {
    let Some(delivered) = delivered else {
        return;
    };
    if let Err(e) = crate::settle_direct(
        &conversation.store,
        conversation.organization_id,
        reply.message_id,
        delivered,
    )
    .await
    {
        tracing::warn!(message_id = %reply.message_id, error = %e, "web chat reply not settled");
    }
}

fn publish_reply(hub: &WebChatHub, session: SessionId, reply: &Reply) -> Option<bool> {
    let message = ChatMessage {
        message_id: reply.message_id,
        text: reply.text.clone(),
        language: Some(reply.language),
        source: match reply.source {
            ReplySource::Model => MessageSource::Model,
            ReplySource::Article => MessageSource::Article,
            ReplySource::Template(_) => MessageSource::Template,
        },
        buttons: Vec::new(),
    };
    match hub.publish(session, SessionEvent::Message(message)) {
        Ok(published) => {
            tracing::info!(
                message_id = %reply.message_id,
                source = reply.source.as_str(),
                delivered = published.delivered,
                "web chat reply published"
            );
            Some(published.delivered)
        }
        Err(e) => {
            tracing::warn!(message_id = %reply.message_id, error = %e, "web chat reply not published");
            None
        }
    }
}

/// Preferences chosen before the first message, applied to the patient that message created.
async fn apply_remembered(
    webchat: &WebChatState,
    conversation: &ConversationState,
    session: SessionId,
    preferences: Preferences,
) -> anyhow::Result<()> {
    let org = conversation.organization_id;
    let Some(identity) = webchat
        .store
        .channel_identities()
        .find_by_address(org, &session.address())
        .await?
    else {
        // No patient yet (the message failed): keep them for the next one.
        webchat.hub.remember_preferences(session, preferences)?;
        return Ok(());
    };
    let patients = webchat.store.patients();
    let Some(patient) = patients.get(org, identity.patient_id).await? else {
        return Ok(());
    };
    patients
        .update_preferences(
            org,
            patient.id,
            &PatientPreferences {
                language: preferences.language.unwrap_or(patient.language),
                reading_level: preferences.level.unwrap_or(patient.reading_level),
                timezone: patient.timezone,
                quiet_hours: patient.quiet_hours,
            },
        )
        .await?;
    tracing::info!(patient_id = %patient.id, "remembered web chat preferences applied");
    Ok(())
}

async fn set_preferences(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, WebChatError> {
    let (webchat, conversation) = services(&state)?;
    let claims = authenticate(&req, webchat, conversation.organization_id)?;
    let body = read_body(payload, &["language", "level"]).await?;
    let preferences = preferences_field(body.as_ref())?;
    if preferences == Preferences::default() {
        return Err(WebChatError::invalid(
            "language",
            "give a language, a level or both",
        ));
    }
    let session = claims.session_id;
    let org = conversation.organization_id;
    let linked = webchat
        .store
        .channel_identities()
        .find_by_address(org, &session.address())
        .await
        .map_err(anyhow::Error::new)?
        .is_some();
    if !linked {
        webchat.hub.remember_preferences(session, preferences)?;
        return Ok(HttpResponse::Ok().json(json!({
            "applied": "remembered",
            "language": preferences.language,
            "level": preferences.level,
            "confirmation": Value::Null,
        })));
    }
    // The same path as the patient typing LANGUAGE / LEVEL: the change and its confirmation
    // are recorded in the conversation, and the confirmation is shown in the chat.
    let lexicons = conversation.engine.lexicons();
    let wanted = [
        preferences.language.map(|l| Command::Language(Some(l))),
        preferences.level.map(|l| Command::Level(Some(l))),
    ];
    let mut confirmations = Vec::new();
    for command in wanted.into_iter().flatten() {
        let text = command_text(lexicons, command)
            .ok_or_else(|| anyhow::anyhow!("no lexicon has words for the command {command:?}"))?;
        let inbound = Inbound {
            organization_id: org,
            address: session.address(),
            content: InboundContent::Text(text),
            idempotency_key: None,
            reply: held_reply(),
            rate_limited: false,
        };
        match conversation
            .engine
            .handle(inbound, None)
            .await
            .map_err(anyhow::Error::new)?
        {
            Handled::Replied(reply) => {
                let delivered = publish_reply(&webchat.hub, session, &reply);
                settle(conversation, &reply, delivered).await;
                confirmations.push(reply.text);
            }
            Handled::NoReply { .. } => {
                return Err(WebChatError::Conflict(
                    "preferences: this chat has opted out of messages; send START to opt in again"
                        .into(),
                ));
            }
            Handled::Duplicate => {}
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "applied": "patient",
        "language": preferences.language,
        "level": preferences.level,
        "confirmation": confirmations.join("\n\n"),
    })))
}

/// The words of a LANGUAGE / LEVEL command as a patient would type them, taken from the
/// lexicons (`language english`), checked to mean exactly `command`.
fn command_text(
    lexicons: &careloop_conversation::lexicon::Lexicons,
    command: Command,
) -> Option<String> {
    let name = match command {
        Command::Language(Some(l)) => l.code(),
        Command::Level(Some(l)) => l.as_str(),
        _ => return None,
    };
    lexicons.in_order(Language::English).find_map(|lexicon| {
        let verbs = match command {
            Command::Language(_) => &lexicon.commands.language,
            _ => &lexicon.commands.level,
        };
        let verb = verbs.phrases.first()?;
        lexicon
            .names
            .get(name)?
            .phrases
            .iter()
            .map(|n| format!("{} {}", verb.text, n.text))
            .find(|text| {
                commands::command(lexicons, text, Language::English).map(|(c, _)| c)
                    == Some(command)
            })
    })
}

async fn widget_js() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(WIDGET_JS)
}

async fn chat_page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(CHAT_HTML)
}

/// A route that a widget on another site may call (CORS preflight included).
fn with_preflight(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .route(web::method(Method::OPTIONS).to(preflight))
}

/// CORS preflight for the widget on another site.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type, Last-Event-ID",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}
