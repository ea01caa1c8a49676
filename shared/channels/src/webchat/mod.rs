//! Web chat: signed session tokens and resumable per-session event streams.
//!
//! - [`WebChatHub::issue`] makes a session: 128 random bits ([`SessionId`], which is also the
//!   patient's [`careloop_store::ChannelAddress::WebChat`]) and an HMAC-SHA256-signed token with
//!   its expiry ([`token`]); [`WebChatHub::verify`] checks one in constant time.
//! - Each session has an event log ([`SessionEvent`]: typing, draft, retract, message, error)
//!   numbered with increasing sequence numbers. [`WebChatHub::subscribe`] with the last number a
//!   browser saw returns what came after it and then live events, so a reconnect (SSE
//!   `Last-Event-ID`) loses and repeats nothing. The log keeps the last `buffer_events` messages
//!   and only the newest draft; sessions idle for `idle_ttl` are forgotten.
//! - [`WebChatHub`] is the web chat [`Channel`]: a send appends a message event (with its
//!   buttons); it counts as delivered only when a browser is connected.
//!
//! Everything is in memory in the process that serves the browser's stream: a scale-out
//! deployment routes a session's requests to one gateway (sticky sessions).

mod events;
mod hub;
pub mod token;

pub use events::{ChatMessage, MessageSource, Sequenced, SessionEvent};
pub use hub::{HubConfig, HubError, HubStats, Preferences, Published, Subscription, WebChatHub};
pub use token::{
    IssuedSession, KeyError, SessionClaims, SessionId, SessionToken, SigningKey, TokenError,
};

use std::time::Duration;

use careloop_core::ChannelKind;

use crate::{Channel, OutboundMessage, Purpose, SendError, Sent};

/// How long the outbox waits before trying a session with no browser log again.
const NOT_OPEN_RETRY: Duration = Duration::from_secs(60);

#[async_trait::async_trait]
impl Channel for WebChatHub {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WebChat
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let session =
            SessionId::from_address(&message.address).ok_or_else(|| SendError::Permanent {
                reason: "not a web chat session address".into(),
            })?;
        let chat = ChatMessage {
            message_id: message.message_id,
            text: message.body.clone(),
            language: message.language,
            source: match message.meta.purpose {
                Purpose::Reply => MessageSource::Reply,
                Purpose::Reminder => MessageSource::Reminder,
                Purpose::Campaign => MessageSource::Campaign,
            },
            buttons: message.meta.buttons.clone(),
        };
        match self.publish_to_open(session, SessionEvent::Message(chat)) {
            Ok(published) => Ok(Sent {
                provider_message_id: Some(published.seq.to_string()),
                delivered: published.delivered,
            }),
            Err(e) => Err(SendError::Transient {
                reason: e.to_string(),
                retry_after: Some(NOT_OPEN_RETRY),
            }),
        }
    }
}
