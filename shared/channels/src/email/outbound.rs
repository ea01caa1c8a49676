//! Outbound mail: one [`OutboundMessage`] becomes a `multipart/alternative` message (plain text
//! and HTML) sent through an SMTP relay with lettre.

use std::{error::Error as _, fmt::Write as _};

use async_trait::async_trait;
use careloop_core::{ChannelKind, Language};
use careloop_store::ChannelAddress;
use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Mailbox, MultiPart,
        header::{Header, HeaderName, HeaderValue},
    },
    transport::smtp::{
        self,
        authentication::Credentials,
        client::{Tls, TlsParameters},
        response::Severity,
    },
};
use secrecy::ExposeSecret as _;
use url::Url;

use super::{EmailSettings, SmtpTls, unsubscribe_token};
use crate::{Channel, OutboundMessage, Purpose, SendError, Sent};

/// The shortest signing key [`EmailChannel::new`] accepts.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Why the email channel could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum EmailConfigError {
    /// `signing_key` is shorter than [`MIN_SIGNING_KEY_BYTES`].
    #[error("email.signing_key must be at least {MIN_SIGNING_KEY_BYTES} bytes")]
    SigningKeyTooShort,
    /// `unsubscribe_base_url` is not an absolute http(s) URL.
    #[error("email.unsubscribe_base_url is not an absolute http(s) URL")]
    UnsubscribeUrl,
    /// lettre does not accept `from_address`.
    #[error("email.from_address cannot be used as an SMTP sender")]
    FromAddress,
    /// `message_id_domain` has characters a domain cannot have.
    #[error("email.message_id_domain must be a domain name")]
    MessageIdDomain,
    /// Only one of `smtp_username` and `smtp_password` is set.
    #[error("email.smtp_username and email.smtp_password go together")]
    PartialCredentials,
    /// TLS parameters could not be built for `smtp_host`.
    #[error("could not set up TLS for the SMTP relay")]
    Tls(#[source] smtp::Error),
}

