//! The careloop HTTP server.
//!
//! Every process serves `/healthz` (alive) and `/readyz` (its dependencies are usable); the gateway
//! role mounts the channel, web chat and staff routes on the same server. Shaped like zero2prod:
//! [`Application::build`] binds (port 0 in tests), [`Application::port`] reports the port and
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM or [`StopHandle::stop`].

mod conversation;
pub mod email;
mod health;
pub mod inbound;
pub mod telegram;
pub mod webchat;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};

pub use health::{ProbeFuture, ReadinessCheck};

/// Largest JSON body any route accepts.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub shutdown_timeout: Duration,
}

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub readiness: Arc<Vec<ReadinessCheck>>,
    /// The conversation engine, in processes that run the gateway role.
    pub conversation: Option<ConversationState>,
    /// The web chat (sessions and their event streams), in processes that run the gateway role.
    pub webchat: Option<webchat::WebChatState>,
    /// The Telegram webhook, when Telegram is enabled in webhook mode.
    pub telegram: Option<telegram::TelegramWebhook>,
    /// Email inbound and unsubscribe routes, when email is enabled.
    pub email: Option<email::EmailRoutes>,
    /// Requests one client IP may make to the public patient routes (`/api/`, `/webchat/`).
    pub per_ip: Option<careloop_channels::ratelimit::KeyedLimiter<std::net::IpAddr>>,
}

impl AppState {
    /// Health and readiness only; the other parts are added by the roles a process runs.
    pub fn new(readiness: Vec<ReadinessCheck>) -> AppState {
        AppState {
            readiness: Arc::new(readiness),
            conversation: None,
            webchat: None,
            telegram: None,
            email: None,
            per_ip: None,
        }
    }
}

/// Settles a reply a route delivered itself (the JSON API's response, a web chat session) the
/// way the outbox settles what it sends: status `sent` or `delivered` and a delivery attempt.
pub(crate) async fn settle_direct(
    store: &careloop_store::Store,
    org: careloop_core::OrganizationId,
    message: careloop_core::MessageId,
    delivered: bool,
) -> Result<(), careloop_store::StoreError> {
    store
        .outbox()
        .mark_sent(org, message, None, delivered)
        .await?;
    let outcome = if delivered {
        careloop_core::DeliveryOutcome::Delivered
    } else {
        careloop_core::DeliveryOutcome::Sent
    };
    store
        .delivery_attempts()
        .record(
            org,
            careloop_store::NewDeliveryAttempt {
                message_id: message,
                outcome,
                error: None,
                provider_message_id: None,
            },
        )
        .await?;
    Ok(())
}

/// Refuses a client over its per-IP rate on the public patient routes (their POSTs and the web
/// chat event stream) with 429 and `Retry-After`; provider webhooks, health checks and static
/// assets are not limited. The peer address is the
/// client: behind a reverse proxy, limit there.
async fn limit_per_ip(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let path = req.path();
    // Writes and event streams; static assets (the widget script) are not counted.
    let counted = req.method() != actix_web::http::Method::GET || path == "/webchat/events";
    let public = counted && (path.starts_with("/api/") || path.starts_with("/webchat/"));
    let limiter = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.per_ip.clone());
    if let (true, Some(limiter), Some(peer)) = (public, limiter, req.peer_addr())
        && let Err(wait) = limiter.check(&peer.ip())
    {
        let secs = wait.as_secs().max(1);
        let response = HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", secs.to_string()))
            .json(serde_json::json!({
                "error": "too many requests from this address: please wait a moment",
                "retry_after_secs": secs,
            }));
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req).await.map(|res| res.map_into_left_body())
}

/// The engine and the organization whose patients this gateway serves.
#[derive(Clone)]
pub struct ConversationState {
    pub engine: Arc<careloop_conversation::ConversationEngine>,
    pub organization_id: careloop_core::OrganizationId,
    pub store: careloop_store::Store,
}

pub struct Application {
    port: u16,
    server: Server,
}

/// Stops a running [`Application`] gracefully from elsewhere in the process.
#[derive(Clone)]
pub struct StopHandle(actix_web::dev::ServerHandle);

impl StopHandle {
    pub async fn stop(&self) {
        self.0.stop(true).await;
    }
}

impl Application {
    pub fn build(config: &ServerConfig, state: AppState) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((config.host.as_str(), config.port)).map_err(|e| {
            anyhow::anyhow!("cannot listen on {}:{}: {e}", config.host, config.port)
        })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::JsonConfig::default().limit(MAX_JSON_BYTES))
                // Method and path only: a query string may hold a web chat token.
                .wrap(
                    actix_web::middleware::Logger::new("%{route}xi %s %Dms")
                        .custom_request_replace("route", |req| {
                            format!("{} {}", req.method(), req.path())
                        })
                        .exclude("/healthz"),
                )
                .wrap(actix_web::middleware::from_fn(limit_per_ip))
                .configure(health::routes)
                .configure(conversation::routes)
                .configure(webchat::routes)
                .configure(telegram::routes)
                .configure(email::routes)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .disable_signals()
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.server.handle())
    }

    /// Serves until stopped through a [`StopHandle`]; the caller owns signal handling.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({ "error": "not found" }))
}
