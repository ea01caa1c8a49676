//! Typed settings for every careloop process.
//!
//! Layers, later wins: built-in defaults (the embedded mode: SQLite under `./data`, the SQLite-backed
//! queue, the LLM in process, 127.0.0.1:8080) → an optional TOML file → `CARELOOP_SECTION__KEY`
//! environment variables. Settings are passed in explicitly; there are no globals. URLs that may
//! carry passwords are [`SecretString`]s, so `Debug` never prints them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Where the embedded mode keeps its SQLite files.
    pub data_dir: PathBuf,
    /// Demo mode loads seed content as approved; otherwise it loads as draft for review.
    pub demo_mode: bool,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub llm: LlmSettings,
    pub content: ContentSettings,
    pub log: LogSettings,
    pub webchat: WebChatSettings,
    pub channels: ChannelSettings,
    pub reminders: ReminderSettings,
}

/// Reminder planning, adherence and the care team's alert mail.
#[derive(Debug, Clone, Deserialize)]
pub struct ReminderSettings {
    /// How far ahead schedules are planned (default 14 days) and how often the plan is extended
    /// (default hourly).
    pub plan_horizon_days: u32,
    pub plan_interval_secs: u64,
    /// A sent reminder with no answer after this long is a missed dose (default 120 minutes).
    pub missed_after_minutes: u32,
    /// Missed doses in a row that alert the care team (default 3).
    pub missed_streak: u32,
    /// How long after its due time a typed "taken" still answers a reminder (default 720).
    pub answer_window_minutes: u32,
    /// How long Snooze waits (default 30 minutes).
    pub snooze_minutes: u32,
    /// Mail new alerts to the organization's care-team and admin staff (needs email set up).
    pub alert_mail: bool,
    /// The staff dashboard, linked from alert mail.
    pub dashboard_url: Option<String>,
    /// A reminder claimed for sending but not sent after this long had its job lost (a queue
    /// that restarted empty, a worker that died before enqueueing): it is enqueued again
    /// (default 120 seconds; sending it twice is impossible, so this only bounds the delay).
    pub stale_after_secs: u64,
}

/// The patient channels, the outbox and inbound limits.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelSettings {
    pub telegram: TelegramSettings,
    pub email: EmailChannelSettings,
    pub outbox: OutboxSettings,
    pub limits: InboundLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelegramMode {
    /// Telegram posts updates to `/channels/telegram/webhook` (needs a public HTTPS URL).
    Webhook,
    /// The gateway asks Telegram for updates (`getUpdates`); for installs without a public URL.
    Polling,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelegramSettings {
    /// Off unless a token is configured and this is true.
    pub enabled: bool,
    /// The bot token from @BotFather.
    pub token: Option<SecretString>,
    /// The Bot API server; unset means Telegram's. Tests point it at a fake server.
    pub api_url: Option<String>,
    pub mode: TelegramMode,
    /// Webhook mode: the public URL Telegram should post to; when set, `setWebhook` is called on
    /// start. (Unset: the webhook is registered by hand.)
    pub webhook_url: Option<String>,
    /// Webhook mode: the secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (required).
    pub webhook_secret: Option<SecretString>,
    pub per_chat_per_second: u32,
    pub per_bot_per_second: u32,
    /// Least time between two edits of a streamed answer.
    pub draft_edit_interval_ms: u64,
    /// Polling mode: how long one `getUpdates` call waits for an update.
    pub poll_timeout_secs: u64,
}

impl TelegramSettings {
    /// The token when Telegram is enabled; an error when enabled without one.
    pub fn active_token(&self) -> Result<Option<&SecretString>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        match &self.token {
            Some(t) if !t.expose_secret().trim().is_empty() => Ok(Some(t)),
            _ => Err(ConfigError::Invalid {
                field: "channels.telegram.token",
                reason: "is required when channels.telegram.enabled is true".into(),
            }),
        }
    }
}

/// Email: SMTP out, inbound mail over a signed webhook and/or an IMAP mailbox. The `smtp` and
/// `imap` tables are passed as they are to the email adapter, which validates them
/// (`careloop_channels::email::{EmailSettings, ImapSettings}` name every key).
#[derive(Clone, Deserialize)]
pub struct EmailChannelSettings {
    pub enabled: bool,
    #[serde(default)]
    pub smtp: serde_json::Map<String, serde_json::Value>,
    /// Secret of `POST /channels/email/inbound` (`X-Careloop-Signature`); the route is off
    /// without it.
    pub webhook_secret: Option<SecretString>,
    /// An IMAP mailbox to poll for replies, when set.
    #[serde(default)]
    pub imap: Option<serde_json::Map<String, serde_json::Value>>,
    pub imap_poll_secs: u64,
}

