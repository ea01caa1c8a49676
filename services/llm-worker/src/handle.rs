//! [`EngineHandle`]: an [`LlmService`] that exists before the model is loaded.

use std::sync::{Arc, OnceLock};

use careloop_llm_api::{Completion, GenerationRequest, LlmError, LlmService, TokenStream};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tracing::error;

use crate::engine::MistralEngine;
use crate::error::LoadError;
use crate::settings::LlmSettings;

/// Where the background load stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadState {
    Loading,
    Ready,
    Failed(LoadError),
}

/// Starts not ready (`generate` answers `NotReady`) and becomes ready when the
/// background load finishes, so a server can answer `/healthz` at once and `/readyz`
/// once the model is there. Cheap to clone; all clones see the same engine.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    model_id: String,
    engine: OnceLock<MistralEngine>,
    state: watch::Sender<LoadState>,
}

impl EngineHandle {
    /// Starts loading `settings.model_path` on a dedicated thread and returns at once.
    /// Needs no Tokio runtime; the load happens once.
    pub fn load_in_background(settings: LlmSettings) -> Self {
        let handle = Self::loading(settings.effective_model_id());
        let loader = handle.clone();
        let path = settings.model_path.clone();
        let spawned = std::thread::Builder::new()
            .name("careloop-llm-load".into())
            .spawn(move || loader.finish(MistralEngine::load_blocking(settings)));
        if let Err(e) = spawned {
            handle.finish(Err(LoadError::Backend {
                path,
                reason: format!("cannot start the loader thread: {e}"),
            }));
        }
        handle
    }

    /// A handle that is ready at once.
    pub fn from_engine(engine: MistralEngine) -> Self {
        let handle = Self::loading(engine.model_id());
        handle.finish(Ok(engine));
        handle
    }

    fn loading(model_id: String) -> Self {
        Self {
            inner: Arc::new(HandleInner {
                model_id,
                engine: OnceLock::new(),
                state: watch::Sender::new(LoadState::Loading),
            }),
        }
    }

    fn finish(&self, result: Result<MistralEngine, LoadError>) {
        match result {
            Ok(engine) => {
                // Set the engine before announcing readiness.
                let _ = self.inner.engine.set(engine);
                self.inner.state.send_replace(LoadState::Ready);
            }
            Err(e) => {
                error!(model_id = %self.inner.model_id, error = %e, "LLM model failed to load");
                self.inner.state.send_replace(LoadState::Failed(e));
            }
        }
    }

    pub fn state(&self) -> LoadState {
        self.inner.state.borrow().clone()
    }

    /// Waits for the end of the load.
    pub async fn wait_ready(&self) -> Result<(), LoadError> {
        let mut rx = self.inner.state.subscribe();
        let state = rx
            .wait_for(|state| !matches!(state, LoadState::Loading))
            .await
            .map(|state| state.clone())
            // Unreachable: `self` keeps the sender alive.
            .unwrap_or(LoadState::Loading);
        match state {
            LoadState::Ready => Ok(()),
            LoadState::Failed(e) => Err(e),
            LoadState::Loading => Err(LoadError::InvalidSettings(
                "the load state channel closed".into(),
            )),
        }
    }

    /// The engine, once loaded.
    pub fn engine(&self) -> Option<&MistralEngine> {
        self.inner.engine.get()
    }
}

impl LlmService for EngineHandle {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        match self.engine() {
            Some(engine) => engine.generate(req),
            None => Box::pin(async { Err(LlmError::NotReady) }),
        }
    }

    fn complete(&self, req: GenerationRequest) -> BoxFuture<'_, Result<Completion, LlmError>> {
        match self.engine() {
            Some(engine) => engine.complete(req),
            None => Box::pin(async { Err(LlmError::NotReady) }),
        }
    }

    fn model_id(&self) -> String {
        self.inner.model_id.clone()
    }

    fn is_ready(&self) -> bool {
        self.engine().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use careloop_llm_api::ChatMessage;

    #[tokio::test]
    async fn a_failed_load_stays_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let handle =
            EngineHandle::load_in_background(LlmSettings::for_model(dir.path().join("m.gguf")));
        assert!(!handle.is_ready());
        let err = handle.wait_ready().await.unwrap_err();
        assert!(matches!(err, LoadError::ModelMissing { .. }), "{err}");
        assert!(matches!(handle.state(), LoadState::Failed(_)));
        assert_eq!(handle.model_id(), "m");
        let req = GenerationRequest::new(vec![ChatMessage::user("hi")]);
        assert_eq!(handle.complete(req).await.unwrap_err(), LlmError::NotReady);
    }
}