/// Sends patients email through an SMTP relay. One connection per message: reminders and
/// replies are few per patient, and a fresh connection never carries a stale session.
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    settings: EmailSettings,
    from: Mailbox,
    unsubscribe_base_url: Url,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// Checks the settings and prepares the SMTP transport; connects nothing yet.
    pub fn new(settings: EmailSettings) -> Result<Self, EmailConfigError> {
        if settings.signing_key.expose_secret().len() < MIN_SIGNING_KEY_BYTES {
            return Err(EmailConfigError::SigningKeyTooShort);
        }
        let unsubscribe_base_url = Url::parse(&settings.unsubscribe_base_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or(EmailConfigError::UnsubscribeUrl)?;
        let domain = &settings.message_id_domain;
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(EmailConfigError::MessageIdDomain);
        }
        let from_address: Address = settings
            .from_address
            .as_str()
            .parse()
            .map_err(|_| EmailConfigError::FromAddress)?;
        let from = Mailbox::new(Some(settings.from_name.clone()), from_address);

        let tls = match settings.smtp_tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(
                TlsParameters::new(settings.smtp_host.clone()).map_err(EmailConfigError::Tls)?,
            ),
            SmtpTls::Tls => Tls::Wrapper(
                TlsParameters::new(settings.smtp_host.clone()).map_err(EmailConfigError::Tls)?,
            ),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.smtp_host.clone())
                .port(settings.smtp_port)
                .tls(tls)
                .timeout(Some(settings.command_timeout()));
        match (&settings.smtp_username, &settings.smtp_password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose_secret().to_owned(),
                ));
            }
            (None, None) => {}
            _ => return Err(EmailConfigError::PartialCredentials),
        }
        Ok(Self {
            transport: builder.build(),
            settings,
            from,
            unsubscribe_base_url,
        })
    }

    /// The `Message-ID` of a message (without angle brackets, as [`super::parse_inbound`]
    /// reports ids): derived from careloop's id alone, so a retried send carries the same id and
    /// the patient's mail program shows one message.
    pub fn message_id_for(&self, message_id: careloop_core::MessageId) -> String {
        format!("careloop.{message_id}@{}", self.settings.message_id_domain)
    }

    /// The one-click unsubscribe URL for a patient.
    pub fn unsubscribe_url(
        &self,
        organization: careloop_core::OrganizationId,
        patient: careloop_core::PatientId,
    ) -> Url {
        let token = unsubscribe_token(
            self.settings.signing_key.expose_secret().as_bytes(),
            organization,
            patient,
        );
        let mut url = self.unsubscribe_base_url.clone();
        url.query_pairs_mut().append_pair("token", &token);
        url
    }

    /// Sends a plain-text notice to staff (an alert for the care team) through the same relay,
    /// from the same sender. Staff notices carry ids and categories, never a patient's words.
    pub async fn send_notice(
        &self,
        to: &[careloop_core::EmailAddress],
        subject: &str,
        text: &str,
    ) -> Result<(), SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        let mut any = false;
        for address in to {
            if let Ok(address) = address.as_str().parse::<Address>() {
                builder = builder.to(Mailbox::new(None, address));
                any = true;
            }
        }
        if !any {
            return Err(SendError::Permanent {
                reason: "no usable recipient address".to_owned(),
            });
        }
        let email = builder
            .body(text.to_owned())
            .map_err(|e| SendError::Permanent {
                reason: format!("the notice could not be built: {e}"),
            })?;
        let sent = tokio::time::timeout(self.settings.send_timeout(), self.transport.send(email))
            .await
            .map_err(|_| SendError::Transient {
                reason: "the SMTP relay did not finish in time".to_owned(),
                retry_after: None,
            })?;
        sent.map(|_| ()).map_err(|e| classify_smtp_error(&e))
    }

    /// Builds the MIME message for `message`; what [`Channel::send`] hands to the relay.
    pub fn build_message(&self, message: &OutboundMessage) -> Result<Message, SendError> {
        let ChannelAddress::Email(to) = &message.address else {
            return Err(SendError::Permanent {
                reason: "the address is not an email address".to_owned(),
            });
        };
        let to: Address = to.as_str().parse().map_err(|_| SendError::Permanent {
            reason: "the recipient address is not usable for SMTP".to_owned(),
        })?;
        let meta = &message.meta;
        let language = message.language;
        let subject = meta
            .subject
            .clone()
            .unwrap_or_else(|| default_subject(language, meta.purpose).to_owned());
        let unsubscribe_url = self.unsubscribe_url(message.organization_id, message.patient_id);
        // Only messages that need consent offer unsubscribing in the text; the header is on
        // every message so mail programs always show their button.
        let footer = meta
            .purpose
            .needs_consent()
            .then(|| (unsubscribe_label(language), unsubscribe_url.as_str()));

        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(subject.clone())
            .message_id(Some(format!(
                "<{}>",
                self.message_id_for(message.message_id)
            )))
            .header(ListUnsubscribe(format!("<{unsubscribe_url}>")))
            .header(ListUnsubscribePost("List-Unsubscribe=One-Click".to_owned()));
        if let Some(language) = language {
            builder = builder.header(ContentLanguage(language.code().to_owned()));
        }
        if let Some(parent) = meta
            .in_reply_to
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let parent = angle_bracketed(parent);
            builder = builder.in_reply_to(parent.clone()).references(parent);
        }
        if matches!(meta.purpose, Purpose::Reminder | Purpose::Campaign) {
            builder = builder
                .header(AutoSubmitted("auto-generated".to_owned()))
                // Asks Exchange not to answer reminders with out-of-office replies.
                .header(XAutoResponseSuppress("OOF, AutoReply".to_owned()));
        }
        let text = plain_text(&message.body, footer);
        let html = html_document(&message.body, language, &subject, footer);
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|error| SendError::Permanent {
                reason: format!("could not build the message: {error}"),
            })
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.message_id, purpose = ?message.meta.purpose))]
    async fn send(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let email = self.build_message(message)?;
        let sent = tokio::time::timeout(self.settings.send_timeout(), self.transport.send(email))
            .await
            .map_err(|_| SendError::Transient {
                reason: "the SMTP relay did not finish in time".to_owned(),
                retry_after: None,
            })?;
        match sent {
            Ok(_) => {
                tracing::info!("email accepted by the relay");
                Ok(Sent {
                    provider_message_id: Some(self.message_id_for(message.message_id)),
                    delivered: false,
                })
            }
            Err(error) => {
                let mapped = classify_smtp_error(&error);
                tracing::warn!(error = %mapped, "email not accepted");
                Err(mapped)
            }
        }
    }
}

