//! [`MistralEngine`]: a local GGUF model run by mistral.rs behind careloop's
//! [`LlmService`], with admission control (bounded concurrency and queue), deadlines
//! and cancellation.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use careloop_llm_api::{
    ChatRole, Completion, FinishReason, GenerationEvent, GenerationRequest, LlmError, LlmService,
    Sampling, TokenStream, Usage,
};
use futures::Stream;
use futures::future::BoxFuture;
use mistralrs::{
    GgufModelBuilder, Model, RequestBuilder, Response, SamplingParams, TextMessageRole, TokenSource,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::device;
use crate::error::LoadError;
use crate::settings::LlmSettings;

/// Files that mistral.rs 0.8.1 picks up from the *directory* of a local GGUF file and
/// that would override what the GGUF itself says. careloop keeps them out of it.
const SIDECAR_FILES: [&str; 4] = [
    "generation_config.json",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
];

/// A loaded model. Cheap to clone (all clones share the model and its limits).
///
/// Must be used from within a Tokio runtime (each generation runs as a task).
#[derive(Clone)]
pub struct MistralEngine {
    inner: Arc<Inner>,
}

struct Inner {
    model: Model,
    model_id: String,
    admission: Admission,
    next_request: AtomicU64,
}

impl fmt::Debug for MistralEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MistralEngine")
            .field("model_id", &self.inner.model_id)
            .field("max_concurrent", &self.inner.admission.max_concurrent)
            .field("max_queued", &self.inner.admission.max_queued)
            .finish_non_exhaustive()
    }
}

impl MistralEngine {
    /// Loads the model on a dedicated thread (loading is seconds of blocking work) and
    /// resolves when it is ready. Never contacts a model hub.
    pub async fn load(settings: LlmSettings) -> Result<Self, LoadError> {
        let path = settings.model_path.clone();
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("careloop-llm-load".into())
            .spawn(move || {
                let _ = tx.send(Self::load_blocking(settings));
            })
            .map_err(|e| LoadError::Backend {
                path: path.clone(),
                reason: format!("cannot start the loader thread: {e}"),
            })?;
        rx.await.map_err(|_| LoadError::Backend {
            path,
            reason: "the loader thread died".into(),
        })?
    }

    /// Loads the model on the calling thread. Must not be called from async code (it
    /// runs a private Tokio runtime); use [`MistralEngine::load`] there.
    pub fn load_blocking(settings: LlmSettings) -> Result<Self, LoadError> {
        validate_settings(&settings)?;
        let started = Instant::now();
        let path = check_model_file(&settings.model_path)?;
        let model_id = settings.effective_model_id();
        let backend_error = |reason: String| LoadError::Backend {
            path: path.clone(),
            reason,
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(backend_error(
                "load_blocking was called inside a Tokio runtime; use MistralEngine::load".into(),
            ));
        }

        let builder = gguf_builder(&path, &settings)?;
        let builder = device::select_device(builder).map_err(backend_error)?;
        // A current-thread runtime: mistral.rs starts its engine on its own thread with
        // its own runtime, so nothing of the load outlives this one.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| backend_error(format!("cannot start a Tokio runtime: {e}")))?;
        // mistral.rs indexes GGUF metadata with `[]` and panics on some malformed files.
        let built =
            std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(builder.build())));
        let model = match built {
            Ok(Ok(model)) => model,
            Ok(Err(e)) => {
                return Err(LoadError::InvalidModel {
                    path,
                    reason: format!("{e:#}"),
                });
            }
            Err(panic) => {
                return Err(LoadError::InvalidModel {
                    path,
                    reason: format!("the GGUF loader panicked: {}", panic_message(&*panic)),
                });
            }
        };
        // One-token warm-up (mistral.rs does the same only when built on a multi-threaded
        // runtime): the first real request does not pay for lazy initialisation, and a
        // model that cannot generate (e.g. no chat template) fails here, not at first use.
        let warm_up = RequestBuilder::new()
            .add_message(TextMessageRole::User, "Hello")
            .set_sampling(sampling_params(Sampling::Greedy, 1));
        if let Err(e) = runtime.block_on(model.send_chat_request(warm_up)) {
            return Err(LoadError::InvalidModel {
                path,
                reason: format!("the model loads but cannot generate: {e}"),
            });
        }
        drop(runtime);

        info!(
            model_id = %model_id,
            path = %path.display(),
            device = device::DEVICE_NAME,
            max_concurrent = settings.max_concurrent,
            max_queued = settings.max_queued,
            load_ms = ms(started.elapsed()),
            "LLM model loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                model_id,
                admission: Admission::new(&settings),
                next_request: AtomicU64::new(1),
            }),
        })
    }

    /// Generations running now.
    pub fn running(&self) -> usize {
        let a = &self.inner.admission;
        a.max_concurrent - a.slots.available_permits().min(a.max_concurrent)
    }

    /// Requests waiting for a generation slot now.
    pub fn queued(&self) -> usize {
        self.inner.admission.queued.load(Ordering::SeqCst)
    }
}

