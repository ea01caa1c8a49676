//! The versioned prompts. A change to any text here is a new version: the version is stored with
//! every generated reply, so a reviewer can tell which instructions produced it.

use careloop_core::{Language, ReadingLevel};
use careloop_llm_api::ChatMessage;

use crate::library::Article;

/// The first attempt.
pub const ANSWER_PROMPT: &str = "answer-v1";
/// The retry after a draft failed its checks.
pub const STRICT_PROMPT: &str = "answer-v1-strict";

/// How much of each article goes into the prompt (small models have small context windows, and
/// prompt processing time grows with it).
const MAX_PASSAGE_CHARS: usize = 1_600;

pub fn language_name(language: Language) -> &'static str {
    match language {
        Language::English => "English",
        Language::Spanish => "Spanish",
        Language::French => "French",
        Language::German => "German",
        Language::Portuguese => "Portuguese",
        Language::Arabic => "Arabic",
    }
}

fn level_instruction(level: ReadingLevel, strict: bool) -> &'static str {
    match (level, strict) {
        (ReadingLevel::Easy, false) => {
            "Use very short sentences and simple everyday words, like talking to a 10-year-old."
        }
        (ReadingLevel::Easy, true) => {
            "Every sentence must have fewer than 10 words. Use only simple everyday words. No long words."
        }
        (ReadingLevel::Standard, false) => "Use plain language and short sentences.",
        (ReadingLevel::Standard, true) => {
            "Every sentence must have fewer than 15 words. Use plain everyday words."
        }
    }
}

/// One past turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub from_patient: bool,
    pub text: String,
}

/// The chat messages for one answer.
pub fn answer_messages(
    question: &str,
    language: Language,
    level: ReadingLevel,
    condition: Option<&str>,
    passages: &[&Article],
    history: &[Turn],
    strict: bool,
) -> Vec<ChatMessage> {
    let mut system = format!(
        "You are careloop, a patient-education assistant. Answer the patient's question using ONLY \
         the approved information below. Write only in {}. {} Never give a dose, an amount or a \
         number of pills, puffs or units of any medicine; say to ask the care team instead. If the \
         information does not answer the question, say you do not know and suggest asking the \
         care team. Answer in at most {} sentences.",
        language_name(language),
        level_instruction(level, strict),
        if strict { 3 } else { 5 },
    );
    if let Some(condition) = condition {
        system.push_str(&format!("\n\nThe patient has: {condition}."));
    }
    system.push_str("\n\nApproved information:");
    for (i, a) in passages.iter().enumerate() {
        let body: String = a.body.chars().take(MAX_PASSAGE_CHARS).collect();
        system.push_str(&format!("\n\n[{}] {}\n{}", i + 1, a.title, body));
    }
    let mut messages = vec![ChatMessage::system(system)];
    for turn in history {
        messages.push(if turn.from_patient {
            ChatMessage::user(turn.text.clone())
        } else {
            ChatMessage::assistant(turn.text.clone())
        });
    }
    messages.push(ChatMessage::user(question.to_owned()));
    messages
}