impl std::fmt::Debug for EmailChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only key names: the tables hold passwords and addresses.
        f.debug_struct("EmailChannelSettings")
            .field("enabled", &self.enabled)
            .field("smtp", &self.smtp.keys().collect::<Vec<_>>())
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<secret>"),
            )
            .field(
                "imap",
                &self.imap.as_ref().map(|m| m.keys().collect::<Vec<_>>()),
            )
            .field("imap_poll_secs", &self.imap_poll_secs)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    /// How often the outbox looks for due messages (it is also woken in process).
    pub poll_interval_ms: u64,
    /// Attempts before a transiently failing message is given up.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
}

/// Limits on what patients and clients send in.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundLimits {
    /// Messages one patient (one chat, address or session) may send a minute before getting the
    /// polite "slow down" reply instead of an answer (red flags are still answered).
    pub per_patient_per_minute: u32,
    /// Requests one IP address may make a minute to the public conversation and web chat routes.
    pub per_ip_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Seconds the server waits for in-flight requests on shutdown.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://…`; unset means `sqlite://<data_dir>/careloop.sqlite`.
    pub url: Option<SecretString>,
    /// Apply pending migrations when `serve` starts (the embedded default). Scale-out deployments
    /// turn this off and run `careloop migrate up` as a release step.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// `redis://…` for scale-out; unset means the SQLite queue in `<data_dir>/queue.sqlite`.
    pub url: Option<SecretString>,
    /// Reminder jobs one worker process runs at once; a job carries up to 64 reminders that
    /// came due together, dispatched in one transaction.
    pub concurrency: usize,
    /// Prefix of every queue name, so deployments (or tests) sharing one Redis keep apart.
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    /// The model runs inside the serving process (embedded default).
    InProcess,
    /// Generation jobs go to LLM worker processes over Redis (scale-out).
    Remote,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LlmSettings {
    pub mode: LlmMode,
    /// A local GGUF file. Nothing is ever downloaded at run time.
    pub model_path: PathBuf,
    /// Name recorded in message provenance.
    pub model_id: String,
    /// Generations run at once by one engine.
    pub max_concurrency: usize,
    /// Requests waiting for a free slot before new ones are refused as overloaded. In `remote`
    /// mode also the bound on jobs waiting or running in the Redis worker pool.
    pub max_queue: usize,
    /// `remote` mode: seconds a job may go unrenewed before another LLM worker takes it over
    /// (a live worker renews its jobs every third of it). Default 10.
    pub lease_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentSettings {
    /// Folder of clinician content files imported at start-up.
    pub dir: PathBuf,
    /// Import the folder on `serve` (idempotent).
    pub import_on_start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info,careloop=debug`.
    pub filter: String,
}

/// The web chat: signed session tokens and the in-memory event logs of open sessions.
#[derive(Debug, Clone, Deserialize)]
pub struct WebChatSettings {
    /// Signs session tokens (at least 32 characters). Unset: a random key kept in
    /// `<data_dir>/webchat.key` (see [`Settings::webchat_key_path`]), created on first start with
    /// mode 0600, so tokens survive restarts. Gateways that verify each other's tokens
    /// (scale-out) set the same secret.
    pub signing_secret: Option<SecretString>,
    /// How long a session token is accepted (default 86,400: a day).
    pub token_ttl_secs: u64,
    /// Messages each session keeps for browsers that reconnect (default 32).
    pub buffer_events: usize,
    /// A session with no browser connected is forgotten after this long (default 1,800).
    pub idle_ttl_secs: u64,
    /// Sessions held in memory at once (default 100,000); past it new ones are refused.
    pub max_sessions: usize,
}

/// Where the queue lives, decided from the settings alone.
#[derive(Debug, Clone)]
pub enum QueueBackend {
    Sqlite { path: PathBuf },
    Redis { url: SecretString },
}

const DEFAULTS: &[(&str, &str)] = &[
    ("data_dir", "./data"),
    ("demo_mode", "true"),
    ("server.host", "127.0.0.1"),
    ("server.port", "8080"),
    ("server.shutdown_timeout_secs", "10"),
    ("database.migrate_on_start", "true"),
    ("queue.concurrency", "4"),
    ("queue.namespace", "careloop"),
    ("llm.mode", "in_process"),
    ("llm.model_path", "./models/SmolLM2-135M-Instruct.Q8_0.gguf"),
    ("llm.model_id", "SmolLM2-135M-Instruct"),
    ("llm.max_concurrency", "1"),
    ("llm.max_queue", "32"),
    ("llm.lease_secs", "10"),
    ("content.dir", "./content"),
    ("content.import_on_start", "true"),
    ("log.format", "json"),
    ("log.filter", "info"),
    ("webchat.token_ttl_secs", "86400"),
    ("webchat.buffer_events", "32"),
    ("webchat.idle_ttl_secs", "1800"),
    ("webchat.max_sessions", "100000"),
    ("channels.telegram.enabled", "false"),
    ("channels.telegram.mode", "webhook"),
    ("channels.telegram.per_chat_per_second", "1"),
    ("channels.telegram.per_bot_per_second", "30"),
    ("channels.telegram.draft_edit_interval_ms", "1000"),
    ("channels.telegram.poll_timeout_secs", "25"),
    ("channels.email.enabled", "false"),
    ("channels.email.imap_poll_secs", "30"),
    ("channels.outbox.poll_interval_ms", "1000"),
    ("channels.outbox.max_attempts", "8"),
    ("channels.outbox.backoff_base_ms", "2000"),
    ("channels.outbox.backoff_max_ms", "600000"),
    ("channels.limits.per_patient_per_minute", "20"),
    ("channels.limits.per_ip_per_minute", "120"),
    ("reminders.plan_horizon_days", "14"),
    ("reminders.plan_interval_secs", "3600"),
    ("reminders.missed_after_minutes", "120"),
    ("reminders.missed_streak", "3"),
    ("reminders.answer_window_minutes", "720"),
    ("reminders.snooze_minutes", "30"),
    ("reminders.alert_mail", "true"),
    ("reminders.stale_after_secs", "120"),
];

impl Settings {
    /// Defaults, then `file` (which must exist when given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        for (key, value) in DEFAULTS {
            builder = builder.set_default(*key, *value)?;
        }
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("CARELOOP_") && k != "CARELOOP_CONFIG")
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("CARELOOP")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        if self.llm.max_concurrency == 0 {
            return Err(invalid("llm.max_concurrency", "must be at least 1"));
        }
        if self.llm.lease_secs == 0 {
            return Err(invalid("llm.lease_secs", "must be at least 1"));
        }
        if self
            .webchat
            .signing_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().len() < 32)
        {
            return Err(invalid(
                "webchat.signing_secret",
                "must be at least 32 characters",
            ));
        }
        if self.webchat.token_ttl_secs < 60 {
            return Err(invalid("webchat.token_ttl_secs", "must be at least 60"));
        }
        if !(1..=10_000).contains(&self.webchat.buffer_events) {
            return Err(invalid("webchat.buffer_events", "must be 1-10000"));
        }
        if self.webchat.idle_ttl_secs == 0 {
            return Err(invalid("webchat.idle_ttl_secs", "must be at least 1"));
        }
        if self.webchat.max_sessions == 0 {
            return Err(invalid("webchat.max_sessions", "must be at least 1"));
        }
        if self.queue.concurrency == 0 {
            return Err(invalid("queue.concurrency", "must be at least 1"));
        }
        let r = &self.reminders;
        if !(1..=366).contains(&r.plan_horizon_days) {
            return Err(invalid("reminders.plan_horizon_days", "must be 1-366"));
        }
        if r.plan_interval_secs == 0 {
            return Err(invalid(
                "reminders.plan_interval_secs",
                "must be at least 1",
            ));
        }
        if !(1..=10_080).contains(&r.missed_after_minutes) {
            return Err(invalid("reminders.missed_after_minutes", "must be 1-10080"));
        }
        if !(1..=100).contains(&r.missed_streak) {
            return Err(invalid("reminders.missed_streak", "must be 1-100"));
        }
        if !(1..=10_080).contains(&r.answer_window_minutes) {
            return Err(invalid(
                "reminders.answer_window_minutes",
                "must be 1-10080",
            ));
        }
        if !(1..=1_440).contains(&r.snooze_minutes) {
            return Err(invalid("reminders.snooze_minutes", "must be 1-1440"));
        }
        if !(5..=86_400).contains(&r.stale_after_secs) {
            return Err(invalid("reminders.stale_after_secs", "must be 5-86400"));
        }
        let telegram = &self.channels.telegram;
        if telegram.active_token()?.is_some() && telegram.mode == TelegramMode::Webhook {
            let secret_ok = telegram.webhook_secret.as_ref().is_some_and(|s| {
                let s = s.expose_secret();
                (16..=256).contains(&s.len())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !secret_ok {
                return Err(invalid(
                    "channels.telegram.webhook_secret",
                    "is required in webhook mode: 16-256 characters of A-Z, a-z, 0-9, '_' or '-'",
                ));
            }
        }
        if telegram.per_chat_per_second == 0 || telegram.per_bot_per_second == 0 {
            return Err(invalid(
                "channels.telegram.per_chat_per_second",
                "rates must be at least 1",
            ));
        }
        if self.channels.outbox.max_attempts == 0 {
            return Err(invalid(
                "channels.outbox.max_attempts",
                "must be at least 1",
            ));
        }
        if self.channels.limits.per_patient_per_minute == 0
            || self.channels.limits.per_ip_per_minute == 0
        {
            return Err(invalid(
                "channels.limits.per_patient_per_minute",
                "limits must be at least 1",
            ));
        }
        let namespace_ok = !self.queue.namespace.is_empty()
            && self.queue.namespace.len() <= 64
            && self
                .queue
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !namespace_ok {
            return Err(invalid(
                "queue.namespace",
                "must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            ));
        }
        if let Some(url) = &self.database.url {
            let url = url.expose_secret();
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "database.url",
                    "must start with sqlite: or postgres://",
                ));
            }
        }
        if let Some(url) = &self.queue.url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "queue.url",
                    "must start with redis:// (leave unset for the SQLite queue)",
                ));
            }
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in `data_dir`.
    pub fn database_url(&self) -> SecretString {
        match &self.database.url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("careloop.sqlite").display()
            )),
        }
    }

    /// Where the web chat signing key is kept when `webchat.signing_secret` is unset.
    pub fn webchat_key_path(&self) -> PathBuf {
        self.data_dir.join("webchat.key")
    }

    pub fn queue_backend(&self) -> QueueBackend {
        match &self.queue.url {
            Some(url) => QueueBackend::Redis { url: url.clone() },
            None => QueueBackend::Sqlite {
                path: self.data_dir.join("queue.sqlite"),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_mode() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.llm.mode, LlmMode::InProcess);
        assert!(
            s.database_url()
                .expose_secret()
                .starts_with("sqlite://./data/careloop.sqlite")
        );
        assert!(
            matches!(s.queue_backend(), QueueBackend::Sqlite { path } if path.ends_with("queue.sqlite"))
        );
    }

    #[test]
    fn environment_switches_storage_and_queue() {
        let s = Settings::load_from(
            None,
            env(&[
                (
                    "CARELOOP_DATABASE__URL",
                    "postgres://careloop:hunter2@db/careloop",
                ),
                ("CARELOOP_QUEUE__URL", "redis://127.0.0.1:6379"),
                ("CARELOOP_SERVER__PORT", "9000"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9000);
        assert!(matches!(s.queue_backend(), QueueBackend::Redis { .. }));
        assert!(s.database_url().expose_secret().starts_with("postgres://"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Settings::load_from(
            None,
            env(&[(
                "CARELOOP_DATABASE__URL",
                "postgres://careloop:hunter2@db/careloop",
            )]),
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn file_layer_then_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("careloop.toml");
        std::fs::write(
            &file,
            "[server]\nport = 7000\nhost = \"0.0.0.0\"\n[llm]\nmax_concurrency = 4\n",
        )
        .unwrap();
        let s =
            Settings::load_from(Some(&file), env(&[("CARELOOP_SERVER__PORT", "7001")])).unwrap();
        assert_eq!(s.server.port, 7001);
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.llm.max_concurrency, 4);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err =
            Settings::load_from(None, env(&[("CARELOOP_QUEUE__URL", "amqp://x")])).unwrap_err();
        assert!(err.to_string().contains("queue.url"), "{err}");
        let err =
            Settings::load_from(None, env(&[("CARELOOP_LLM__MAX_CONCURRENCY", "0")])).unwrap_err();
        assert!(err.to_string().contains("llm.max_concurrency"), "{err}");
        let err =
            Settings::load_from(None, env(&[("CARELOOP_SERVER__PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("port"), "{err}");
        let err = Settings::load_from(Some(Path::new("/nonexistent/careloop.toml")), env(&[]))
            .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
