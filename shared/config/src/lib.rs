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
    /// Reminder jobs one worker process runs at once.
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
    ("queue.concurrency", "8"),
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
        if self.queue.concurrency == 0 {
            return Err(invalid("queue.concurrency", "must be at least 1"));
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
