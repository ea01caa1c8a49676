//! Safety triage, before any model call: red flags and dosing questions, in every supported
//! language at once (a patient in distress may not write in their profile language).

use careloop_core::Language;

use crate::lexicon::{Lexicons, PhraseSet, Span};
use crate::normalize;

/// What triage concluded about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// A red flag: the urgent template and an alert; the model is never asked.
    Urgent {
        category: String,
        language: Language,
    },
    /// A question about changing, stopping or the amount of a dose: the dosing-policy template
    /// and an alert.
    Dosing {
        category: String,
        language: Language,
    },
    Ordinary,
}

impl Triage {
    pub fn is_ordinary(&self) -> bool {
        matches!(self, Triage::Ordinary)
    }
}

/// Triage of `text`. Urgent beats dosing; within each, the patient's own language is tried first.
/// A match is cancelled by any `not_urgent` phrase that overlaps it, whichever language's list
/// it comes from: a word that is a red flag in one language ("derrame") can be a harmless past
/// event in a sentence of another, and only that language's exceptions know it.
pub fn triage(lexicons: &Lexicons, text: &str, profile_language: Language) -> Triage {
    let words = normalize::words(text);
    if words.is_empty() {
        return Triage::Ordinary;
    }
    let exceptions: Vec<Span> = lexicons
        .in_order(profile_language)
        .flat_map(|l| l.not_urgent.find_all(&words))
        .map(|(_, s)| s)
        .collect();
    let live = |set: &PhraseSet| {
        set.find_all(&words)
            .into_iter()
            .any(|(_, span)| !exceptions.iter().any(|e| e.overlaps(span)))
    };
    let mut dosing = None;
    for lexicon in lexicons.in_order(profile_language) {
        if let Some((category, _)) = lexicon.urgent.iter().find(|(_, set)| live(set)) {
            return Triage::Urgent {
                category: category.clone(),
                language: lexicon.language,
            };
        }
        if dosing.is_none()
            && let Some((category, _)) = lexicon.dosing.iter().find(|(_, set)| live(set))
        {
            dosing = Some(Triage::Dosing {
                category: category.clone(),
                language: lexicon.language,
            });
        }
    }
    dosing.unwrap_or(Triage::Ordinary)
}
