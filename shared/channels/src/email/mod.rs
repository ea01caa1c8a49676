//! Email: SMTP out (lettre), MIME in (mail-parser) over a signed webhook or IMAP.
//!
//! - [`EmailChannel`]: the [`Channel`](crate::Channel) for email. Plain text and HTML
//!   alternatives in the patient's language (right to left for Arabic), a `Message-ID` derived
//!   from careloop's message id (retries send the same id), threading headers, and one-click
//!   unsubscribe (`List-Unsubscribe` with a signed token, RFC 8058).
//! - [`unsubscribe_token`] / [`verify_unsubscribe_token`]: the token in that URL.
//! - [`parse_inbound`]: raw MIME into an [`InboundEmail`]: the sender's own words without quoted
//!   history or signature, and whether a person wrote it ([`InboundKind`]: auto-replies and
//!   bounces are recognized).
//! - [`verify_webhook_signature`] / [`sign_webhook`]: the `X-Careloop-Signature` header on
//!   inbound-mail webhook posts.
//! - [`ImapPoller`]: unseen mail from an IMAP mailbox, for providers without webhooks.
//!
//! Nothing here logs message text, subjects or addresses; only ids and counts.

mod imap;
mod inbound;
mod outbound;
mod quote;
mod settings;
mod unsubscribe;
mod webhook;

pub use imap::{FetchedMail, ImapError, ImapPoller, ImapSettings, ImapTls};
pub use inbound::{EmailParseError, InboundEmail, InboundKind, MAX_INBOUND_BYTES, parse_inbound};
pub use outbound::{
    EmailChannel, EmailConfigError, MIN_SIGNING_KEY_BYTES, default_subject, html_document,
};
pub use quote::strip_reply;
pub use settings::{EmailSettings, SmtpTls};
pub use unsubscribe::{TokenError, unsubscribe_token, verify_unsubscribe_token};
pub use webhook::{
    SignatureError, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TOLERANCE_SECS, sign_webhook,
    verify_webhook_signature,
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with `key`. Shared by the unsubscribe tokens and the webhook signatures.
fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    #[expect(
        clippy::expect_used,
        reason = "HMAC accepts keys of any length; new_from_slice cannot fail"
    )]
    let mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac
}
