//! What a web chat session's browser is told, in order.

use std::{fmt, sync::Arc};

use careloop_core::{Language, MessageId};
use serde::{Deserialize, Serialize};

use crate::Button;

/// One event of a session, as the browser receives it (`{"type": "draft", "text": …}`). `Debug`
/// shows no text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// An answer is being prepared.
    Typing,
    /// The draft so far (the whole text, not a delta): each one replaces the previous one.
    Draft { text: String },
    /// Take back the draft shown so far; the final message, if any, follows.
    Retract,
    /// A message to the patient: a reply (replacing any draft), a reminder, a campaign step.
    Message(ChatMessage),
    /// Something went wrong with the patient's last message; they may try again.
    Error { text: String },
}

impl SessionEvent {
    /// Typing, drafts and retractions only describe the answer being made: each one supersedes
    /// the previous one, and a message or error supersedes them all. Only the newest is kept
    /// for resuming streams.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SessionEvent::Typing | SessionEvent::Draft { .. } | SessionEvent::Retract
        )
    }

    /// `typing`, `draft`, `retract`, `message` or `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Typing => "typing",
            SessionEvent::Draft { .. } => "draft",
            SessionEvent::Retract => "retract",
            SessionEvent::Message(_) => "message",
            SessionEvent::Error { .. } => "error",
        }
    }
}

impl fmt::Debug for SessionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEvent::Message(m) => write!(f, "Message({m:?})"),
            SessionEvent::Draft { text } | SessionEvent::Error { text } => {
                write!(f, "{}(<{} chars>)", self.kind(), text.chars().count())
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// Where a message's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageSource {
    /// A model answer that passed every check.
    Model,
    /// An approved article.
    Article,
    /// An approved message template.
    Template,
    /// A reply sent through the outbox (its origin is in the message's provenance).
    Reply,
    /// A medication reminder.
    Reminder,
    /// A campaign step.
    Campaign,
}

/// A message shown in the chat.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub message_id: MessageId,
    pub text: String,
    pub language: Option<Language>,
    pub source: MessageSource,
    /// Answers offered under the message (Taken / Skip / Snooze).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Button>,
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatMessage")
            .field("message_id", &self.message_id)
            .field(
                "text",
                &format_args!("<{} chars>", self.text.chars().count()),
            )
            .field("language", &self.language)
            .field("source", &self.source)
            .field("buttons", &self.buttons.len())
            .finish()
    }
}

/// An event with its sequence number: increasing within a session, so a stream resumes after
/// the last number its browser saw (SSE `id:` / `Last-Event-ID`). Numbers are not consecutive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequenced {
    pub seq: u64,
    pub event: Arc<SessionEvent>,
}
