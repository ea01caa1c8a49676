//! Email inbound and unsubscribe routes, and the IMAP polling loop.
//!
//! - `POST /channels/email/inbound`: raw MIME in the body (how mail providers post inbound mail),
//!   signed in `X-Careloop-Signature` (`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
//!   five minutes of tolerance). Unsigned or stale → 401; unparseable MIME → 422 naming what is
//!   wrong; too large → 413. The mail is stored as an inbound event keyed by its `Message-ID`
//!   (a redelivery is stored once) and processed after the 200.
//! - `GET /channels/email/unsubscribe?token=…` shows a confirmation button; `POST` (the RFC 8058
//!   one-click request mail clients send, or that button) opts the patient out of email.
//! - [`poll_imap`]: unseen mail from a mailbox goes the same way; a message is marked seen only
//!   after it was stored.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use base64::Engine as _;
use careloop_channels::email::{
    EmailParseError, ImapPoller, MAX_INBOUND_BYTES, WEBHOOK_SIGNATURE_HEADER, parse_inbound,
    verify_unsubscribe_token, verify_webhook_signature,
};
use careloop_core::{ChannelKind, OrganizationId};
use careloop_store::{Inserted, Store, StoreError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{AppState, inbound::InboundWaker};

/// What the email routes need.
#[derive(Clone)]
pub struct EmailRoutes {
    pub store: Store,
    pub organization_id: OrganizationId,
    /// The inbound webhook is served only with a secret.
    pub webhook_secret: Option<String>,
    /// Key of the unsubscribe tokens (the email channel's signing key).
    pub signing_key: Vec<u8>,
    pub waker: InboundWaker,
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/channels/email/inbound")
            .app_data(web::PayloadConfig::new(MAX_INBOUND_BYTES))
            .route(web::post().to(inbound)),
    )
    .service(
        web::resource("/channels/email/unsubscribe")
            .route(web::get().to(unsubscribe_page))
            .route(web::post().to(unsubscribe)),
    );
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}

async fn inbound(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(routes) = &state.email else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Some(secret) = &routes.webhook_secret else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let header = req
        .headers()
        .get(WEBHOOK_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(e) = verify_webhook_signature(secret.as_bytes(), header, &body, chrono::Utc::now()) {
        return error(
            StatusCode::UNAUTHORIZED,
            &format!("{WEBHOOK_SIGNATURE_HEADER}: {e}"),
        );
    }
    match store_mail(routes, &body).await {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "ok": true })),
        Err(StoreMailError::Parse(e @ EmailParseError::TooLarge { .. })) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string())
        }
        Err(StoreMailError::Parse(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(StoreMailError::Store(e)) => {
            tracing::error!(error = %e, "email inbound: storing failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StoreMailError {
    #[error(transparent)]
    Parse(EmailParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses (to refuse what can never be processed, and to key it by `Message-ID`) and stores one
/// raw mail. `Ok(false)` when the same `Message-ID` was stored before.
async fn store_mail(routes: &EmailRoutes, raw: &[u8]) -> Result<bool, StoreMailError> {
    let mail = parse_inbound(raw).map_err(StoreMailError::Parse)?;
    let key = format!("email:{}", mail.message_id);
    let payload = serde_json::json!({
        "mime_b64": base64::engine::general_purpose::STANDARD.encode(raw),
    });
    let inserted = routes
        .store
        .inbound_events()
        .record(routes.organization_id, ChannelKind::Email, &key, payload)
        .await?;
    Ok(match inserted {
        Inserted::New(_) => {
            routes.waker.wake();
            true
        }
        Inserted::Duplicate(_) => false,
    })
}

#[derive(Deserialize)]
struct TokenQuery {
    token: String,
}

async fn unsubscribe_page(
    state: web::Data<AppState>,
    query: Option<web::Query<TokenQuery>>,
) -> HttpResponse {
    let Some(routes) = &state.email else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Some(query) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "This unsubscribe link is incomplete.",
        );
    };
    if verify_unsubscribe_token(&routes.signing_key, &query.token).is_err() {
        return page(
            StatusCode::BAD_REQUEST,
            "This unsubscribe link is not valid.",
        );
    }
    let token = html_escape(&query.token);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>Unsubscribe</title><main><h1>Stop emails from your care team?</h1>\
             <form method=\"post\" action=\"/channels/email/unsubscribe?token={token}\">\
             <button type=\"submit\">Stop emails</button></form></main></html>"
        ))
}

async fn unsubscribe(
    state: web::Data<AppState>,
    query: Option<web::Query<TokenQuery>>,
) -> HttpResponse {
    let Some(routes) = &state.email else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Some(query) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "This unsubscribe link is incomplete.",
        );
    };
    let Ok((org, patient)) = verify_unsubscribe_token(&routes.signing_key, &query.token) else {
        return page(
            StatusCode::BAD_REQUEST,
            "This unsubscribe link is not valid.",
        );
    };
    match routes
        .store
        .patients()
        .set_channel_opt_out(org, patient, ChannelKind::Email, true)
        .await
    {
        Ok(_) => {
            tracing::info!(organization_id = %org, patient_id = %patient, "email unsubscribe");
            page(
                StatusCode::OK,
                "You will get no more emails from careloop. You can still write to your care team.",
            )
        }
        Err(StoreError::NotFound { .. }) => page(
            StatusCode::NOT_FOUND,
            "This unsubscribe link is no longer valid.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "email unsubscribe failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again in a minute.",
            )
        }
    }
}

fn page(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>careloop</title><main><p>{}</p></main></html>",
            html_escape(text)
        ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Polls an IMAP mailbox every `interval` until `shutdown`: each unseen mail is stored (or
/// refused, if it can never be processed) and only then marked seen.
pub async fn poll_imap(
    poller: ImapPoller,
    routes: EmailRoutes,
    interval: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!("imap polling started");
    loop {
        match poller.fetch_unseen().await {
            Ok(mails) => {
                let mut done = Vec::new();
                for mail in mails {
                    match store_mail(&routes, &mail.raw).await {
                        Ok(_) => done.push(mail.uid),
                        Err(StoreMailError::Parse(e)) => {
                            tracing::info!(uid = mail.uid, error = %e, "imap: mail refused");
                            done.push(mail.uid);
                        }
                        Err(StoreMailError::Store(e)) => {
                            tracing::warn!(error = %e, "imap: storing failed; will fetch again");
                        }
                    }
                }
                if !done.is_empty()
                    && let Err(e) = poller.mark_seen(&done).await
                {
                    tracing::warn!(error = %e, "imap: marking seen failed (duplicates are ignored)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "imap: fetching failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    tracing::info!("imap polling stopped");
}