impl LlmService for MistralEngine {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(inner.generate(req))
    }

    fn model_id(&self) -> String {
        self.inner.model_id.clone()
    }

    fn is_ready(&self) -> bool {
        true
    }
}

impl Inner {
    async fn generate(self: Arc<Self>, req: GenerationRequest) -> Result<TokenStream, LlmError> {
        let accepted = Instant::now();
        req.validate()?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let deadline = req.deadline_from(accepted);
        if let Sampling::Sample { seed: Some(_), .. } = req.sampling {
            debug!(
                request_id = id,
                "mistral.rs 0.8.1 shares one RNG between requests; the seed is ignored"
            );
        }

        let permit = match self.admission.admit(deadline, &req.cancel).await {
            Ok(permit) => permit,
            Err(e) => {
                info!(
                    request_id = id,
                    outcome = outcome_name(&e),
                    queue_ms = ms(accepted.elapsed()),
                    "LLM request refused"
                );
                return Err(e);
            }
        };

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (started_tx, started_rx) = oneshot::channel();
        let job = Job {
            inner: Arc::clone(&self),
            id,
            request: to_mistral_request(&req),
            events: events_tx,
            started: started_tx,
            cancel: req.cancel.clone(),
            deadline,
            accepted,
            _permit: permit,
        };
        tokio::spawn(job.run());
        match started_rx.await {
            Ok(Ok(())) => Ok(Box::pin(EventStream {
                rx: events_rx,
                cancel: req.cancel,
                deadline,
                finished: false,
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LlmError::ModelFailure(
                "the generation task ended before it started".into(),
            )),
        }
    }
}

/// Bounded concurrency plus a bounded wait queue.
struct Admission {
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    queued: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
}

impl Admission {
    fn new(settings: &LlmSettings) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.max_concurrent)),
            max_concurrent: settings.max_concurrent,
            queued: AtomicUsize::new(0),
            max_queued: settings.max_queued,
            queue_timeout: settings.queue_timeout(),
        }
    }

    /// A generation slot, or `Overloaded` when the queue is full, `TimedOut` when the
    /// deadline or the queue timeout passes first, `Cancelled` when cancelled first.
    async fn admit(
        &self,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<OwnedSemaphorePermit, LlmError> {
        if cancel.is_cancelled() {
            return Err(LlmError::Cancelled);
        }
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_queued).then_some(n + 1)
            })
            .map_err(|_| LlmError::Overloaded)?;
        let _in_queue = QueueSlot(&self.queued);
        let give_up_at = Instant::now()
            .checked_add(self.queue_timeout)
            .map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(LlmError::Cancelled),
            permit = Arc::clone(&self.slots).acquire_owned() => permit
                .map_err(|_| LlmError::ModelFailure("the engine is shut down".into())),
            () = tokio::time::sleep_until(give_up_at.into()) => Err(LlmError::TimedOut),
        }
    }
}

