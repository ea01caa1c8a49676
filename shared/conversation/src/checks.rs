//! Checks on a model draft before anything is sent: language, reading level, no dose amount or
//! red flag that is not in the approved passages, length.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use careloop_core::{Language, ReadingLevel};
use regex::Regex;
use serde_json::json;

use crate::language::Detector;
use crate::lexicon::Lexicons;
use crate::library::Article;
use crate::normalize;

/// Shortest and longest acceptable reply, in characters.
pub const MIN_REPLY_CHARS: usize = 20;
pub const MAX_REPLY_CHARS: usize = 1_500;

/// A number with a dose unit after it, in any supported language (on normalized text).
static DOSE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?x)\b(\d+(?:\s\d+)?)\s?(
            mg|mcg|µg|ug|g|ml|l|iu|ui|ie|units?|unidad(?:es)?|unites?|einheit(?:en)?|unidades?|
            tablets?|pills?|puffs?|capsules?|drops?|doses?|
            comprimidos?|pastillas?|capsulas?|gotas|dosis|inhalaciones|
            comprimes?|gelules?|gouttes|bouffees|
            tabletten?|kapseln?|tropfen|hube|hub|
            ملغ|مجم|ملغم|وحده|وحدات|حبه|حبات|قرص|اقراص|بخه|بخات|نقطه
        )\b",
    )
    .ok()
});

/// Normalized "number unit" pairs in a text.
fn dose_mentions(text: &str) -> Vec<String> {
    let normalized = normalize::normalized(text);
    DOSE.as_ref().map_or_else(Vec::new, |re| {
        re.captures_iter(&normalized)
            .map(|c| format!("{} {}", &c[1], &c[2]))
            .collect()
    })
}

/// The outcome of every check on one draft.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub language_ok: bool,
    pub readability: String,
    pub readability_ok: bool,
    /// Dose amounts in the draft that no passage contains.
    pub invented_doses: Vec<String>,
    /// Red-flag phrases in the draft that no passage contains.
    pub invented_red_flags: Vec<String>,
    pub length_ok: bool,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.language_ok
            && self.readability_ok
            && self.invented_doses.is_empty()
            && self.invented_red_flags.is_empty()
            && self.length_ok
    }

    /// For provenance: no message text, only outcomes.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "passed": self.passed(),
            "language": self.language_ok,
            "reading_level": self.readability,
            "reading_level_ok": self.readability_ok,
            "invented_doses": self.invented_doses.len(),
            "invented_red_flags": self.invented_red_flags.len(),
            "length": self.length_ok,
        })
    }
}

/// Runs every check on `draft`.
pub fn check(
    draft: &str,
    language: Language,
    level: ReadingLevel,
    passages: &[&Article],
    detector: &Detector,
    lexicons: &Lexicons,
) -> CheckReport {
    let sources: String = passages
        .iter()
        .map(|a| format!("{}\n{}", a.title, a.body))
        .collect::<Vec<_>>()
        .join("\n");
    let source_doses = dose_mentions(&sources);
    let invented_doses = dose_mentions(draft)
        .into_iter()
        .filter(|d| !source_doses.contains(d))
        .collect();

    let draft_words = normalize::words(draft);
    let source_words = normalize::words(&sources);
    let mut invented_red_flags = Vec::new();
    if let Some(lexicon) = lexicons.get(language) {
        let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
        for set in lexicon.urgent.values() {
            for (phrase, _) in set.find_all(&draft_words) {
                if phrase.find_all(&source_words).is_empty()
                    && seen.insert(phrase.text.as_str(), ()).is_none()
                {
                    invented_red_flags.push(phrase.text.clone());
                }
            }
        }
    }

    let readability = careloop_literacy::assess(draft, language);
    let chars = draft.chars().count();
    CheckReport {
        language_ok: detector.is_in(draft, language),
        readability_ok: readability.fits(level),
        readability: readability.to_string(),
        invented_doses,
        invented_red_flags,
        length_ok: (MIN_REPLY_CHARS..=MAX_REPLY_CHARS).contains(&chars),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dose_amounts_are_found_in_every_language() {
        assert_eq!(dose_mentions("Take 500 mg twice a day"), ["500 mg"]);
        assert_eq!(dose_mentions("toma 2 pastillas"), ["2 pastillas"]);
        assert_eq!(dose_mentions("prenez 10 unités"), ["10 unites"]);
        assert_eq!(dose_mentions("2 Hübe"), ["2 hube"]);
        assert_eq!(dose_mentions("خذ 2 حبة"), ["2 حبه"]);
        assert!(dose_mentions("Walk 30 minutes a day").is_empty());
        assert!(dose_mentions("type 2 diabetes").is_empty());
    }
}
