//! # careloop-llm-api
//!
//! The LLM service API that the rest of careloop programs against: request and event
//! types plus the object-safe [`LlmService`] trait. It has no inference backend and no
//! dependency on mistral.rs; `careloop-llm` implements it in process, and a later Redis
//! worker pool can implement it remotely (the request, event and error types are serde
//! types for that reason; the cancellation token is not serialized).
//!
//! ## Invariants
//!
//! * **Stream contract.** A [`TokenStream`] yields zero or more
//!   [`GenerationEvent::Token`] items followed by exactly one terminal item, either
//!   `Ok(GenerationEvent::Done(..))` or `Err(LlmError)`, and then ends. The text of
//!   `Done` is the concatenation of all `Token`s of that stream after its last
//!   [`GenerationEvent::Reset`] (if any).
//! * **Reset.** A remote transport whose job was taken over by another worker (the first
//!   one died) restarts the answer: it yields [`GenerationEvent::Reset`], meaning "discard
//!   the text received so far", followed by the tokens of the new attempt. In-process
//!   engines never yield it. A caller that only needs the final answer can ignore it:
//!   `Done.text` is always authoritative.
//! * **Dropping the stream cancels the generation**, exactly like cancelling
//!   [`GenerationRequest::cancel`]; implementations must stop spending compute on it.
//! * **Deadline.** [`GenerationRequest::timeout`] is a budget relative to the moment
//!   the service accepts the request (the call to [`LlmService::generate`]); it covers
//!   the queue wait *and* the generation. It is a `Duration`, not an `Instant`, so it
//!   can cross a process boundary; a remote transport should ship the *remaining* budget.
//! * **No patient text in logs.** `Debug` of the types that carry prompt or answer text
//!   ([`ChatMessage`], [`Completion`], [`GenerationEvent`]) prints lengths only, so that
//!   a stray `?request` in a `tracing` call cannot leak patient data.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
pub use tokio_util::sync::CancellationToken;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// Who wrote a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions to the model (not shown to the patient).
    System,
    /// The patient or caregiver.
    User,
    /// A previous answer of the model.
    Assistant,
}

/// One message of a chat conversation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(ChatRole::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(ChatRole::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(ChatRole::Assistant, content)
    }
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatMessage")
            .field("role", &self.role)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Sampling {
    /// Always the most likely token: deterministic for a given model and prompt.
    #[default]
    Greedy,
    /// Random sampling.
    Sample {
        /// Softmax temperature, `> 0`.
        temperature: f64,
        /// Nucleus sampling threshold in `(0, 1]`; `1.0` disables it.
        top_p: f64,
        /// Requested RNG seed. Best effort: a backend whose RNG is shared between
        /// requests (mistral.rs 0.8.1) cannot honour it and documents so.
        #[serde(default)]
        seed: Option<u64>,
    },
}

/// A request for one chat answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// The conversation so far; must not be empty.
    pub messages: Vec<ChatMessage>,
    /// Upper bound on generated tokens; at least 1.
    pub max_tokens: u32,
    #[serde(default)]
    pub sampling: Sampling,
    /// Budget from acceptance (the call to [`LlmService::generate`]) to the end of the
    /// answer, queue wait included. Serialized as whole milliseconds (`timeout_ms`).
    #[serde(rename = "timeout_ms", with = "duration_ms")]
    pub timeout: Duration,
    /// Cancels the request when triggered. Not serialized: a deserialized request
    /// gets a fresh token.
    #[serde(skip)]
    pub cancel: CancellationToken,
}

impl GenerationRequest {
    pub const DEFAULT_MAX_TOKENS: u32 = 256;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// A greedy request with default limits and a fresh cancellation token.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            max_tokens: Self::DEFAULT_MAX_TOKENS,
            sampling: Sampling::Greedy,
            timeout: Self::DEFAULT_TIMEOUT,
            cancel: CancellationToken::new(),
        }
    }

    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    #[must_use]
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// The absolute deadline of a request accepted at `accepted_at`.
    pub fn deadline_from(&self, accepted_at: Instant) -> Instant {
        accepted_at
            .checked_add(self.timeout)
            // An absurd timeout (centuries) saturates to "a day from now".
            .or_else(|| accepted_at.checked_add(Duration::from_secs(86_400)))
            .unwrap_or(accepted_at)
    }

    /// Checks the request's own consistency (not whether the model can answer it).
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.messages.is_empty() {
            return Err(LlmError::InvalidRequest("no messages".into()));
        }
        if self.max_tokens == 0 {
            return Err(LlmError::InvalidRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(LlmError::InvalidRequest("timeout must be positive".into()));
        }
        if let Sampling::Sample {
            temperature, top_p, ..
        } = self.sampling
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(LlmError::InvalidRequest(
                    "temperature must be a positive number (use Sampling::Greedy for 0)".into(),
                ));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(LlmError::InvalidRequest("top_p must be in (0, 1]".into()));
            }
        }
        Ok(())
    }
}