/// Counts a request as queued while alive.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One admitted generation: forwards mistral.rs chunks to the caller's stream.
///
/// It drains mistral.rs promptly whatever the caller does, because mistral.rs sends
/// chunks through a channel of capacity 1 from its single engine loop: a caller that
/// stops reading would otherwise stall every other running sequence.
struct Job {
    inner: Arc<Inner>,
    id: u64,
    request: RequestBuilder,
    events: mpsc::UnboundedSender<Result<GenerationEvent, LlmError>>,
    started: oneshot::Sender<Result<(), LlmError>>,
    cancel: CancellationToken,
    deadline: Instant,
    accepted: Instant,
    /// The generation slot, released when the job ends.
    _permit: OwnedSemaphorePermit,
}

enum Outcome {
    Done(Completion),
    Failed(LlmError),
    CallerGone,
}

impl Job {
    async fn run(self) {
        let Job {
            inner,
            id,
            request,
            events,
            started,
            cancel,
            deadline,
            accepted,
            _permit: permit,
        } = self;
        let queue_ms = ms(accepted.elapsed());
        let gen_start = Instant::now();

        let mut stream = match inner.model.stream_chat_request(request).await {
            Ok(stream) => stream,
            Err(e) => {
                warn!(request_id = id, "mistral.rs refused the request");
                let _ = started.send(Err(LlmError::ModelFailure(format!(
                    "cannot submit the request: {e}"
                ))));
                return;
            }
        };
        if started.send(Ok(())).is_err() {
            return; // The caller gave up; dropping `stream` cancels the sequence.
        }

        let mut answer = Answer {
            model_id: &inner.model_id,
            events: &events,
            gen_start,
            text: String::new(),
            streamed: 0,
            first_token_ms: None,
            usage: None,
        };
        let deadline_timer = tokio::time::sleep_until(deadline.into());
        tokio::pin!(deadline_timer);
        let outcome = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break Outcome::Failed(LlmError::Cancelled),
                () = &mut deadline_timer => break Outcome::Failed(LlmError::TimedOut),
                () = events.closed() => break Outcome::CallerGone,
                response = stream.next() => {
                    if let Some(outcome) = answer.on_response(response) {
                        break outcome;
                    }
                }
            }
        };
        // Dropping the receiver makes mistral.rs mark the sequence `Canceled` when it
        // next tries to send to it (its next token), which frees its batch slot.
        drop(stream);

        let gen_ms = ms(gen_start.elapsed());
        let (name, prompt_tokens, completion_tokens) = match &outcome {
            Outcome::Done(c) => ("done", c.usage.prompt_tokens, c.usage.completion_tokens),
            Outcome::Failed(e) => (outcome_name(e), 0, answer.streamed),
            Outcome::CallerGone => ("caller_gone", 0, answer.streamed),
        };
        let tokens_per_s = if gen_ms > 0 {
            (f64::from(completion_tokens) * 10_000.0 / gen_ms as f64).round() / 10.0
        } else {
            0.0
        };
        info!(
            request_id = id,
            outcome = name,
            prompt_tokens,
            completion_tokens,
            queue_ms,
            first_token_ms = answer.first_token_ms,
            gen_ms,
            tokens_per_s,
            "LLM generation finished"
        );
        // Free the slot before the caller hears the end, so a caller that sees `Done`
        // and asks again at once finds the slot free.
        drop(permit);
        match outcome {
            Outcome::Done(completion) => {
                let _ = events.send(Ok(GenerationEvent::Done(completion)));
            }
            Outcome::Failed(e) => {
                let _ = events.send(Err(e));
            }
            Outcome::CallerGone => {}
        }
    }
}

