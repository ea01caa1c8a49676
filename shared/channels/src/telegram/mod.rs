//! Telegram through teloxide's Bot API client.
//!
//! - Outbound ([`TelegramChannel`] as a [`Channel`]): every text is sent as MarkdownV2 with all
//!   of it escaped (nothing the patient or the model wrote is read as markup), split at
//!   Telegram's 4096-character limit on paragraph, line, sentence or word boundaries, with the
//!   buttons under the last part. A message that finalizes a streamed draft edits the draft.
//!   Rate limits: ~1 message a second per chat and ~30 a second per bot (both configurable),
//!   waited for before each call; a 429 becomes [`SendError::Transient`] with Telegram's
//!   `retry_after`; "bot was blocked" / "user is deactivated" / "chat not found" become
//!   [`SendError::Unreachable`] (the outbox opts the channel out).
//! - Inbound: [`parse_update`] turns a Bot API `Update` (webhook body or `getUpdates` item) into
//!   a [`TelegramInbound`]; webhook requests are checked with [`verify_secret`].
//! - Streaming: [`TelegramChannel::send_draft`] / [`TelegramChannel::edit_draft`] show an answer
//!   as it is generated (the caller throttles edits).

#[cfg(feature = "fake-telegram")]
pub mod fake;
mod update;

use std::time::Duration;

use careloop_core::{ChannelKind, TelegramChatId};
use careloop_store::ChannelAddress;
use teloxide::{
    ApiError, Bot, RequestError,
    payloads::{EditMessageTextSetters, SendMessageSetters},
    prelude::Requester,
    types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ParseMode},
};

pub use update::{
    MAX_UPDATE_BYTES, TelegramInbound, TelegramInboundKind, UpdateError, parse_update, update_id,
};

use crate::{
    Button, Channel, OutboundMessage, SendError, Sent,
    ratelimit::{KeyedLimiter, Limiter, quota},
};

/// Telegram's limit on one message's text (after entity parsing).
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// What the adapter needs. The token is a secret: it is part of every API URL, so URLs are never
/// logged.
#[derive(Clone)]
pub struct TelegramConfig {
    pub token: String,
    /// The Bot API server (default `https://api.telegram.org/`); tests point it at a fake.
    pub api_url: Option<url::Url>,
    /// Messages a second to one chat (Telegram allows about 1).
    pub per_chat_per_second: u32,
    /// Messages a second for the whole bot (Telegram allows about 30).
    pub per_bot_per_second: u32,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &"<secret>")
            .field("api_url", &self.api_url.as_ref().map(|u| u.as_str()))
            .field("per_chat_per_second", &self.per_chat_per_second)
            .field("per_bot_per_second", &self.per_bot_per_second)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram.token: must look like <bot id>:<secret> (from @BotFather)")]
    BadToken,
    #[error("telegram.api_url: {0}")]
    BadApiUrl(String),
    #[error("telegram API call failed: {0}")]
    Request(SendError),
}

/// The bot id: the part of the token before the colon (public; used in idempotency keys).
pub fn bot_id(token: &str) -> Result<u64, TelegramError> {
    token
        .split_once(':')
        .filter(|(_, secret)| !secret.is_empty())
        .and_then(|(id, _)| id.parse::<u64>().ok())
        .ok_or(TelegramError::BadToken)
}

/// The Telegram channel. Cheap to clone.
#[derive(Clone)]
pub struct TelegramChannel {
    bot: Bot,
    bot_id: u64,
    per_chat: KeyedLimiter<i64>,
    per_bot: Limiter,
}

