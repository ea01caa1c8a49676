//! Inbound mail: raw MIME (from the webhook or IMAP) parsed with mail-parser into what the
//! conversation engine needs — who wrote, what they wrote (without quoted history or signature),
//! which message it answers, and whether a person wrote it at all (auto-replies, bounces).

use std::fmt;

use careloop_core::EmailAddress;
use mail_parser::{Addr, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use super::quote::{cut_html_history, html_to_text, strip_reply};

/// The largest message [`parse_inbound`] accepts. Patients write short texts; anything bigger is
/// attachments careloop does not read.
pub const MAX_INBOUND_BYTES: usize = 1024 * 1024;

/// One parsed inbound email. `Debug` shows ids and sizes only.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundEmail {
    /// Its `Message-ID`, without angle brackets.
    pub message_id: String,
    /// The first `From` address.
    pub from: EmailAddress,
    /// The `In-Reply-To` id (without angle brackets): careloop's outbound `Message-ID` when the
    /// patient pressed reply.
    pub in_reply_to: Option<String>,
    /// The `References` ids, oldest first.
    pub references: Vec<String>,
    /// The decoded `Subject`, when there is a non-empty one.
    pub subject: Option<String>,
    /// What the sender wrote: the text part (or the HTML part as text) without quoted history
    /// and signature. For a bounce, the report's human-readable part.
    pub text: String,
    /// Whether a person wrote it.
    pub kind: InboundKind,
}

impl fmt::Debug for InboundEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundEmail")
            .field("message_id", &self.message_id)
            .field("from", &self.from)
            .field("in_reply_to", &self.in_reply_to)
            .field("references", &self.references.len())
            .field("subject", &self.subject.as_ref().map(|_| "<redacted>"))
            .field(
                "text",
                &format_args!("<{} chars>", self.text.chars().count()),
            )
            .field("kind", &self.kind)
            .finish()
    }
}

/// Who wrote an inbound email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundKind {
    /// A person.
    Regular,
    /// An out-of-office or other automatic answer: not to be answered, not a patient's words.
    AutoReply,
    /// A delivery failure report; `original_message_id` names the message that failed (careloop's
    /// own `Message-ID` when it was one of ours), without angle brackets.
    Bounce {
        /// Without angle brackets; `None` when the report does not return the message's headers.
        original_message_id: Option<String>,
    },
}

/// Why raw bytes were not accepted as an inbound email. Names what is wrong, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailParseError {
    /// Over [`MAX_INBOUND_BYTES`]; refused before parsing.
    #[error("the message is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The input's length in bytes.
        size: usize,
        /// [`MAX_INBOUND_BYTES`].
        limit: usize,
    },
    /// Not an RFC 5322 / MIME message; says what is broken.
    #[error("not a MIME message: {0}")]
    Malformed(&'static str),
    /// No `From` header, or one without an address.
    #[error("the message has no From address")]
    MissingFrom,
    /// The `From` address is not one careloop accepts ([`EmailAddress`]).
    #[error("the From address is not a valid email address")]
    InvalidFrom,
    /// No `Message-ID` header, or an empty one.
    #[error("the message has no Message-ID")]
    MissingMessageId,
}