/// The answer being assembled from mistral.rs responses.
struct Answer<'a> {
    model_id: &'a str,
    events: &'a mpsc::UnboundedSender<Result<GenerationEvent, LlmError>>,
    gen_start: Instant,
    text: String,
    /// Token events sent so far.
    streamed: u32,
    first_token_ms: Option<u64>,
    usage: Option<mistralrs::Usage>,
}

impl Answer<'_> {
    fn emit(&mut self, piece: String) {
        if piece.is_empty() {
            return;
        }
        self.text.push_str(&piece);
        self.streamed = self.streamed.saturating_add(1);
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(ms(self.gen_start.elapsed()));
        }
        let _ = self.events.send(Ok(GenerationEvent::Token(piece)));
    }

    fn finish(&mut self, reason: &str) -> Outcome {
        finish_outcome(
            reason,
            std::mem::take(&mut self.text),
            self.usage.as_ref(),
            self.streamed,
            self.model_id,
        )
    }

    /// Handles one mistral.rs response; `Some` when the generation is over.
    fn on_response(&mut self, response: Option<Response>) -> Option<Outcome> {
        let failed = |e| Some(Outcome::Failed(e));
        match response {
            Some(Response::Chunk(chunk)) => {
                if chunk.usage.is_some() {
                    self.usage = chunk.usage;
                }
                let mut finish = None;
                for choice in chunk.choices {
                    if let Some(piece) = choice.delta.content {
                        self.emit(piece);
                    }
                    finish = finish.or(choice.finish_reason);
                }
                finish.map(|reason| self.finish(&reason))
            }
            // Only sent for non-streaming requests; handled for robustness.
            Some(Response::Done(response)) => {
                self.usage = Some(response.usage);
                let choice = response.choices.into_iter().next();
                let reason = choice
                    .as_ref()
                    .map(|c| c.finish_reason.clone())
                    .unwrap_or_default();
                if self.text.is_empty()
                    && let Some(content) = choice.and_then(|c| c.message.content)
                {
                    self.emit(content);
                }
                Some(self.finish(&reason))
            }
            Some(Response::ModelError(message, _)) => failed(LlmError::ModelFailure(message)),
            Some(Response::InternalError(e)) => failed(LlmError::ModelFailure(e.to_string())),
            Some(Response::ValidationError(e)) => failed(LlmError::InvalidRequest(e.to_string())),
            Some(_) => failed(LlmError::ModelFailure(
                "unexpected response kind from mistral.rs".into(),
            )),
            None => failed(LlmError::ModelFailure(
                "mistral.rs closed the response stream".into(),
            )),
        }
    }
}

fn finish_outcome(
    reason: &str,
    text: String,
    usage: Option<&mistralrs::Usage>,
    streamed: u32,
    model_id: &str,
) -> Outcome {
    let finish_reason = match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "canceled" => return Outcome::Failed(LlmError::Cancelled),
        other => FinishReason::Other(other.to_owned()),
    };
    let usage = Usage {
        prompt_tokens: usage.map_or(0, |u| saturate(u.prompt_tokens)),
        completion_tokens: usage.map_or(streamed, |u| saturate(u.completion_tokens)),
    };
    Outcome::Done(Completion {
        text,
        usage,
        model_id: model_id.to_owned(),
        finish_reason,
    })
}

/// The caller's side of a generation. Cancellation and the deadline take effect at
/// once, even over events already buffered; after a terminal item it ends.
struct EventStream {
    rx: mpsc::UnboundedReceiver<Result<GenerationEvent, LlmError>>,
    cancel: CancellationToken,
    deadline: Instant,
    finished: bool,
}

