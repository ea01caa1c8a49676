//! careloop's channels: one interface every channel adapter implements, so the conversation engine
//! and the reminders never know which channel they talk to, and the outbox every outbound message
//! goes through (persisted first, then sent, with its delivery recorded).
//!
//! - [`Channel`]: send one [`OutboundMessage`]; errors say whether to retry ([`SendError`]).
//! - [`telegram`]: the Telegram Bot API through teloxide (webhook updates and long polling,
//!   escaping, 4096-character splits, rate limits, 429 and 403).
//! - [`email`]: SMTP through lettre, inbound MIME through mail-parser (webhook and IMAP).
//! - [`webchat`]: the web chat hub (signed session tokens, resumable event streams).
//! - [`outbox`]: claims queued outbound messages, sends them through their channel, retries
//!   transient failures with backoff and records every attempt.
//!
//! A fourth channel (SMS, WhatsApp) is one more [`Channel`] implementation and a
//! [`careloop_core::ChannelKind`] variant.

pub mod email;
pub mod outbox;
pub mod ratelimit;
pub mod telegram;
pub mod webchat;

use std::{fmt, time::Duration};

use careloop_core::{ChannelKind, Language, MessageId, OrganizationId, PatientId};
use careloop_store::ChannelAddress;

pub use outbox::{Outbox, OutboxSettings};
use serde::{Deserialize, Serialize};

/// A button under a message (Telegram inline keyboard, web chat): what it shows and the opaque
/// action sent back when pressed (`reminder:<occurrence>:taken`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub label: String,
    pub action: String,
}

/// Why a message is sent. Decides what an opt-out stops: a patient who opted out gets no
/// reminders or campaign steps, but the confirmation of their STOP and an urgent-safety reply
/// still go out on a channel that can reach them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// An answer to the patient's own message.
    #[default]
    Reply,
    /// A medication reminder.
    Reminder,
    /// A campaign step.
    Campaign,
}

impl Purpose {
    /// Whether consent withdrawn (STOP) holds this message back.
    pub fn needs_consent(self) -> bool {
        !matches!(self, Purpose::Reply)
    }
}

/// What the outbox keeps beside a message's text so any process can send it later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryMeta {
    #[serde(default)]
    pub purpose: Purpose,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
    /// Email subject (the channel picks a default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The provider's id of the inbound message this answers (email `Message-ID`, Telegram
    /// message id), so the reply threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The provider's id of a streamed draft this message finalizes (Telegram: the draft is
    /// edited into the final text instead of sending a second message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_draft: Option<String>,
}

/// One message to hand to a channel. `Debug` shows no text or address.
#[derive(Clone)]
pub struct OutboundMessage {
    pub message_id: MessageId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub address: ChannelAddress,
    pub body: String,
    pub language: Option<Language>,
    pub meta: DeliveryMeta,
}

impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("message_id", &self.message_id)
            .field("organization_id", &self.organization_id)
            .field("patient_id", &self.patient_id)
            .field("channel", &self.address.kind())
            .field(
                "body",
                &format_args!("<{} chars>", self.body.chars().count()),
            )
            .field("purpose", &self.meta.purpose)
            .finish()
    }
}

/// A channel accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id of what was sent (Telegram message id, email `Message-ID`); with a
    /// message split in parts, the first part's.
    pub provider_message_id: Option<String>,
    /// The channel confirmed delivery to the patient (web chat: the browser received it).
    pub delivered: bool,
}

/// Why a send did not succeed. Reasons are for operators: never message text or addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (network, 5xx, 429); `retry_after` when the provider said.
    #[error("transient failure: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The patient cannot be reached on this channel any more (blocked the bot, mailbox gone):
    /// the channel is opted out for the patient.
    #[error("recipient unreachable: {reason}")]
    Unreachable { reason: String },
    /// Will never succeed as it is (bad request, message refused).
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
}

/// One way of reaching patients.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    fn kind(&self) -> ChannelKind;

    /// Sends one message, waiting for the channel's rate limits. Must not log text or address.
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError>;
}
