//! Settings of the in-process LLM engine (a plain serde struct; the config crate
//! deserializes into it).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::device;

/// How to load and run the local model. Every field has a serde default.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct LlmSettings {
    /// Local GGUF file (tokenizer and chat template are read from its metadata).
    /// A relative path is resolved against the process's working directory.
    pub model_path: PathBuf,
    /// Reported as `Completion::model_id`; `None` uses the file name without `.gguf`.
    pub model_id: Option<String>,
    /// Generations running at once (mistral.rs batches them). Default 1 on the CPU,
    /// 8 with the `cuda` feature.
    pub max_concurrent: usize,
    /// Requests allowed to wait for a generation slot; more are refused with
    /// `LlmError::Overloaded`.
    pub max_queued: usize,
    /// Longest wait for a generation slot (the request's own timeout may be shorter);
    /// then `LlmError::TimedOut`.
    pub queue_timeout_ms: u64,
}

impl LlmSettings {
    pub const DEFAULT_MODEL_PATH: &'static str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    pub const DEFAULT_MAX_QUEUED: usize = 32;
    pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 30_000;

    /// Defaults with another model file.
    pub fn for_model(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            ..Self::default()
        }
    }

    /// `model_id`, or the model file's name without its `.gguf` extension.
    pub fn effective_model_id(&self) -> String {
        if let Some(id) = self.model_id.as_deref().filter(|id| !id.trim().is_empty()) {
            return id.to_owned();
        }
        self.model_path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local-gguf".to_owned())
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            model_path: PathBuf::from(Self::DEFAULT_MODEL_PATH),
            model_id: None,
            max_concurrent: device::DEFAULT_MAX_CONCURRENT,
            max_queued: Self::DEFAULT_MAX_QUEUED,
            queue_timeout_ms: Self::DEFAULT_QUEUE_TIMEOUT_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields() {
        let s: LlmSettings = serde_json::from_str(r#"{"model_path":"/m/x.gguf"}"#).unwrap();
        assert_eq!(s.model_path, PathBuf::from("/m/x.gguf"));
        assert_eq!(s.max_queued, 32);
        assert_eq!(s.max_concurrent, device::DEFAULT_MAX_CONCURRENT);
        assert_eq!(s.effective_model_id(), "x");
        assert_eq!(s.queue_timeout(), Duration::from_secs(30));

        let empty: LlmSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, LlmSettings::default());
        assert_eq!(empty.effective_model_id(), "SmolLM2-135M-Instruct.Q4_1");

        let named = LlmSettings {
            model_id: Some("smollm2".into()),
            ..LlmSettings::default()
        };
        assert_eq!(named.effective_model_id(), "smollm2");
    }
}
