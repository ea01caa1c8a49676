//! Bot API updates → what careloop does with them.

use std::fmt;

use careloop_core::TelegramChatId;
use teloxide::types::{Message, Update, UpdateKind};

/// Largest update body accepted (Telegram's are a few KiB; text is at most 4096 characters).
pub const MAX_UPDATE_BYTES: usize = 64 * 1024;

/// One update, reduced to what careloop handles. `Debug` shows no text.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramInbound {
    pub update_id: u32,
    pub chat: TelegramChatId,
    /// The id of the patient's message (for threading), when the update is a message.
    pub message_id: Option<i32>,
    pub kind: TelegramInboundKind,
}

#[derive(Clone, PartialEq, Eq)]
pub enum TelegramInboundKind {
    Text(String),
    /// `/start`, with the deep-link payload (`t.me/<bot>?start=<payload>`) if any.
    Start(Option<String>),
    /// A pressed inline-keyboard button.
    Callback {
        id: String,
        data: String,
    },
    /// A sticker, voice note, photo, file…, by kind.
    Unsupported(&'static str),
}

impl fmt::Debug for TelegramInboundKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TelegramInboundKind::Text(t) => write!(f, "Text(<{} chars>)", t.chars().count()),
            TelegramInboundKind::Start(p) => write!(f, "Start(payload: {})", p.is_some()),
            TelegramInboundKind::Callback { .. } => f.write_str("Callback"),
            TelegramInboundKind::Unsupported(k) => write!(f, "Unsupported({k})"),
        }
    }
}

impl fmt::Debug for TelegramInbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramInbound")
            .field("update_id", &self.update_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("update: body is not a Telegram update ({0})")]
    Malformed(String),
    #[error("update {update_id}: nothing careloop handles ({kind})")]
    Ignored { update_id: u32, kind: &'static str },
}

