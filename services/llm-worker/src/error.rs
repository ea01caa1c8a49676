//! Errors of loading the model.

use std::path::PathBuf;

/// Why the model could not be loaded. Messages name the file; never patient data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The model file does not exist (a fresh clone before set-up).
    #[error(
        "model file {} not found; run `./careloop.sh setup` to download the model",
        path.display()
    )]
    ModelMissing { path: PathBuf },
    /// The file exists but is not a GGUF model mistral.rs can run.
    #[error(
        "model file {} is not a valid GGUF model ({reason}); delete it and run `./careloop.sh setup` again",
        path.display()
    )]
    InvalidModel { path: PathBuf, reason: String },
    /// The inference backend could not start (device unavailable, loader thread died).
    #[error("the inference backend failed to start for {}: {reason}", path.display())]
    Backend { path: PathBuf, reason: String },
    /// The settings are unusable (e.g. `max_concurrent = 0`).
    #[error("invalid LLM settings: {0}")]
    InvalidSettings(String),
}