/// Parses one raw RFC 5322 message. Never panics, whatever the input.
pub fn parse_inbound(raw: &[u8]) -> Result<InboundEmail, EmailParseError> {
    if raw.len() > MAX_INBOUND_BYTES {
        return Err(EmailParseError::TooLarge {
            size: raw.len(),
            limit: MAX_INBOUND_BYTES,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(EmailParseError::Malformed("empty input"))?;
    check_structure(&message)?;

    let from = message
        .from()
        .and_then(|from| from.first())
        .and_then(Addr::address)
        .filter(|address| !address.trim().is_empty())
        .ok_or(EmailParseError::MissingFrom)?;
    let from: EmailAddress = from.parse().map_err(|_| EmailParseError::InvalidFrom)?;
    let message_id = message
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(EmailParseError::MissingMessageId)?
        .to_owned();

    let kind = classify(&message, &from);
    let text = match kind {
        // A report's explanation is not a reply: nothing to strip.
        InboundKind::Bounce { .. } => body_text(&message).map(|t| t.trim().to_owned()),
        _ => body_text(&message).map(|t| strip_reply(&t)),
    }
    .unwrap_or_default();

    Ok(InboundEmail {
        message_id,
        from,
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        subject: message
            .subject()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        text,
        kind,
    })
}

/// What mail-parser accepts without complaint but is no message: no header fields at all
/// (plain text or binary), a multipart body without a boundary or whose boundary never occurs.
fn check_structure(message: &Message<'_>) -> Result<(), EmailParseError> {
    let is_field_name =
        |name: &str| !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !message.headers().iter().any(|h| is_field_name(h.name())) {
        return Err(EmailParseError::Malformed("no header fields"));
    }
    if let Some(content_type) = message.content_type()
        && content_type.ctype().eq_ignore_ascii_case("multipart")
    {
        if content_type.attribute("boundary").is_none() {
            return Err(EmailParseError::Malformed("multipart without a boundary"));
        }
        let has_parts = matches!(
            &message.root_part().body,
            PartType::Multipart(children) if !children.is_empty()
        );
        if !has_parts {
            return Err(EmailParseError::Malformed(
                "the multipart boundary never occurs",
            ));
        }
    }
    Ok(())
}

/// The first text body: the text/plain part, or the HTML part without its quoted history,
/// as text.
fn body_text(message: &Message<'_>) -> Option<String> {
    let part = message.text_part(0)?;
    match &part.body {
        PartType::Text(text) => Some(text.to_string()),
        PartType::Html(html) => Some(html_to_text(cut_html_history(html))),
        _ => None,
    }
}

fn classify(message: &Message<'_>, from: &EmailAddress) -> InboundKind {
    if is_bounce(message, from) {
        return InboundKind::Bounce {
            original_message_id: original_message_id(message),
        };
    }
    if is_auto_reply(message) {
        return InboundKind::AutoReply;
    }
    InboundKind::Regular
}

fn is_bounce(message: &Message<'_>, from: &EmailAddress) -> bool {
    let delivery_report = message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    let local_part = from
        .as_str()
        .rsplit_once('@')
        .map_or(from.as_str(), |(local, _)| local);
    delivery_report
        || local_part.eq_ignore_ascii_case("mailer-daemon")
        || local_part.eq_ignore_ascii_case("postmaster")
}

/// The `Message-ID` of the message a bounce returns: from its `message/rfc822` or
/// `text/rfc822-headers` part, else from a `Message-ID:` line in a text part (bounces that paste
/// the original inline).
fn original_message_id(message: &Message<'_>) -> Option<String> {
    let parser = MessageParser::default();
    let from_parts = message
        .parts
        .iter()
        .skip(1)
        .find_map(|part| match &part.body {
            PartType::Message(returned) => returned.message_id().map(str::to_owned),
            PartType::Text(text) | PartType::Html(text)
                if part.content_type().is_some_and(|ct| {
                    ct.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
                }) =>
            {
                parser
                    .parse_headers(text.as_bytes())
                    .and_then(|headers| headers.message_id().map(str::to_owned))
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes)
                if part.content_type().is_some_and(|ct| {
                    ct.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
                }) =>
            {
                parser
                    .parse_headers(bytes.as_ref())
                    .and_then(|headers| headers.message_id().map(str::to_owned))
            }
            _ => None,
        });
    from_parts.or_else(|| {
        message.parts.iter().find_map(|part| match &part.body {
            PartType::Text(text) => message_id_line(text),
            _ => None,
        })
    })
}

fn message_id_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.trim_start().split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let value = value.trim();
        let id = value
            .strip_prefix('<')
            .and_then(|v| v.split_once('>'))
            .map_or(value, |(id, _)| id)
            .trim();
        (!id.is_empty()).then(|| id.to_owned())
    })
}

fn is_auto_reply(message: &Message<'_>) -> bool {
    let header_text = |name: &'static str| -> Option<String> {
        message
            .header_raw(name)
            .map(|value| value.trim().to_ascii_lowercase())
    };
    // RFC 3834: anything but "no" is automatic.
    if let Some(value) = header_text("Auto-Submitted") {
        let value = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if value != "no" {
            return true;
        }
    }
    if ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"]
        .iter()
        .any(|name| message.header_raw(*name).is_some())
    {
        return true;
    }
    if header_text("Precedence")
        .is_some_and(|p| matches!(p.as_str(), "auto_reply" | "bulk" | "junk"))
    {
        return true;
    }
    message.subject().is_some_and(is_auto_reply_subject)
}

fn is_auto_reply_subject(subject: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "out of office",
        "automatic reply",
        "auto reply",
        "auto-reply",
        "autoreply",
        "auto response",
        "respuesta automática",
        "fuera de la oficina",
        "réponse automatique",
        "absence du bureau",
        "automatische antwort",
        "abwesenheitsnotiz",
        "resposta automática",
        "fora do escritório",
        "ausente do escritório",
        "رد تلقائي",
        "خارج المكتب",
    ];
    let subject = subject.trim().to_lowercase();
    PREFIXES.iter().any(|prefix| subject.starts_with(prefix))
}

/// Message ids from `In-Reply-To`/`References` (mail-parser strips the angle brackets).
fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<&str> = match value {
        HeaderValue::Text(id) => vec![id.as_ref()],
        HeaderValue::TextList(ids) => ids.iter().map(|id| id.as_ref()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_lines_are_found() {
        assert_eq!(
            message_id_line("Subject: x\nMessage-Id: <a.b@c.org>\n").as_deref(),
            Some("a.b@c.org")
        );
        assert_eq!(message_id_line("nothing here"), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let samples: [&[u8]; 6] = [
            b"",
            b"\xff\xfe\x00",
            b"From:\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
            b"From: <@>\r\nMessage-ID: <>\r\n",
            b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n",
        ];
        for raw in samples {
            let _ = parse_inbound(raw);
        }
    }
}