impl TelegramChannel {
    pub fn new(config: &TelegramConfig) -> Result<TelegramChannel, TelegramError> {
        let bot_id = bot_id(&config.token)?;
        let mut bot = Bot::new(config.token.clone());
        if let Some(url) = &config.api_url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(TelegramError::BadApiUrl("must be an http(s) URL".into()));
            }
            bot = bot.set_api_url(url.clone());
        }
        Ok(TelegramChannel {
            bot,
            bot_id,
            per_chat: KeyedLimiter::new(quota(config.per_chat_per_second, 1)),
            per_bot: Limiter::new(quota(config.per_bot_per_second, config.per_bot_per_second)),
        })
    }

    pub fn bot_id(&self) -> u64 {
        self.bot_id
    }

    /// teloxide's client, for calls this adapter does not wrap.
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    async fn limit(&self, chat: i64) {
        self.per_chat.ready(&chat).await;
        self.per_bot.ready().await;
    }

    /// Sends the first text of a streamed answer; the id is for [`Self::edit_draft`].
    pub async fn send_draft(&self, chat: TelegramChatId, text: &str) -> Result<i32, SendError> {
        let text = cut(text, MAX_MESSAGE_CHARS);
        self.limit(chat.get()).await;
        let sent = self
            .bot
            .send_message(ChatId(chat.get()), escape(text))
            .parse_mode(ParseMode::MarkdownV2)
            .await
            .map_err(map_error)?;
        Ok(sent.id.0)
    }

    /// Replaces a draft's text. "Not modified" counts as done.
    pub async fn edit_draft(
        &self,
        chat: TelegramChatId,
        message: i32,
        text: &str,
    ) -> Result<(), SendError> {
        self.edit(chat.get(), message, cut(text, MAX_MESSAGE_CHARS), &[])
            .await
    }

    async fn edit(
        &self,
        chat: i64,
        message: i32,
        text: &str,
        buttons: &[Button],
    ) -> Result<(), SendError> {
        self.limit(chat).await;
        let mut request = self
            .bot
            .edit_message_text(ChatId(chat), MessageId(message), escape(text))
            .parse_mode(ParseMode::MarkdownV2);
        if let Some(keyboard) = keyboard(buttons) {
            request = request.reply_markup(keyboard);
        }
        match request.await {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
            Err(e) => Err(map_error(e)),
        }
    }

    async fn send_part(&self, chat: i64, text: &str, buttons: &[Button]) -> Result<i32, SendError> {
        self.limit(chat).await;
        let mut request = self
            .bot
            .send_message(ChatId(chat), escape(text))
            .parse_mode(ParseMode::MarkdownV2);
        if let Some(keyboard) = keyboard(buttons) {
            request = request.reply_markup(keyboard);
        }
        let sent = request.await.map_err(map_error)?;
        Ok(sent.id.0)
    }

    /// Stops the spinner on a pressed button, optionally with a short notice.
    pub async fn answer_callback(&self, id: &str, text: Option<&str>) -> Result<(), SendError> {
        self.per_bot.ready().await;
        let mut request = self
            .bot
            .answer_callback_query(teloxide::types::CallbackQueryId(id.to_owned()));
        if let Some(text) = text {
            request.text = Some(cut(text, 200).to_owned());
        }
        request.await.map(|_| ()).map_err(map_error)
    }

    /// Registers the webhook (Telegram then posts updates with the secret in
    /// `X-Telegram-Bot-Api-Secret-Token`).
    pub async fn set_webhook(&self, url: url::Url, secret: &str) -> Result<(), TelegramError> {
        let mut request = self.bot.set_webhook(url);
        request.secret_token = Some(secret.to_owned());
        request
            .await
            .map(|_| ())
            .map_err(|e| TelegramError::Request(map_error(e)))
    }

    /// Removes the webhook, so `getUpdates` may be used.
    pub async fn delete_webhook(&self) -> Result<(), SendError> {
        self.bot
            .delete_webhook()
            .await
            .map(|_| ())
            .map_err(map_error)
    }

    /// Long polling: the updates after `offset`, waiting up to `timeout` for one. Raw JSON, so
    /// updates teloxide cannot model are still seen (and answered as unsupported).
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, SendError> {
        let mut request = self.bot.get_updates();
        request.offset = offset.and_then(|o| i32::try_from(o).ok());
        request.timeout = u32::try_from(timeout.as_secs()).ok();
        let updates = request.await.map_err(map_error)?;
        updates
            .into_iter()
            .map(|u| {
                serde_json::to_value(&u).map_err(|e| SendError::Permanent {
                    reason: format!("update does not serialize: {e}"),
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Channel for TelegramChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Telegram
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let ChannelAddress::Telegram(chat) = &message.address else {
            return Err(SendError::Permanent {
                reason: "not a Telegram address".into(),
            });
        };
        let chat = chat.get();
        let parts = split_message(&message.body, MAX_MESSAGE_CHARS);
        let last = parts.len().saturating_sub(1);
        let mut first_id = None;
        for (i, part) in parts.iter().enumerate() {
            let buttons: &[Button] = if i == last {
                &message.meta.buttons
            } else {
                &[]
            };
            let draft = (i == 0)
                .then_some(message.meta.replaces_draft.as_deref())
                .flatten()
                .and_then(|d| d.parse::<i32>().ok());
            let id = match draft {
                Some(draft) => match self.edit(chat, draft, part, buttons).await {
                    Ok(()) => draft,
                    // The draft is gone (deleted by the patient): send the text anew.
                    Err(SendError::Permanent { .. }) => self.send_part(chat, part, buttons).await?,
                    Err(e) => return Err(e),
                },
                None => self.send_part(chat, part, buttons).await?,
            };
            first_id.get_or_insert(id);
        }
        Ok(Sent {
            provider_message_id: first_id.map(|id| id.to_string()),
            delivered: false,
        })
    }
}

fn keyboard(buttons: &[Button]) -> Option<InlineKeyboardMarkup> {
    if buttons.is_empty() {
        return None;
    }
    let row = buttons
        .iter()
        .map(|b| InlineKeyboardButton::callback(b.label.clone(), cut(&b.action, 64).to_owned()))
        .collect::<Vec<_>>();
    Some(InlineKeyboardMarkup::new([row]))
}

/// Maps a Bot API failure to what the outbox should do. Never includes text or the token.
pub fn map_error(e: RequestError) -> SendError {
    match e {
        RequestError::RetryAfter(seconds) => SendError::Transient {
            reason: "telegram: 429 too many requests".into(),
            retry_after: Some(seconds.duration()),
        },
        RequestError::Api(
            api @ (ApiError::BotBlocked
            | ApiError::UserDeactivated
            | ApiError::ChatNotFound
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots),
        ) => SendError::Unreachable {
            reason: format!("telegram: {api}"),
        },
        RequestError::Api(ApiError::Unknown(text)) if looks_transient(&text) => {
            SendError::Transient {
                reason: "telegram: server error".into(),
                retry_after: None,
            }
        }
        RequestError::Api(api) => SendError::Permanent {
            reason: format!("telegram: {}", cut(&api.to_string(), 200)),
        },
        RequestError::MigrateToChatId(_) => SendError::Permanent {
            reason: "telegram: group migrated to a supergroup".into(),
        },
        RequestError::Network(e) => SendError::Transient {
            reason: format!(
                "telegram: network error{}",
                if e.is_timeout() { " (timeout)" } else { "" }
            ),
            retry_after: None,
        },
        RequestError::InvalidJson { .. } => SendError::Transient {
            reason: "telegram: unreadable response".into(),
            retry_after: None,
        },
        RequestError::Io(_) => SendError::Transient {
            reason: "telegram: i/o error".into(),
            retry_after: None,
        },
    }
}

fn looks_transient(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("internal server error")
        || t.contains("bad gateway")
        || t.contains("service unavailable")
        || t.contains("gateway timeout")
}

/// Escapes everything MarkdownV2 would read as markup.
pub fn escape(text: &str) -> String {
    teloxide::utils::markdown::escape(text)
}

/// The first `max` characters of `text`.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Splits `text` into parts of at most `max` characters, preferring to break between
/// paragraphs, then lines, then sentences, then words; a word longer than `max` is cut.
/// Parts are trimmed; no part is empty; an empty text gives no parts.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= max {
            parts.push(rest.to_owned());
            break;
        }
        let window = cut(rest, max);
        let at = [
            window.rfind("\n\n"),
            window.rfind('\n'),
            window.rfind(". ").map(|i| i + 1),
            // Any whitespace: tabs, no-break and ideographic spaces separate words too.
            window.rfind(char::is_whitespace),
        ]
        .into_iter()
        .flatten()
        .find(|&i| i > 0)
        .unwrap_or(window.len());
        let (head, tail) = rest.split_at(at);
        let head = head.trim();
        if !head.is_empty() {
            parts.push(head.to_owned());
        }
        rest = tail.trim_start();
    }
    parts
}

