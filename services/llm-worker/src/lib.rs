//! # careloop-llm
//!
//! In-process LLM inference for careloop: a local GGUF model run on the CPU (or CUDA
//! with the `cuda` feature) by mistral.rs 0.8.1, exposed as careloop-llm-api's
//! [`LlmService`](careloop_llm_api::LlmService). This is the only crate of the
//! workspace that links mistral.rs.
//!
//! ## Invariants
//!
//! * **No model hub.** The model is a local file; tokenizer and chat template come from
//!   the GGUF metadata. Nothing here ever contacts Hugging Face (see
//!   [`MistralEngine::load`]); a missing file is [`LoadError::ModelMissing`], which
//!   tells the operator to run `./careloop.sh setup`.
//! * **Loaded once.** [`MistralEngine::load`] loads on a dedicated thread;
//!   [`EngineHandle`] serves `NotReady` until the background load finishes.
//! * **Bounded work.** At most `max_concurrent` generations run at once, at most
//!   `max_queued` wait (for at most `queue_timeout_ms` and never past their deadline);
//!   any more are refused with `Overloaded` at once.
//! * **Prompt stop.** Cancelling, passing the deadline or dropping the stream ends the
//!   generation: the mistral.rs response channel is dropped, so mistral.rs cancels the
//!   sequence at its next token and frees its slot.
//! * **No patient text in logs.** Only request ids, token counts, durations and
//!   outcomes are logged.

mod device;
mod engine;
mod error;
mod handle;
mod hash;
mod prepare;
mod settings;

pub use careloop_llm_api as api;
pub use engine::MistralEngine;
pub use error::LoadError;
pub use handle::{EngineHandle, LoadState};
pub use hash::model_file_sha256;
pub use prepare::{PrepareError, PrepareReport, Prepared, prepare, prepare_if_needed};
pub use settings::LlmSettings;
