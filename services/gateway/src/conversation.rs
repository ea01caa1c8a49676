//! `POST /api/v1/conversation/messages`: the conversation engine over plain HTTP, as a web chat
//! session talks to it. One JSON request in, the recorded reply out. (Streaming, signed session
//! tokens and the widget come with the web chat channel.)

use actix_web::{HttpResponse, ResponseError, http::StatusCode, web};
use careloop_conversation::{Handled, Inbound, InboundContent, ReplyDelivery};
use careloop_core::ChannelKind;
use careloop_store::ChannelAddress;
use serde::{Deserialize, Serialize};

use crate::AppState;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/v1/conversation/messages",
        web::post().to(post_message),
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    /// The web chat session: an opaque id the client keeps (at least 16 characters).
    session: String,
    text: String,
    /// The client's id for this message: a retry with the same id is answered once.
    #[serde(default)]
    client_message_id: Option<String>,
}

#[derive(Serialize)]
struct MessageOut {
    /// `replied`, `no_reply` or `duplicate`.
    outcome: &'static str,
    reply: Option<ReplyOut>,
}

#[derive(Serialize)]
struct ReplyOut {
    message_id: String,
    text: String,
    language: String,
    /// `model`, `article` or `template`.
    source: &'static str,
    provenance: careloop_store::Provenance,
}

#[derive(Debug, thiserror::Error)]
enum ConversationApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("the conversation service is not running in this process")]
    Unavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ResponseError for ConversationApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConversationApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ConversationApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ConversationApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ConversationApiError::Internal(e) => {
                tracing::error!(error = ?e, "conversation request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        HttpResponse::build(self.status_code()).json(serde_json::json!({ "error": message }))
    }
}

async fn post_message(
    state: web::Data<AppState>,
    body: web::Json<MessageIn>,
) -> Result<HttpResponse, ConversationApiError> {
    let Some(conversation) = &state.conversation else {
        return Err(ConversationApiError::Unavailable);
    };
    let MessageIn {
        session,
        text,
        client_message_id,
    } = body.into_inner();
    if session.trim().chars().count() < 16 {
        return Err(ConversationApiError::Invalid(
            "session: must be at least 16 characters".into(),
        ));
    }
    let address = ChannelAddress::parse(ChannelKind::WebChat, &session)
        .map_err(|e| ConversationApiError::Invalid(e.to_string()))?;
    if let Some(id) = &client_message_id
        && (id.is_empty() || id.len() > 100)
    {
        return Err(ConversationApiError::Invalid(
            "client_message_id: must be 1-100 characters".into(),
        ));
    }
    let inbound = Inbound {
        organization_id: conversation.organization_id,
        address,
        content: InboundContent::Text(text),
        idempotency_key: client_message_id.map(|id| format!("web_chat:{session}:{id}")),
        // The reply goes back in this response; the outbox must not send it again.
        reply: ReplyDelivery {
            meta: None,
            hold: Some(std::time::Duration::from_secs(24 * 3600)),
        },
        rate_limited: false,
    };
    let handled = conversation
        .engine
        .handle(inbound, None)
        .await
        .map_err(anyhow::Error::new)?;
    if let Handled::Replied(reply) = &handled {
        crate::settle_direct(
            &conversation.store,
            conversation.organization_id,
            reply.message_id,
            true,
        )
        .await
        .map_err(anyhow::Error::new)?;
    }
    let out = match handled {
        Handled::Replied(reply) => MessageOut {
            outcome: "replied",
            reply: Some(ReplyOut {
                message_id: reply.message_id.to_string(),
                source: reply.source.as_str(),
                text: reply.text,
                language: reply.language.code().to_owned(),
                provenance: reply.provenance,
            }),
        },
        Handled::NoReply { .. } => MessageOut {
            outcome: "no_reply",
            reply: None,
        },
        Handled::Duplicate => MessageOut {
            outcome: "duplicate",
            reply: None,
        },
    };
    Ok(HttpResponse::Ok().json(out))
}
