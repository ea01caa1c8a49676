//! How the email channel reaches its SMTP relay and what it writes into every message.

use std::time::Duration;

use careloop_core::EmailAddress;
use secrecy::SecretString;
use serde::Deserialize;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text; only for a relay on the same host or in tests.
    None,
    /// Plain connection upgraded with `STARTTLS`, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The email channel's settings. Only the sender address and the signing key have no default;
/// [`EmailChannel::new`](super::EmailChannel::new) refuses what cannot work (a short signing
/// key, a malformed unsubscribe URL).
#[derive(Clone, Deserialize)]
pub struct EmailSettings {
    /// SMTP relay host name (also the name its TLS certificate must carry).
    #[serde(default = "default_smtp_host")]
    pub smtp_host: String,
    /// Default 587 (submission with `STARTTLS`).
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Default `starttls`.
    #[serde(default)]
    pub smtp_tls: SmtpTls,
    /// Both or neither: authentication is only attempted with a user name and a password.
    #[serde(default)]
    pub smtp_username: Option<String>,
    /// See `smtp_username`.
    #[serde(default)]
    pub smtp_password: Option<SecretString>,
    /// The `From` address patients see and reply to.
    pub from_address: EmailAddress,
    /// The `From` display name ("Riverside Clinic").
    #[serde(default = "default_from_name")]
    pub from_name: String,
    /// The domain part of every `Message-ID` (`<careloop.{message id}@{domain}>`).
    #[serde(default = "default_message_id_domain")]
    pub message_id_domain: String,
    /// The one-click unsubscribe endpoint; the token is appended as `?token=`.
    #[serde(default = "default_unsubscribe_base_url")]
    pub unsubscribe_base_url: String,
    /// Key for unsubscribe tokens ([`unsubscribe_token`](super::unsubscribe_token)); at least
    /// [`MIN_SIGNING_KEY_BYTES`](super::MIN_SIGNING_KEY_BYTES) bytes.
    pub signing_key: SecretString,
    /// Limit for connecting and for each SMTP command.
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
    /// Limit for a whole send, however the server trickles its answers.
    #[serde(default = "default_send_timeout_secs")]
    pub send_timeout_secs: u64,
}

impl EmailSettings {
    /// [`Self::command_timeout_secs`] as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// [`Self::send_timeout_secs`] as a duration.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }
}

fn default_smtp_host() -> String {
    "localhost".to_owned()
}
fn default_smtp_port() -> u16 {
    587
}
fn default_from_name() -> String {
    "careloop".to_owned()
}
fn default_message_id_domain() -> String {
    "localhost".to_owned()
}
fn default_unsubscribe_base_url() -> String {
    "http://127.0.0.1:8080/email/unsubscribe".to_owned()
}
fn default_command_timeout_secs() -> u64 {
    30
}
fn default_send_timeout_secs() -> u64 {
    60
}

// Passwords and keys are `SecretString`s (redacted by their own `Debug`); the user name and the
// sender address are still left out, so the settings can be logged whole.
impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_auth", &self.smtp_username.is_some())
            .field("message_id_domain", &self.message_id_domain)
            .field("command_timeout_secs", &self.command_timeout_secs)
            .field("send_timeout_secs", &self.send_timeout_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_configuration_takes_the_defaults() {
        let s: EmailSettings = serde_json::from_value(serde_json::json!({
            "smtp_host": "smtp.example.org",
            "smtp_tls": "tls",
            "from_address": "care@example.org",
            "signing_key": "k",
        }))
        .unwrap();
        assert_eq!(s.smtp_host, "smtp.example.org");
        assert_eq!(s.smtp_tls, SmtpTls::Tls);
        assert_eq!(s.smtp_port, 587);
        assert_eq!(s.from_address.as_str(), "care@example.org");
        assert_eq!(s.send_timeout(), Duration::from_secs(60));
        let shown = format!("{s:?}");
        assert!(!shown.contains("care@example.org"), "{shown}");
    }

    #[test]
    fn an_unknown_tls_mode_or_a_missing_sender_is_refused() {
        let r: Result<EmailSettings, _> = serde_json::from_value(serde_json::json!({
            "smtp_tls": "ssl", "from_address": "care@example.org", "signing_key": "k",
        }));
        assert!(r.is_err());
        let r: Result<EmailSettings, _> =
            serde_json::from_value(serde_json::json!({ "signing_key": "k" }));
        assert!(r.is_err());
    }
}
