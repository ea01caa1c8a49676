//! Words and sentences exactly as Python textstat 0.7.13 finds them.
//!
//! textstat works with Python regular expressions on `str`, whose classes differ from Rust's:
//! `\w` is letters, numbers and `_` only (combining marks such as Arabic harakat or a decomposed
//! accent are *not* word characters, so punctuation removal deletes them), and `\s` is
//! `str.isspace()`. Both are reproduced here rather than taken from a regex engine.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Python's `\w`: a letter, a number or `_`.
pub(crate) fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
        )
    }
}

/// Python's `str.isspace()`, used by `\s` and `str.split()`.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// What textstat's `remove_punctuation` does with apostrophes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apostrophes {
    /// Keep an apostrophe followed by `t`, `s`, `d`, `ve`, `ll` or `re` (`don't`, `it's`);
    /// textstat's default for counting words and syllables.
    KeepContractions,
    /// Remove them all; textstat's choice for long words and Arabic counts.
    Remove,
}

/// textstat's `remove_punctuation`: every character that is neither a word character nor white
/// space is deleted (so `well-known` becomes one word), apart from contraction apostrophes.
pub(crate) fn remove_punctuation(text: &str, apostrophes: Apostrophes) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let keep = is_word_char(c)
            || is_space(c)
            || (c == '\''
                && apostrophes == Apostrophes::KeepContractions
                && starts_contraction(&text[i + 1..]));
        if keep {
            out.push(c);
        }
    }
    out
}

/// The lookahead of textstat's `'(?=[tsd]|ve|ll|re)` (case-sensitive, like the original).
fn starts_contraction(rest: &str) -> bool {
    ["t", "s", "d", "ve", "ll", "re"]
        .iter()
        .any(|ending| rest.starts_with(ending))
}

/// `str.split()`: the words of a text whose punctuation was removed.
pub(crate) fn split_words(cleaned: &str) -> impl Iterator<Item = &str> {
    cleaned.split(is_space).filter(|w| !w.is_empty())
}

/// textstat's `count_words` (`lexicon_count`).
pub(crate) fn count_words(text: &str) -> usize {
    split_words(&remove_punctuation(text, Apostrophes::KeepContractions)).count()
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?')
}

/// textstat's `count_sentences`: the matches of `\b[^.!?]+[.!?]*`, less those of two words or
/// fewer, and at least one unless the text is empty.
///
/// A match can only start at a word boundary followed by a character other than `.!?`, which after
/// the previous match (it ends after its terminators) is always the next word character.
pub(crate) fn count_sentences(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    let (mut found, mut ignored) = (0usize, 0usize);
    let mut rest = text;
    while let Some(start) = rest.find(is_word_char) {
        let tail = &rest[start..];
        let body = tail.find(is_terminator).unwrap_or(tail.len());
        let end = tail[body..]
            .find(|c| !is_terminator(c))
            .map_or(tail.len(), |n| body + n);
        found += 1;
        if count_words(&tail[..end]) <= 2 {
            ignored += 1;
        }
        rest = &tail[end..];
    }
    (found - ignored).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_characters_follow_python() {
        assert!(is_word_char('é') && is_word_char('ب') && is_word_char('٣') && is_word_char('_'));
        // Tatweel is a modifier letter in Python too.
        assert!(is_word_char('\u{640}'));
        // Combining marks (harakat, a decomposed accent) are not.
        assert!(!is_word_char('\u{64e}') && !is_word_char('\u{651}') && !is_word_char('\u{301}'));
        assert!(!is_word_char('-') && !is_word_char('’') && !is_word_char('🎉'));
        assert!(is_space('\u{a0}') && is_space('\u{1f}') && !is_space('\u{200b}'));
    }

    #[test]
    fn punctuation_removal_keeps_contractions_only() {
        let text = "Don't stop—it's well-known; l'eau 'quoted' you’re";
        assert_eq!(
            remove_punctuation(text, Apostrophes::KeepContractions),
            "Don't stopit's wellknown leau quoted youre"
        );
        assert_eq!(
            remove_punctuation(text, Apostrophes::Remove),
            "Dont stopits wellknown leau quoted youre"
        );
        assert_eq!(count_words(text), 6);
    }

    #[test]
    fn sentences_match_textstat() {
        assert_eq!(count_sentences(""), 0);
        assert_eq!(count_sentences("   "), 1);
        // Sentences of two words or fewer are not counted.
        assert_eq!(
            count_sentences("Stop now. Take your medicine today. Call us!"),
            1
        );
        assert_eq!(
            count_sentences(
                "¿Cómo está usted hoy? Muy bien, gracias a usted... Y usted, ¿qué tal?"
            ),
            3
        );
        assert_eq!(count_sentences("no punctuation at all here"), 1);
    }
}
