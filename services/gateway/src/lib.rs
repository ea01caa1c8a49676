//! The careloop HTTP server.
//!
//! Every process serves `/healthz` (alive) and `/readyz` (its dependencies are usable); the gateway
//! role mounts the channel, web chat and staff routes on the same server. Shaped like zero2prod:
//! [`Application::build`] binds (port 0 in tests), [`Application::port`] reports the port and
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM or [`StopHandle::stop`].

mod conversation;
pub mod email;
mod health;
pub mod webchat;
pub mod inbound;
pub mod telegram;

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