/// Compares the webhook's `X-Telegram-Bot-Api-Secret-Token` header with the configured secret in
/// constant time.
pub fn verify_secret(expected: &str, presented: Option<&[u8]>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let expected = expected.as_bytes();
    if expected.is_empty() || presented.len() != expected.len() {
        return false;
    }
    expected
        .iter()
        .zip(presented)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn split_respects_the_limit_and_keeps_every_word() {
        let text = "word ".repeat(3000);
        let parts = split_message(&text, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        let words: usize = parts.iter().map(|p| p.split_whitespace().count()).sum();
        assert_eq!(words, 3000);
    }

    #[test]
    fn split_prefers_paragraphs_then_sentences() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b".repeat(30));
        assert_eq!(
            split_message(&text, 40),
            vec!["a".repeat(30), "b".repeat(30)]
        );
        let text = "One two. Three four five six.";
        assert_eq!(
            split_message(text, 12),
            vec!["One two.", "Three four", "five six."]
        );
    }

    #[test]
    fn split_counts_characters_not_bytes() {
        let text = "سلام ".repeat(2000);
        let parts = split_message(&text, MAX_MESSAGE_CHARS);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        assert_eq!(parts.len(), 3);
    }

    #[test]
    fn split_breaks_at_any_whitespace_not_inside_words() {
        // Found by `scripts/fuzz.sh` (fuzz/regressions/telegram_split).
        assert_eq!(
            split_message("one\ttwo\tthree", 10),
            vec!["one\ttwo", "three"]
        );
        assert_eq!(
            split_message("b\rTT\u{c}\u{c}(T(T", 9),
            vec!["b\rTT", "(T(T"]
        );
        assert_eq!(
            split_message("患者さん\u{3000}お薬の時間です", 8),
            vec!["患者さん", "お薬の時間です"]
        );
    }

    #[test]
    fn split_cuts_a_word_longer_than_the_limit() {
        let parts = split_message(&"x".repeat(10), 4);
        assert_eq!(parts, vec!["xxxx", "xxxx", "xx"]);
        assert!(split_message("   ", 4).is_empty());
    }

    #[test]
    fn escape_neutralizes_markdown() {
        assert_eq!(
            escape("*bold* _x_ [a](b) 1.5"),
            r"\*bold\* \_x\_ \[a\]\(b\) 1\.5"
        );
    }

    #[test]
    fn bot_id_comes_from_the_token() {
        assert_eq!(bot_id("123456:ABC-def").unwrap(), 123456);
        assert!(bot_id("nonsense").is_err());
        assert!(bot_id("123:").is_err());
    }

    #[test]
    fn secret_must_match_exactly() {
        assert!(verify_secret("s3cret", Some(b"s3cret")));
        assert!(!verify_secret("s3cret", Some(b"s3cres")));
        assert!(!verify_secret("s3cret", Some(b"s3cret!")));
        assert!(!verify_secret("s3cret", None));
        assert!(!verify_secret("", Some(b"")));
    }

    #[test]
    fn blocked_bot_is_unreachable_and_429_is_transient() {
        let blocked = map_error(RequestError::Api(ApiError::BotBlocked));
        assert!(matches!(blocked, SendError::Unreachable { .. }));
        let limited = map_error(RequestError::RetryAfter(
            teloxide::types::Seconds::from_seconds(7),
        ));
        assert_eq!(
            limited,
            SendError::Transient {
                reason: "telegram: 429 too many requests".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }
}
