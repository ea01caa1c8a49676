//! The patient conversation engine, independent of channels: a message in, a safe reply out.
//!
//! For every inbound message, in this order (see [`ConversationEngine::handle`]):
//! 1. **identify** the patient (a new sender starts onboarding),
//! 2. **commands** and opt-out (STOP / START / HELP / LANGUAGE / LEVEL in every language),
//! 3. **safety triage** before any model call ([`triage`]): red flags get the approved urgent
//!    reply and an alert, dosing questions the approved dosing-policy reply and an alert,
//! 4. **language** detection ([`language`]) against the profile,
//! 5. **retrieval** of approved articles ([`library`]),
//! 6. **generation** with a versioned prompt ([`prompt`]) through the LLM service, streamed,
//! 7. **checks** on the draft ([`checks`]): language, reading level, invented doses or red flags,
//!    length; one stricter retry, then the best approved article,
//! 8. **record** the reply with provenance and a disclaimer.
//!
//! The word lists ([`lexicon`]) and reference data ([`reference`]) are files under `content/`,
//! reviewable like the articles.

pub mod checks;
pub mod commands;
mod engine;
pub mod eval;
pub mod language;
pub mod lexicon;
pub mod library;
pub mod normalize;
pub mod prompt;
pub mod reference;
pub mod triage;

pub use engine::{
    ConversationEngine, ConversationError, EngineSettings, Handled, Inbound, InboundContent, Reply,
    ReplyDelivery, ReplyEvent, ReplySource,
};
