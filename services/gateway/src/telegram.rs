//! Telegram inbound: the webhook route (`POST /channels/telegram/webhook`) and the long-polling
//! loop. Both only store the update (idempotent on `telegram:<bot id>:<update_id>`) and wake the
//! inbound processor; Telegram gets its 200 as soon as the update is safely in the database.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use careloop_channels::telegram::{MAX_UPDATE_BYTES, TelegramChannel, update_id, verify_secret};
use careloop_core::{ChannelKind, OrganizationId};
use careloop_store::{Inserted, Store};
use tokio_util::sync::CancellationToken;

use crate::{AppState, inbound::InboundWaker};

/// What the webhook route needs.
#[derive(Clone)]
pub struct TelegramWebhook {
    pub store: Store,
    pub organization_id: OrganizationId,
    pub bot_id: u64,
    /// Compared with `X-Telegram-Bot-Api-Secret-Token`.
    pub secret: String,
    pub waker: InboundWaker,
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/channels/telegram/webhook")
            .app_data(web::PayloadConfig::new(MAX_UPDATE_BYTES))
            .route(web::post().to(webhook)),
    );
}

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

async fn webhook(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(hook) = &state.telegram else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let presented = req
        .headers()
        .get("X-Telegram-Bot-Api-Secret-Token")
        .map(|v| v.as_bytes());
    if !verify_secret(&hook.secret, presented) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong secret token");
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body: not JSON");
    };
    let Some(id) = update_id(&value) else {
        return error(
            StatusCode::BAD_REQUEST,
            "update_id: missing or not a positive integer",
        );
    };
    match record(hook, id, value).await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "ok": true })),
        Err(e) => {
            tracing::error!(error = %e, "telegram webhook: storing the update failed");
            // Telegram retries on errors, so nothing is lost.
            error(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

async fn record(
    hook: &TelegramWebhook,
    update_id: u32,
    value: serde_json::Value,
) -> Result<(), careloop_store::StoreError> {
    let key = format!("telegram:{}:{update_id}", hook.bot_id);
    match hook
        .store
        .inbound_events()
        .record(hook.organization_id, ChannelKind::Telegram, &key, value)
        .await?
    {
        Inserted::New(_) => hook.waker.wake(),
        Inserted::Duplicate(_) => tracing::debug!(update_id, "telegram update seen before"),
    }
    Ok(())
}

/// Long polling for installs without a public URL: removes any webhook, then asks for updates
/// after the last one stored, until `shutdown`. Network failures back off up to a minute.
pub async fn poll(
    telegram: TelegramChannel,
    hook: TelegramWebhook,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    if let Err(e) = telegram.delete_webhook().await {
        tracing::warn!(error = %e, "telegram: deleting the webhook failed");
    }
    let mut offset: Option<i64> = None;
    let mut backoff = Duration::from_secs(1);
    tracing::info!("telegram long polling started");
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => break,
            r = telegram.get_updates(offset, timeout) => r,
        };
        match result {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                for update in updates {
                    let Some(id) = update_id(&update) else {
                        continue;
                    };
                    // Stored before the offset moves on: a crash re-reads, never loses.
                    loop {
                        match record(&hook, id, update.clone()).await {
                            Ok(()) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "telegram polling: storing failed");
                                tokio::select! {
                                    () = shutdown.cancelled() => return,
                                    () = tokio::time::sleep(backoff) => {}
                                }
                            }
                        }
                    }
                    offset = Some(offset.unwrap_or(0).max(i64::from(id) + 1));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "telegram getUpdates failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
    tracing::info!("telegram long polling stopped");
}