impl Stream for EventStream {
    type Item = Result<GenerationEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        // The job reacts to both as well and then sends its own error, which wakes us.
        let early_end = if this.cancel.is_cancelled() {
            Some(LlmError::Cancelled)
        } else if Instant::now() >= this.deadline {
            Some(LlmError::TimedOut)
        } else {
            None
        };
        if let Some(e) = early_end {
            this.finished = true;
            return Poll::Ready(Some(Err(e)));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(item)) => {
                this.finished = !matches!(item, Ok(GenerationEvent::Token(_)));
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(Some(Err(LlmError::ModelFailure(
                    "the generation task ended without a result".into(),
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn to_mistral_request(req: &GenerationRequest) -> RequestBuilder {
    let mut builder = RequestBuilder::new();
    for message in &req.messages {
        let role = match message.role {
            ChatRole::System => TextMessageRole::System,
            ChatRole::User => TextMessageRole::User,
            ChatRole::Assistant => TextMessageRole::Assistant,
        };
        builder = builder.add_message(role, &message.content);
    }
    builder.set_sampling(sampling_params(req.sampling, req.max_tokens))
}

fn sampling_params(sampling: Sampling, max_tokens: u32) -> SamplingParams {
    let mut params = match sampling {
        // top_k = 1: arg-max decoding.
        Sampling::Greedy => SamplingParams::deterministic(),
        Sampling::Sample {
            temperature, top_p, ..
        } => SamplingParams {
            temperature: Some(temperature),
            top_p: (top_p < 1.0).then_some(top_p),
            ..SamplingParams::neutral()
        },
    };
    params.max_len = Some(usize::try_from(max_tokens).unwrap_or(usize::MAX));
    params
}

fn validate_settings(settings: &LlmSettings) -> Result<(), LoadError> {
    if settings.max_concurrent == 0 {
        return Err(LoadError::InvalidSettings(
            "max_concurrent must be at least 1".into(),
        ));
    }
    if settings.queue_timeout_ms == 0 && settings.max_queued > 0 {
        return Err(LoadError::InvalidSettings(
            "queue_timeout_ms must be positive when max_queued > 0".into(),
        ));
    }
    Ok(())
}

/// Checks that `path` is a readable GGUF file and returns it absolute.
fn check_model_file(path: &Path) -> Result<PathBuf, LoadError> {
    let invalid = |reason: String| LoadError::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(invalid(format!("cannot read it: {e}"))),
    };
    if !metadata.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let mut header = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                invalid(format!("only {} bytes long", metadata.len()))
            } else {
                invalid(format!("cannot read it: {e}"))
            }
        })?;
    if &header[..4] != b"GGUF" {
        return Err(invalid(
            "no GGUF magic number; it may be a partial download or an HTML error page".into(),
        ));
    }
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(1..=3).contains(&version) {
        return Err(invalid(format!("unsupported GGUF version {version}")));
    }
    let absolute =
        std::fs::canonicalize(path).map_err(|e| invalid(format!("cannot resolve it: {e}")))?;
    if let Some(dir) = absolute.parent() {
        for name in SIDECAR_FILES {
            if dir.join(name).exists() {
                warn!(
                    file = %dir.join(name).display(),
                    "mistral.rs will apply this file found next to the model; keep model directories GGUF-only"
                );
            }
        }
    }
    Ok(absolute)
}

/// The mistral.rs builder for a local GGUF file, with no way to reach a model hub.
///
/// mistral.rs 0.8.1 (`get_paths_gguf!`) treats the "model id" as a local directory when
/// it exists and then only lists/joins files in it; with no `tok_model_id` the tokenizer
/// is built from the GGUF metadata (`convert_gguf_to_hf_tokenizer`) and the chat
/// template is the GGUF's `tokenizer.chat_template`. The directory is checked to exist
/// (it holds the file we just opened), so the hub branch (`api.info()`/`api.get()`) is
/// never taken, and `TokenSource::None` keeps it from reading a hub token.
fn gguf_builder(path: &Path, settings: &LlmSettings) -> Result<GgufModelBuilder, LoadError> {
    let invalid_settings = || {
        LoadError::InvalidSettings(format!(
            "the model path {} must be valid UTF-8 and name a file",
            path.display()
        ))
    };
    let dir = path
        .parent()
        .and_then(Path::to_str)
        .ok_or_else(invalid_settings)?;
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(invalid_settings)?;
    if !Path::new(dir).is_dir() {
        return Err(LoadError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    Ok(GgufModelBuilder::new(dir, vec![file])
        .with_token_source(TokenSource::None)
        .with_max_num_seqs(settings.max_concurrent))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn outcome_name(e: &LlmError) -> &'static str {
    match e {
        LlmError::Overloaded => "overloaded",
        LlmError::TimedOut => "timed_out",
        LlmError::Cancelled => "cancelled",
        LlmError::ModelFailure(_) => "model_failure",
        LlmError::NotReady => "not_ready",
        LlmError::InvalidRequest(_) => "invalid_request",
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn greedy_is_arg_max_and_sampling_maps() {
        let greedy = sampling_params(Sampling::Greedy, 16);
        assert_eq!(greedy.top_k, Some(1));
        assert_eq!(greedy.temperature, None);
        assert_eq!(greedy.max_len, Some(16));

        let sampled = sampling_params(
            Sampling::Sample {
                temperature: 0.7,
                top_p: 1.0,
                seed: Some(1),
            },
            8,
        );
        assert_eq!(sampled.temperature, Some(0.7));
        assert_eq!(sampled.top_p, None);
        assert_eq!(sampled.top_k, None);
        assert_eq!(sampled.max_len, Some(8));
    }

    #[test]
    fn header_check_classifies_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.gguf");
        assert_eq!(
            check_model_file(&missing),
            Err(LoadError::ModelMissing { path: missing })
        );
        assert!(matches!(
            check_model_file(dir.path()),
            Err(LoadError::InvalidModel { .. })
        ));

        let short = dir.path().join("short.gguf");
        std::fs::write(&short, b"GGU").unwrap();
        assert!(
            matches!(check_model_file(&short), Err(LoadError::InvalidModel { reason, .. }) if reason.contains("3 bytes"))
        );

        let html = dir.path().join("html.gguf");
        std::fs::write(&html, b"<!DOCTYPE html><html>").unwrap();
        assert!(
            matches!(check_model_file(&html), Err(LoadError::InvalidModel { reason, .. }) if reason.contains("magic"))
        );

        let future = dir.path().join("v9.gguf");
        let mut f = File::create(&future).unwrap();
        f.write_all(b"GGUF\x09\x00\x00\x00").unwrap();
        assert!(
            matches!(check_model_file(&future), Err(LoadError::InvalidModel { reason, .. }) if reason.contains("version 9"))
        );
    }

    #[test]
    fn rejects_zero_concurrency() {
        let settings = LlmSettings {
            max_concurrent: 0,
            ..LlmSettings::default()
        };
        assert!(matches!(
            MistralEngine::load_blocking(settings),
            Err(LoadError::InvalidSettings(_))
        ));
    }

    #[test]
    fn finish_reasons_map() {
        let usage = mistralrs::Usage {
            completion_tokens: 3,
            prompt_tokens: 5,
            total_tokens: 8,
            avg_tok_per_sec: 0.0,
            avg_prompt_tok_per_sec: 0.0,
            avg_compl_tok_per_sec: 0.0,
            total_time_sec: 0.0,
            total_prompt_time_sec: 0.0,
            total_completion_time_sec: 0.0,
        };
        let Outcome::Done(c) = finish_outcome("length", "abc".into(), Some(&usage), 2, "m") else {
            panic!("expected done");
        };
        assert_eq!(c.finish_reason, FinishReason::Length);
        assert_eq!(
            c.usage,
            Usage {
                prompt_tokens: 5,
                completion_tokens: 3
            }
        );
        assert!(matches!(
            finish_outcome("canceled", String::new(), None, 0, "m"),
            Outcome::Failed(LlmError::Cancelled)
        ));
        let Outcome::Done(c) = finish_outcome("stop", "x".into(), None, 1, "m") else {
            panic!("expected done");
        };
        assert_eq!(c.usage.completion_tokens, 1);
    }
}
