//! Commands and short answers a patient types: STOP / START / HELP / LANGUAGE / LEVEL, yes/no,
//! "explain more simply", and answers to a reminder, in every supported language.

use careloop_core::{AdherenceKind, Language, ReadingLevel};

use crate::lexicon::{LanguageLexicon, Lexicons, PhraseSet};
use crate::normalize;

/// A recognized command, and the language whose word list recognized it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Stop,
    Start,
    Help,
    /// `LANGUAGE` with the language named after it, if any was recognized.
    Language(Option<Language>),
    /// `LEVEL` with the level named after it, if any.
    Level(Option<ReadingLevel>),
    Simpler,
}

/// The longest message that can still be an "explain more simply" request.
const SIMPLER_MAX_WORDS: usize = 8;

/// A command, if the whole message is one. The profile language's words are tried first.
pub fn command(lexicons: &Lexicons, text: &str, profile: Language) -> Option<(Command, Language)> {
    let words = normalize::words(text);
    if words.is_empty() {
        return None;
    }
    for lexicon in lexicons.in_order(profile) {
        let c = &lexicon.commands;
        let found = if c.stop.is_whole(&words) {
            Some(Command::Stop)
        } else if c.start.is_whole(&words) {
            Some(Command::Start)
        } else if c.help.is_whole(&words) {
            Some(Command::Help)
        } else if let Some(rest) = c.language.strip_from(&words) {
            Some(Command::Language(language_named(lexicons, rest)))
        } else if let Some(rest) = c.level.strip_from(&words) {
            Some(Command::Level(level_named(lexicons, rest)))
        } else if words.len() <= SIMPLER_MAX_WORDS && c.simpler.find(&words).is_some() {
            Some(Command::Simpler)
        } else {
            None
        };
        if let Some(found) = found {
            return Some((found, lexicon.language));
        }
    }
    None
}

/// A yes or no, when the whole message is one (in any language).
pub fn yes_no(lexicons: &Lexicons, text: &str, profile: Language) -> Option<bool> {
    let words = normalize::words(text);
    lexicons.in_order(profile).find_map(|l| {
        if l.commands.yes.is_whole(&words) {
            Some(true)
        } else if l.commands.no.is_whole(&words) {
            Some(false)
        } else {
            None
        }
    })
}

/// An answer to a medication reminder, when the whole message is one.
pub fn reminder_reply(lexicons: &Lexicons, text: &str, profile: Language) -> Option<AdherenceKind> {
    let words = normalize::words(text);
    lexicons.in_order(profile).find_map(|l| {
        let r = &l.replies;
        [
            (&r.taken, AdherenceKind::Taken),
            (&r.skipped, AdherenceKind::Skipped),
            (&r.snoozed, AdherenceKind::Snoozed),
        ]
        .into_iter()
        .find(|(set, _)| set.is_whole(&words))
        .map(|(_, kind)| kind)
    })
}

/// A language named by code (`es`), by number in the onboarding list (`2`) or by any name in any
/// language's `[names]`.
pub fn language_named(lexicons: &Lexicons, words: &[String]) -> Option<Language> {
    let words: Vec<String> = words.iter().filter(|w| !is_filler(w)).cloned().collect();
    if let [only] = words.as_slice() {
        if let Ok(n) = only.parse::<usize>() {
            return n.checked_sub(1).and_then(|i| Language::ALL.get(i)).copied();
        }
        if let Some(l) = Language::ALL.iter().find(|l| l.code() == only) {
            return Some(*l);
        }
    }
    Language::ALL
        .iter()
        .copied()
        .find(|l| named(lexicons, l.code(), &words))
}

/// A reading level named by number (`1` easy, `2` standard) or by any name.
pub fn level_named(lexicons: &Lexicons, words: &[String]) -> Option<ReadingLevel> {
    let words: Vec<String> = words.iter().filter(|w| !is_filler(w)).cloned().collect();
    if let [only] = words.as_slice()
        && let Ok(n) = only.parse::<usize>()
    {
        return n
            .checked_sub(1)
            .and_then(|i| ReadingLevel::ALL.get(i))
            .copied();
    }
    ReadingLevel::ALL
        .iter()
        .copied()
        .find(|l| named(lexicons, l.as_str(), &words))
}

fn named(lexicons: &Lexicons, key: &str, words: &[String]) -> bool {
    !words.is_empty()
        && Language::ALL.iter().any(|&l| {
            lexicons
                .get(l)
                .and_then(|lex: &LanguageLexicon| lex.names.get(key))
                .is_some_and(|set: &PhraseSet| set.is_whole(words))
        })
}

/// Small words people put between a command and its argument ("language to Spanish").
fn is_filler(word: &str) -> bool {
    matches!(
        word,
        "to" | "in" | "a" | "en" | "al" | "para" | "auf" | "zu" | "em" | "الى" | "ال"
    )
}
