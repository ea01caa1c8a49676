//! An in-memory [`LlmService`] for tests of the crates that use the API
//! (feature `test-util`). It follows the stream contract of the crate docs.

use std::collections::VecDeque;

use futures::future::BoxFuture;
use futures::stream;

use crate::{
    Completion, FinishReason, GenerationEvent, GenerationRequest, LlmError, LlmService,
    TokenStream, Usage,
};

/// Answers every request with the same scripted tokens, instantly.
///
/// Honours `max_tokens` (finish reason `Length` when it cuts), the cancel token (checked
/// before every item) and validation; `with_ready(false)` makes it answer `NotReady`,
/// `with_error` makes `generate` fail with the given error.
#[derive(Clone, Debug)]
pub struct ScriptedLlm {
    model_id: String,
    tokens: Vec<String>,
    ready: bool,
    error: Option<LlmError>,
}

impl ScriptedLlm {
    pub fn new(
        model_id: impl Into<String>,
        tokens: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            model_id: model_id.into(),
            tokens: tokens.into_iter().map(Into::into).collect(),
            ready: true,
            error: None,
        }
    }

    #[must_use]
    pub fn with_ready(mut self, ready: bool) -> Self {
        self.ready = ready;
        self
    }

    #[must_use]
    pub fn with_error(mut self, error: LlmError) -> Self {
        self.error = Some(error);
        self
    }
}

impl LlmService for ScriptedLlm {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        Box::pin(async move {
            if !self.ready {
                return Err(LlmError::NotReady);
            }
            req.validate()?;
            if let Some(error) = &self.error {
                return Err(error.clone());
            }
            let limit = usize::try_from(req.max_tokens).unwrap_or(usize::MAX);
            let tokens: VecDeque<String> = self.tokens.iter().take(limit).cloned().collect();
            let finish_reason = if self.tokens.len() > limit {
                FinishReason::Length
            } else {
                FinishReason::Stop
            };
            let completion = Completion {
                text: tokens.iter().map(String::as_str).collect(),
                usage: Usage {
                    prompt_tokens: u32::try_from(req.messages.len()).unwrap_or(u32::MAX),
                    completion_tokens: u32::try_from(tokens.len()).unwrap_or(u32::MAX),
                },
                model_id: self.model_id.clone(),
                finish_reason,
            };
            let state = Some((tokens, completion, req.cancel));
            let events = stream::unfold(state, |state| async move {
                let (mut tokens, completion, cancel) = state?;
                if cancel.is_cancelled() {
                    return Some((Err(LlmError::Cancelled), None));
                }
                match tokens.pop_front() {
                    Some(token) => Some((
                        Ok(GenerationEvent::Token(token)),
                        Some((tokens, completion, cancel)),
                    )),
                    None => Some((Ok(GenerationEvent::Done(completion)), None)),
                }
            });
            Ok(Box::pin(events) as TokenStream)
        })
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn is_ready(&self) -> bool {
        self.ready
    }
}
