//! Which supported language a text is in (lingua, restricted to careloop's languages, models
//! loaded once at start so no message waits for them).

use careloop_core::Language;
use lingua::{LanguageDetector, LanguageDetectorBuilder};

/// Below this many words a message is too short to be "clearly" in another language
/// ("ok", "merci", "no").
const MIN_WORDS_TO_SWITCH: usize = 3;
/// The confidence lingua must give the other language to switch…
const MIN_CONFIDENCE_TO_SWITCH: f64 = 0.5;
/// …while giving the profile's language at most this much. (Confidences are relative and sum to
/// one: Spanish and Portuguese often share a message, the profile's language then does not.)
const MAX_PROFILE_CONFIDENCE: f64 = 0.05;

/// Detects the language of patients' messages and of model drafts.
pub struct Detector {
    inner: LanguageDetector,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Detector")
    }
}

fn to_lingua(language: Language) -> lingua::Language {
    match language {
        Language::English => lingua::Language::English,
        Language::Spanish => lingua::Language::Spanish,
        Language::French => lingua::Language::French,
        Language::German => lingua::Language::German,
        Language::Portuguese => lingua::Language::Portuguese,
        Language::Arabic => lingua::Language::Arabic,
    }
}

fn from_lingua(language: lingua::Language) -> Option<Language> {
    Language::ALL
        .iter()
        .copied()
        .find(|l| to_lingua(*l) == language)
}

/// A detection with lingua's confidence (0–1) in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    pub language: Language,
    pub confidence: f64,
}

impl Detector {
    /// Loads every supported language's model now (takes a moment; do it at start-up).
    pub fn new() -> Detector {
        let languages: Vec<lingua::Language> =
            Language::ALL.iter().map(|l| to_lingua(*l)).collect();
        Detector {
            inner: LanguageDetectorBuilder::from_languages(&languages)
                .with_preloaded_language_models()
                .build(),
        }
    }

    /// The most likely language and its confidence, `None` for text with no letters.
    pub fn detect(&self, text: &str) -> Option<Detected> {
        if !text.chars().any(char::is_alphabetic) {
            return None;
        }
        let values = self.inner.compute_language_confidence_values(text);
        let (language, confidence) = values.into_iter().next()?;
        Some(Detected {
            language: from_lingua(language)?,
            confidence,
        })
    }

    /// The other supported language a patient's message is clearly written in, if it is.
    pub fn clearly_other(&self, text: &str, profile: Language) -> Option<Language> {
        if crate::normalize::words(text).len() < MIN_WORDS_TO_SWITCH {
            return None;
        }
        let values = self.inner.compute_language_confidence_values(text);
        let (top, confidence) = values.first().copied()?;
        let top = from_lingua(top)?;
        let profile_confidence = values
            .iter()
            .find(|(l, _)| *l == to_lingua(profile))
            .map_or(0.0, |(_, c)| *c);
        (top != profile
            && confidence >= MIN_CONFIDENCE_TO_SWITCH
            && profile_confidence <= MAX_PROFILE_CONFIDENCE)
            .then_some(top)
    }

    /// Whether a reply is written in `expected`: its most likely language is that one.
    pub fn is_in(&self, text: &str, expected: Language) -> bool {
        self.detect(text).is_some_and(|d| d.language == expected)
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}