/// The `update_id` of a JSON body, if it has one (for idempotency before full parsing).
pub fn update_id(value: &serde_json::Value) -> Option<u32> {
    value
        .get("update_id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok())
}

/// Parses one update. Private chats only: messages from groups and channels are ignored.
pub fn parse_update(value: &serde_json::Value) -> Result<TelegramInbound, UpdateError> {
    // Through text: teloxide's `Update` (flattened, with a catch-all kind) does not deserialize
    // from a `serde_json::Value` (every kind comes out as `Error`), only from JSON text.
    let update: Update = serde_json::from_str(&value.to_string())
        .map_err(|e| UpdateError::Malformed(short(&e.to_string())))?;
    let update_id = update.id.0;
    match update.kind {
        UpdateKind::Message(message) => from_message(update_id, &message),
        UpdateKind::CallbackQuery(query) => {
            let message = query.message.as_ref().ok_or(UpdateError::Ignored {
                update_id,
                kind: "inline callback",
            })?;
            if !message.chat().is_private() {
                return Err(UpdateError::Ignored {
                    update_id,
                    kind: "group callback",
                });
            }
            Ok(TelegramInbound {
                update_id,
                chat: chat_id(update_id, message.chat().id.0)?,
                message_id: Some(message.id().0),
                kind: TelegramInboundKind::Callback {
                    id: query.id.0,
                    data: query.data.unwrap_or_default(),
                },
            })
        }
        UpdateKind::EditedMessage(_) => Err(UpdateError::Ignored {
            update_id,
            kind: "edited message",
        }),
        UpdateKind::Error(_) => Err(UpdateError::Ignored {
            update_id,
            kind: "unknown update",
        }),
        _ => Err(UpdateError::Ignored {
            update_id,
            kind: "other update",
        }),
    }
}

fn from_message(update_id: u32, message: &Message) -> Result<TelegramInbound, UpdateError> {
    if !message.chat.is_private() {
        return Err(UpdateError::Ignored {
            update_id,
            kind: "group message",
        });
    }
    let chat = chat_id(update_id, message.chat.id.0)?;
    let kind = if let Some(text) = message.text() {
        match start_payload(text) {
            Some(payload) => TelegramInboundKind::Start(payload),
            None => TelegramInboundKind::Text(text.to_owned()),
        }
    } else {
        TelegramInboundKind::Unsupported(media_kind(message))
    };
    Ok(TelegramInbound {
        update_id,
        chat,
        message_id: Some(message.id.0),
        kind,
    })
}

fn chat_id(update_id: u32, id: i64) -> Result<TelegramChatId, UpdateError> {
    if id == 0 {
        return Err(UpdateError::Ignored {
            update_id,
            kind: "chat id 0",
        });
    }
    Ok(TelegramChatId::new(id))
}

/// `Some(payload)` when the text is the `/start` command (`/start`, `/start@bot`,
/// `/start <payload>`).
fn start_payload(text: &str) -> Option<Option<String>> {
    let text = text.trim();
    let (command, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let name = command.split('@').next().unwrap_or(command);
    if name != "/start" {
        return None;
    }
    let payload = rest.trim();
    Some((!payload.is_empty()).then(|| payload.to_owned()))
}

fn media_kind(message: &Message) -> &'static str {
    if message.sticker().is_some() {
        "sticker"
    } else if message.voice().is_some() || message.audio().is_some() {
        "voice"
    } else if message.video_note().is_some() || message.video().is_some() {
        "video"
    } else if message.photo().is_some() || message.animation().is_some() {
        "photo"
    } else if message.document().is_some() {
        "file"
    } else if message.location().is_some() {
        "location"
    } else if message.contact().is_some() {
        "contact"
    } else {
        "other"
    }
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn message(update_id: u64, chat: i64, extra: serde_json::Value) -> serde_json::Value {
        let mut msg = json!({
            "message_id": 5,
            "date": 1_700_000_000,
            "chat": {"id": chat, "type": if chat > 0 { "private" } else { "group" }, "first_name": "A", "title": "G"},
            "from": {"id": 42, "is_bot": false, "first_name": "A"},
        });
        for (k, v) in extra.as_object().unwrap() {
            msg[k] = v.clone();
        }
        json!({"update_id": update_id, "message": msg})
    }

    #[test]
    fn text_start_and_payload() {
        let u = parse_update(&message(1, 42, json!({"text": "What is HbA1c?"}))).unwrap();
        assert_eq!(u.update_id, 1);
        assert_eq!(u.chat.get(), 42);
        assert_eq!(u.kind, TelegramInboundKind::Text("What is HbA1c?".into()));
        let u = parse_update(&message(2, 42, json!({"text": "/start abc123"}))).unwrap();
        assert_eq!(u.kind, TelegramInboundKind::Start(Some("abc123".into())));
        let u = parse_update(&message(3, 42, json!({"text": "/start@careloop_bot"}))).unwrap();
        assert_eq!(u.kind, TelegramInboundKind::Start(None));
        let u = parse_update(&message(4, 42, json!({"text": "/startle"}))).unwrap();
        assert_eq!(u.kind, TelegramInboundKind::Text("/startle".into()));
    }

    #[test]
    fn sticker_is_unsupported_and_groups_are_ignored() {
        let sticker = json!({"sticker": {"file_id": "f", "file_unique_id": "u", "type": "regular",
            "width": 512, "height": 512, "is_animated": false, "is_video": false}});
        let u = parse_update(&message(5, 42, sticker)).unwrap();
        assert_eq!(u.kind, TelegramInboundKind::Unsupported("sticker"));
        let err = parse_update(&message(6, -100, json!({"text": "hi"}))).unwrap_err();
        assert_eq!(
            err,
            UpdateError::Ignored {
                update_id: 6,
                kind: "group message"
            }
        );
    }

    #[test]
    fn callback_query() {
        let v = json!({"update_id": 7, "callback_query": {
            "id": "cb1", "from": {"id": 42, "is_bot": false, "first_name": "A"},
            "chat_instance": "x", "data": "reminder:abc:taken",
            "message": {"message_id": 9, "date": 1_700_000_000,
                "chat": {"id": 42, "type": "private", "first_name": "A"}, "text": "Take your pill"}}});
        let u = parse_update(&v).unwrap();
        assert_eq!(u.message_id, Some(9));
        assert_eq!(
            u.kind,
            TelegramInboundKind::Callback {
                id: "cb1".into(),
                data: "reminder:abc:taken".into()
            }
        );
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for v in [
            json!(null),
            json!([]),
            json!({"update_id": "x"}),
            json!({"message": {"text": "no id"}}),
            json!({"update_id": 1, "message": {"text": "no chat"}}),
        ] {
            assert!(
                matches!(
                    parse_update(&v),
                    Err(UpdateError::Malformed(_) | UpdateError::Ignored { .. })
                ),
                "{v}"
            );
        }
        assert_eq!(update_id(&json!({"update_id": 12})), Some(12));
        assert_eq!(update_id(&json!({"update_id": -1})), None);
    }
}