/// Maps an SMTP failure to what the outbox should do. The reason names the reply code only:
/// servers echo the recipient address in their text.
fn classify_smtp_error(error: &smtp::Error) -> SendError {
    let Some(code) = error.status() else {
        return if error.is_client() {
            SendError::Permanent {
                reason: "SMTP client error".to_owned(),
            }
        } else {
            let what = if error.is_timeout() {
                "timed out"
            } else if error.is_tls() {
                "TLS failure"
            } else {
                "connection failure"
            };
            SendError::Transient {
                reason: format!("SMTP relay: {what}"),
                retry_after: None,
            }
        };
    };
    let basic = code.to_string();
    let enhanced = error
        .source()
        .and_then(|text| enhanced_status(&text.to_string()));
    let reason = match &enhanced {
        Some(enhanced) => format!("SMTP {basic} {enhanced}"),
        None => format!("SMTP {basic}"),
    };
    match code.severity {
        Severity::TransientNegativeCompletion => SendError::Transient {
            reason,
            retry_after: None,
        },
        Severity::PermanentNegativeCompletion => {
            // RFC 3463: X.1.x is about the address, X.2.1 a disabled mailbox. A 550 for policy
            // (5.7.1 spam, relaying denied) is not about the patient's mailbox.
            let about_recipient = match enhanced.as_deref() {
                Some(enhanced) => enhanced.starts_with("5.1.") || enhanced == "5.2.1",
                None => matches!(basic.as_str(), "550" | "551" | "553"),
            };
            if about_recipient {
                SendError::Unreachable { reason }
            } else {
                SendError::Permanent { reason }
            }
        }
        _ => SendError::Transient {
            reason: format!("unexpected SMTP reply {basic}"),
            retry_after: None,
        },
    }
}

/// The RFC 3463 enhanced status code (`5.1.1`) a reply text starts with, if any.
fn enhanced_status(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let numeric = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && numeric(subject, 3)
        && numeric(detail, 3))
    .then(|| first.to_owned())
}

fn angle_bracketed(id: &str) -> String {
    let id = id.trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

/// The subject used when the message has none, in the patient's language (English when unknown).
pub fn default_subject(language: Option<Language>, purpose: Purpose) -> &'static str {
    let language = language.unwrap_or(Language::English);
    match purpose {
        Purpose::Reminder => match language {
            Language::English => "Medication reminder",
            Language::Spanish => "Recordatorio de medicación",
            Language::French => "Rappel de médicament",
            Language::German => "Erinnerung an Ihre Medikamente",
            Language::Portuguese => "Lembrete de medicação",
            Language::Arabic => "تذكير بالدواء",
        },
        Purpose::Reply | Purpose::Campaign => match language {
            Language::English => "Your care team",
            Language::Spanish => "Su equipo de atención",
            Language::French => "Votre équipe soignante",
            Language::German => "Ihr Behandlungsteam",
            Language::Portuguese => "Sua equipe de cuidados",
            Language::Arabic => "فريق الرعاية الخاص بك",
        },
    }
}

fn unsubscribe_label(language: Option<Language>) -> &'static str {
    match language.unwrap_or(Language::English) {
        Language::English => "Stop these emails",
        Language::Spanish => "Dejar de recibir estos correos",
        Language::French => "Ne plus recevoir ces e-mails",
        Language::German => "Diese E-Mails abbestellen",
        Language::Portuguese => "Deixar de receber estes e-mails",
        Language::Arabic => "إيقاف هذه الرسائل",
    }
}