/// Token accounting of one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End of sequence or a stop token: the answer is complete.
    Stop,
    /// `max_tokens` (or the model's context) was reached: the answer may be cut off.
    Length,
    /// Anything else the backend reported.
    Other(String),
}

/// A finished answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    pub model_id: String,
    pub finish_reason: FinishReason,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("text_len", &self.text.len())
            .field("usage", &self.usage)
            .field("model_id", &self.model_id)
            .field("finish_reason", &self.finish_reason)
            .finish()
    }
}

/// One item of a [`TokenStream`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum GenerationEvent {
    /// A piece of answer text, as soon as it is produced (usually one token).
    Token(String),
    /// The end of the answer; always the last item of a successful stream.
    Done(Completion),
    /// The answer restarts (a remote job was taken over by another worker): discard the
    /// `Token` text received so far. Never the last item.
    Reset,
}

impl fmt::Debug for GenerationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(text) => f.debug_struct("Token").field("len", &text.len()).finish(),
            Self::Done(completion) => f.debug_tuple("Done").field(completion).finish(),
            Self::Reset => f.write_str("Reset"),
        }
    }
}

/// Why a generation did not produce an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum LlmError {
    /// The request queue is full; retry later (HTTP 503).
    #[error("the LLM service is overloaded: its request queue is full")]
    Overloaded,
    /// The request's deadline passed while queued or while generating (HTTP 504).
    #[error("the LLM request timed out")]
    TimedOut,
    /// The request's cancellation token was triggered.
    #[error("the LLM request was cancelled")]
    Cancelled,
    /// The backend failed; the message is backend text, never patient text.
    #[error("the model failed: {0}")]
    ModelFailure(String),
    /// The model is not loaded (yet); retry later (HTTP 503).
    #[error("the model is not loaded yet")]
    NotReady,
    /// The request is malformed (empty conversation, `max_tokens == 0`, ...).
    #[error("invalid LLM request: {0}")]
    InvalidRequest(String),
}

impl LlmError {
    /// Whether the same request may succeed if sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Overloaded | Self::NotReady)
    }
}

/// The stream of one generation; see the crate docs for its contract.
pub type TokenStream = BoxStream<'static, Result<GenerationEvent, LlmError>>;

/// A chat-completion service. Object safe: hold it as `Arc<dyn LlmService>`.
pub trait LlmService: Send + Sync {
    /// Admits `req` and starts generating.
    ///
    /// Resolves once the request runs (a generation slot was granted), so a caller can
    /// still answer with a proper status code: `Overloaded` at once when the queue is
    /// full, `TimedOut`/`Cancelled` when the deadline/cancel token fires while queued,
    /// `NotReady` before the model is loaded, `InvalidRequest` for malformed requests.
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>>;

    /// Generates and waits for the whole answer.
    fn complete(&self, req: GenerationRequest) -> BoxFuture<'_, Result<Completion, LlmError>> {
        Box::pin(async move { collect_completion(self.generate(req).await?).await })
    }

    /// The id of the model that answers (reported in [`Completion::model_id`]).
    fn model_id(&self) -> String;

    /// Whether the service can take requests now (model loaded).
    fn is_ready(&self) -> bool;
}

impl<T: LlmService + ?Sized> LlmService for Arc<T> {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        (**self).generate(req)
    }

    fn complete(&self, req: GenerationRequest) -> BoxFuture<'_, Result<Completion, LlmError>> {
        (**self).complete(req)
    }

    fn model_id(&self) -> String {
        (**self).model_id()
    }

    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }
}

/// Drains a [`TokenStream`] into its [`Completion`].
///
/// Returns the stream's error if it ends with one, and `ModelFailure` if it ends
/// without a `Done` event (a broken implementation or transport).
pub async fn collect_completion(mut stream: TokenStream) -> Result<Completion, LlmError> {
    while let Some(event) = stream.next().await {
        match event? {
            GenerationEvent::Token(_) | GenerationEvent::Reset => {}
            GenerationEvent::Done(completion) => return Ok(completion),
        }
    }
    Err(LlmError::ModelFailure(
        "the token stream ended without a completion".into(),
    ))
}