fn plain_text(body: &str, footer: Option<(&str, &str)>) -> String {
    let mut text = normalize_newlines(body).trim_end().to_owned();
    if let Some((label, url)) = footer {
        // Infallible: writing to a String.
        let _ = write!(text, "\n\n--\n{label}: {url}");
    }
    text.push('\n');
    text
}

/// The HTML alternative: the escaped text in paragraphs (a blank line starts one, a single line
/// break stays a `<br>`), with the language and its direction on the root element.
pub fn html_document(
    body: &str,
    language: Option<Language>,
    title: &str,
    footer: Option<(&str, &str)>,
) -> String {
    let mut html = String::with_capacity(body.len() * 2 + 512);
    html.push_str("<!DOCTYPE html>\n<html");
    if let Some(language) = language {
        let dir = if language.is_rtl() { "rtl" } else { "ltr" };
        let _ = write!(html, " lang=\"{}\" dir=\"{dir}\"", language.code());
    }
    html.push_str(
        ">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    push_escaped(&mut html, title);
    html.push_str(
        "</title>\n</head>\n<body style=\"font-family: sans-serif; font-size: 16px; \
         line-height: 1.5;\">\n",
    );
    let body = normalize_newlines(body);
    for paragraph in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        html.push_str("<p>");
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                html.push_str("<br>\n");
            }
            push_escaped(&mut html, line.trim_end());
        }
        html.push_str("</p>\n");
    }
    if let Some((label, url)) = footer {
        html.push_str("<hr>\n<p style=\"font-size: 13px; color: #555;\"><a href=\"");
        push_escaped(&mut html, url);
        html.push_str("\">");
        push_escaped(&mut html, label);
        html.push_str("</a></p>\n");
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn normalize_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A header lettre has no type for, sent as given (ASCII values only).
macro_rules! raw_header {
    ($($ty:ident => $name:literal),* $(,)?) => {$(
        #[derive(Clone)]
        struct $ty(String);

        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_owned()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    )*};
}

raw_header!(
    ListUnsubscribe => "List-Unsubscribe",
    ListUnsubscribePost => "List-Unsubscribe-Post",
    AutoSubmitted => "Auto-Submitted",
    XAutoResponseSuppress => "X-Auto-Response-Suppress",
    ContentLanguage => "Content-Language",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_split_in_paragraphs() {
        let html = html_document(
            "Take <b>one</b> & \"two\"\nwith water.\r\n\r\nCall us.",
            Some(Language::Arabic),
            "T&C",
            None,
        );
        assert!(html.contains("<html lang=\"ar\" dir=\"rtl\">"), "{html}");
        assert!(html.contains("<title>T&amp;C</title>"));
        assert!(html.contains(
            "<p>Take &lt;b&gt;one&lt;/b&gt; &amp; &quot;two&quot;<br>\nwith water.</p>\n<p>Call us.</p>"
        ));
        let html = html_document("Hi", Some(Language::German), "x", None);
        assert!(html.contains("<html lang=\"de\" dir=\"ltr\">"));
        assert!(html_document("Hi", None, "x", None).contains("<html>"));
    }

    #[test]
    fn enhanced_status_codes_are_recognized() {
        assert_eq!(
            enhanced_status("5.1.1 <a@b.org>: unknown user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("4.7.0 try later").as_deref(), Some("4.7.0"));
        assert_eq!(enhanced_status("Mailbox unavailable"), None);
        assert_eq!(enhanced_status("5.1 nope"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn every_language_has_default_subjects() {
        for &language in Language::ALL {
            for purpose in [Purpose::Reply, Purpose::Reminder, Purpose::Campaign] {
                assert!(!default_subject(Some(language), purpose).is_empty());
            }
        }
        assert_eq!(default_subject(None, Purpose::Reply), "Your care team");
    }
}