/// Serde for `Duration` as whole milliseconds (saturating).
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedLlm;
    use futures::stream;

    fn request() -> GenerationRequest {
        GenerationRequest::new(vec![
            ChatMessage::system("You are a careful nurse."),
            ChatMessage::user("When do I take my metformin?"),
        ])
        .with_max_tokens(64)
        .with_timeout(Duration::from_millis(1500))
    }

    #[tokio::test]
    async fn complete_drains_the_stream() {
        let llm: Arc<dyn LlmService> =
            Arc::new(ScriptedLlm::new("scripted", ["With", " food", "."]));
        let mut stream = llm.generate(request()).await.unwrap();
        let mut tokens = Vec::new();
        let mut done = None;
        while let Some(event) = stream.next().await {
            match event.unwrap() {
                GenerationEvent::Token(t) => tokens.push(t),
                GenerationEvent::Done(c) => done = Some(c),
                GenerationEvent::Reset => tokens.clear(),
            }
        }
        let done = done.unwrap();
        assert_eq!(tokens.concat(), done.text);

        let completion = llm.complete(request()).await.unwrap();
        assert_eq!(completion.text, "With food.");
        assert_eq!(completion.model_id, "scripted");
        assert_eq!(completion.finish_reason, FinishReason::Stop);
        assert_eq!(completion.usage.completion_tokens, 3);
    }

    #[tokio::test]
    async fn collect_completion_propagates_errors_and_truncation() {
        let failing: TokenStream = Box::pin(stream::iter(vec![
            Ok(GenerationEvent::Token("a".into())),
            Err(LlmError::TimedOut),
        ]));
        assert_eq!(collect_completion(failing).await, Err(LlmError::TimedOut));

        let truncated: TokenStream =
            Box::pin(stream::iter(vec![Ok(GenerationEvent::Token("a".into()))]));
        assert!(matches!(
            collect_completion(truncated).await,
            Err(LlmError::ModelFailure(_))
        ));
    }

    #[tokio::test]
    async fn scripted_llm_honours_limits_and_cancel() {
        let llm = ScriptedLlm::new("scripted", ["a", "b", "c"]);
        let completion = llm.complete(request().with_max_tokens(2)).await.unwrap();
        assert_eq!(completion.text, "ab");
        assert_eq!(completion.finish_reason, FinishReason::Length);

        let req = request();
        req.cancel.cancel();
        assert_eq!(llm.complete(req).await, Err(LlmError::Cancelled));

        let not_ready = ScriptedLlm::new("scripted", ["a"]).with_ready(false);
        assert!(!not_ready.is_ready());
        assert_eq!(not_ready.complete(request()).await, Err(LlmError::NotReady));
    }

    #[test]
    fn request_round_trips_through_json_without_the_token() {
        let req = request().with_sampling(Sampling::Sample {
            temperature: 0.7,
            top_p: 0.9,
            seed: Some(7),
        });
        req.cancel.cancel();
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["timeout_ms"], 1500);
        assert_eq!(json["messages"][0]["role"], "system");
        assert_eq!(json["sampling"]["mode"], "sample");
        assert!(json.get("cancel").is_none());

        let back: GenerationRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.messages, req.messages);
        assert_eq!(back.max_tokens, 64);
        assert_eq!(back.sampling, req.sampling);
        assert_eq!(back.timeout, Duration::from_millis(1500));
        assert!(
            !back.cancel.is_cancelled(),
            "a shipped request gets a fresh token"
        );

        let greedy: GenerationRequest = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":8,"timeout_ms":100}"#,
        )
        .unwrap();
        assert_eq!(greedy.sampling, Sampling::Greedy);
    }

    #[test]
    fn events_and_errors_round_trip_through_json() {
        let events = vec![
            GenerationEvent::Token("x".into()),
            GenerationEvent::Reset,
            GenerationEvent::Done(Completion {
                text: "x".into(),
                usage: Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1,
                },
                model_id: "m".into(),
                finish_reason: FinishReason::Other("tool_calls".into()),
            }),
        ];
        let json = serde_json::to_string(&events).unwrap();
        let back: Vec<GenerationEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, events);

        for err in [
            LlmError::Overloaded,
            LlmError::TimedOut,
            LlmError::Cancelled,
            LlmError::NotReady,
            LlmError::ModelFailure("oom".into()),
            LlmError::InvalidRequest("no messages".into()),
        ] {
            let json = serde_json::to_string(&err).unwrap();
            assert_eq!(serde_json::from_str::<LlmError>(&json).unwrap(), err);
        }
        assert!(LlmError::Overloaded.is_retryable());
        assert!(!LlmError::Cancelled.is_retryable());
    }

    #[test]
    fn validate_rejects_malformed_requests() {
        assert!(request().validate().is_ok());
        assert!(GenerationRequest::new(vec![]).validate().is_err());
        assert!(request().with_max_tokens(0).validate().is_err());
        assert!(request().with_timeout(Duration::ZERO).validate().is_err());
        let hot = request().with_sampling(Sampling::Sample {
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
        });
        assert!(hot.validate().is_err());
    }

    #[test]
    fn debug_never_prints_text() {
        let secret = "my HIV medication";
        let shown = format!(
            "{:?} {:?} {:?}",
            ChatMessage::user(secret),
            GenerationEvent::Token(secret.into()),
            Completion {
                text: secret.into(),
                usage: Usage::default(),
                model_id: "m".into(),
                finish_reason: FinishReason::Stop,
            }
        );
        assert!(!shown.contains("HIV"), "{shown}");
    }

    #[test]
    fn deadline_saturates() {
        let now = Instant::now();
        let req = request().with_timeout(Duration::from_secs(u64::MAX));
        assert!(req.deadline_from(now) > now);
        assert_eq!(
            request().deadline_from(now),
            now + Duration::from_millis(1500)
        );
    }
}
