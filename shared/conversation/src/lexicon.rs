//! Reviewable word lists from `content/safety/<language>.toml`: red flags, dosing questions,
//! their exceptions, commands, reminder replies and the names of languages and reading levels.
//! The format and the matching rules are documented in `content/README.md`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use careloop_core::Language;
use serde::Deserialize;

use crate::normalize;

/// One phrase, normalized into word patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// As written in the lexicon, for reports.
    pub text: String,
    words: Vec<WordPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WordPattern {
    Exact(String),
    /// `suicid*`
    Prefix(String),
    /// `*tabletten`: German compounds end in the word that matters.
    Suffix(String),
    /// `*`: any one word.
    Any,
    /// `..`: up to this many words (none included), for languages with free word order.
    Gap(usize),
    /// `take|stop|double`: any one of these words (each may itself be `word*` or `*word`).
    OneOf(Vec<WordPattern>),
}

/// The most words `..` skips.
const GAP_WORDS: usize = 4;

impl WordPattern {
    fn matches(&self, word: &str) -> bool {
        self.matches_exactly(word)
            // Arabic writes "and" (و) joined to the next word: "ووجهي" is "and my face".
            || word
                .strip_prefix('و')
                .is_some_and(|rest| !rest.is_empty() && self.matches_exactly(rest))
    }

    fn matches_exactly(&self, word: &str) -> bool {
        match self {
            WordPattern::Exact(w) => w == word,
            WordPattern::Prefix(p) => word.starts_with(p.as_str()),
            WordPattern::Suffix(s) => word.ends_with(s.as_str()),
            WordPattern::Any => true,
            WordPattern::Gap(_) => false,
            WordPattern::OneOf(alternatives) => {
                alternatives.iter().any(|a| a.matches_exactly(word))
            }
        }
    }

    /// One word of a phrase as written: `word`, `word*`, `*word`; `None` unless it normalizes to
    /// exactly one word.
    fn single(raw: &str) -> Option<WordPattern> {
        let (body, suffix) = match raw.strip_prefix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let (body, prefix) = match body.strip_suffix('*') {
            Some(body) => (body, true),
            None => (body, false),
        };
        let [word]: [String; 1] = normalize::words(body).try_into().ok()?;
        Some(match (prefix, suffix) {
            (true, _) => WordPattern::Prefix(word),
            (false, true) => WordPattern::Suffix(word),
            (false, false) => WordPattern::Exact(word),
        })
    }
}

/// Every end of a match of `patterns` starting at `words[at]`, shortest first.
fn match_ends(patterns: &[WordPattern], words: &[String], at: usize) -> Vec<usize> {
    let Some((first, rest)) = patterns.split_first() else {
        return vec![at];
    };
    if let WordPattern::Gap(max) = first {
        let mut ends: Vec<usize> = (0..=*max)
            .take_while(|skip| at + skip <= words.len())
            .flat_map(|skip| match_ends(rest, words, at + skip))
            .collect();
        ends.sort_unstable();
        ends.dedup();
        return ends;
    }
    match words.get(at) {
        Some(word) if first.matches(word) => match_ends(rest, words, at + 1),
        _ => Vec::new(),
    }
}

/// Where a phrase matched: word positions `start..end` of the normalized message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn overlaps(self, other: Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The shortest match of `patterns` starting at `words[at]`.
fn match_at(patterns: &[WordPattern], words: &[String], at: usize) -> Option<usize> {
    match_ends(patterns, words, at).first().copied()
}

impl Phrase {
    /// `None` when the phrase has no words after normalization, or an alternative (`a|b`) that is
    /// not exactly one word.
    pub fn parse(text: &str) -> Option<Phrase> {
        let mut words = Vec::new();
        for raw in text.split_whitespace() {
            if raw == "*" {
                words.push(WordPattern::Any);
                continue;
            }
            if raw == ".." {
                words.push(WordPattern::Gap(GAP_WORDS));
                continue;
            }
            if raw.contains('|') {
                let alternatives: Option<Vec<WordPattern>> =
                    raw.split('|').map(WordPattern::single).collect();
                words.push(WordPattern::OneOf(alternatives?));
                continue;
            }
            let (body, suffix) = match raw.strip_prefix('*') {
                Some(body) => (body, true),
                None => (raw, false),
            };
            let (body, prefix) = match body.strip_suffix('*') {
                Some(body) => (body, true),
                None => (body, false),
            };
            let parts = normalize::words(body);
            let last = parts.len().saturating_sub(1);
            for (i, part) in parts.into_iter().enumerate() {
                words.push(if prefix && i == last {
                    WordPattern::Prefix(part)
                } else if suffix && i == 0 {
                    WordPattern::Suffix(part)
                } else {
                    WordPattern::Exact(part)
                });
            }
        }
        // A phrase must pin at least one word, and may not start or end with a gap.
        let pinned = |w: &WordPattern| !matches!(w, WordPattern::Any | WordPattern::Gap(_));
        if !words.iter().any(pinned) {
            return None;
        }
        while matches!(words.first(), Some(WordPattern::Gap(_))) {
            words.remove(0);
        }
        while matches!(words.last(), Some(WordPattern::Gap(_))) {
            words.pop();
        }
        Some(Phrase {
            text: text.to_owned(),
            words,
        })
    }

    /// Every place the phrase occurs in `words` (normalized message words).
    pub fn find_all(&self, words: &[String]) -> Vec<Span> {
        (0..words.len())
            .filter_map(|start| match_at(&self.words, words, start).map(|end| Span { start, end }))
            .collect()
    }

    /// Whether the phrase is exactly the whole message.
    pub fn is_whole(&self, words: &[String]) -> bool {
        !words.is_empty() && match_ends(&self.words, words, 0).contains(&words.len())
    }

    /// If the message starts with this phrase, the words after it.
    pub fn strip_from<'w>(&self, words: &'w [String]) -> Option<&'w [String]> {
        match_at(&self.words, words, 0).map(|end| &words[end..])
    }
}

/// A named list of phrases, indexed by their first word so a message is only compared with the
/// phrases that can start at each of its words (lexicons hold thousands of phrases).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhraseSet {
    pub phrases: Vec<Phrase>,
    by_first: HashMap<String, Vec<usize>>,
    /// Phrases starting with a prefix, suffix or wildcard: tried everywhere.
    unindexed: Vec<usize>,
}

impl PhraseSet {
    fn parse(list: &[String]) -> PhraseSet {
        let phrases: Vec<Phrase> = list.iter().filter_map(|p| Phrase::parse(p)).collect();
        let mut by_first: HashMap<String, Vec<usize>> = HashMap::new();
        let mut unindexed = Vec::new();
        for (i, p) in phrases.iter().enumerate() {
            let firsts: Option<Vec<&String>> = match p.words.first() {
                Some(WordPattern::Exact(w)) => Some(vec![w]),
                Some(WordPattern::OneOf(alternatives)) => alternatives
                    .iter()
                    .map(|a| match a {
                        WordPattern::Exact(w) => Some(w),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            match firsts {
                Some(firsts) => {
                    for w in firsts {
                        by_first.entry(w.clone()).or_default().push(i);
                    }
                }
                None => unindexed.push(i),
            }
        }
        PhraseSet {
            phrases,
            by_first,
            unindexed,
        }
    }

    /// The phrases that may match starting at `word`.
    fn candidates<'a>(&'a self, word: &str) -> impl Iterator<Item = &'a Phrase> + use<'a> {
        let joined_and = word.strip_prefix('و').filter(|rest| !rest.is_empty());
        self.by_first
            .get(word)
            .into_iter()
            .flatten()
            .chain(
                joined_and
                    .and_then(|rest| self.by_first.get(rest))
                    .into_iter()
                    .flatten(),
            )
            .chain(self.unindexed.iter())
            .filter_map(|&i| self.phrases.get(i))
    }

    /// The first match in the message and its phrase.
    pub fn find(&self, words: &[String]) -> Option<(&Phrase, Span)> {
        self.find_all(words).into_iter().next()
    }

    /// Every match, in message order.
    pub fn find_all<'a>(&'a self, words: &[String]) -> Vec<(&'a Phrase, Span)> {
        let mut out = Vec::new();
        for (start, word) in words.iter().enumerate() {
            for phrase in self.candidates(word) {
                if let Some(end) = match_at(&phrase.words, words, start) {
                    out.push((phrase, Span { start, end }));
                }
            }
        }
        out
    }

    pub fn is_whole(&self, words: &[String]) -> bool {
        words
            .first()
            .is_some_and(|first| self.candidates(first).any(|p| p.is_whole(words)))
    }

    /// The words after the longest phrase the message starts with.
    pub fn strip_from<'w>(&self, words: &'w [String]) -> Option<&'w [String]> {
        let first = words.first()?;
        self.candidates(first)
            .filter_map(|p| p.strip_from(words))
            .min_by_key(|rest| rest.len())
    }
}

/// Commands a patient can send in this language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    pub stop: PhraseSet,
    pub start: PhraseSet,
    pub help: PhraseSet,
    pub language: PhraseSet,
    pub level: PhraseSet,
    pub yes: PhraseSet,
    pub no: PhraseSet,
    pub simpler: PhraseSet,
}

/// Answers to a medication reminder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    pub taken: PhraseSet,
    pub skipped: PhraseSet,
    pub snoozed: PhraseSet,
}

/// One language's lexicon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageLexicon {
    pub language: Language,
    /// Red-flag categories (`chest_pain`, `stroke`, …).
    pub urgent: BTreeMap<String, PhraseSet>,
    /// Dosing question categories (`change`, `amount`).
    pub dosing: BTreeMap<String, PhraseSet>,
    /// Phrases that cancel an urgent or dosing match they overlap.
    pub not_urgent: PhraseSet,
    pub commands: Commands,
    pub replies: Replies,
    /// Names people use for languages (`en`, …) and levels (`easy`, `standard`).
    pub names: BTreeMap<String, PhraseSet>,
}

#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error("cannot read the lexicon folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("no lexicon for {0}: every supported language needs content/safety/<code>.toml")]
    Missing(Language),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLexicon {
    language: String,
    urgent: BTreeMap<String, Vec<String>>,
    dosing: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    not_urgent: RawNotUrgent,
    commands: RawCommands,
    #[serde(default)]
    replies: RawReplies,
    #[serde(default)]
    names: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotUrgent {
    #[serde(default)]
    phrases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommands {
    stop: Vec<String>,
    start: Vec<String>,
    help: Vec<String>,
    language: Vec<String>,
    level: Vec<String>,
    yes: Vec<String>,
    no: Vec<String>,
    #[serde(default)]
    simpler: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReplies {
    #[serde(default)]
    taken: Vec<String>,
    #[serde(default)]
    skipped: Vec<String>,
    #[serde(default)]
    snoozed: Vec<String>,
}

/// The first phrase of a list that cannot be used, for a clear error at load time (a safety list
/// must never drop a phrase silently).
fn unusable<'a>(lists: impl IntoIterator<Item = &'a Vec<String>>) -> Option<&'a str> {
    lists
        .into_iter()
        .flatten()
        .find(|p| Phrase::parse(p).is_none())
        .map(String::as_str)
}

fn sets(raw: BTreeMap<String, Vec<String>>) -> BTreeMap<String, PhraseSet> {
    raw.into_iter()
        .map(|(k, v)| (k, PhraseSet::parse(&v)))
        .collect()
}

impl LanguageLexicon {
    pub fn parse(path: &Path, text: &str) -> Result<LanguageLexicon, LexiconError> {
        let err = |problem: String| LexiconError::File {
            path: path.to_path_buf(),
            problem,
        };
        let raw: RawLexicon = toml::from_str(text).map_err(|e| err(e.message().to_owned()))?;
        let language: Language = raw.language.parse().map_err(|e| err(format!("{e}")))?;
        if raw.urgent.is_empty() {
            return Err(err("[urgent] must list at least one category".into()));
        }
        if raw.commands.stop.is_empty() {
            return Err(err("[commands] stop must not be empty".into()));
        }
        let c = &raw.commands;
        let all = raw
            .urgent
            .values()
            .chain(raw.dosing.values())
            .chain([
                &raw.not_urgent.phrases,
                &c.stop,
                &c.start,
                &c.help,
                &c.language,
                &c.level,
            ])
            .chain([
                &c.yes,
                &c.no,
                &c.simpler,
                &raw.replies.taken,
                &raw.replies.skipped,
            ])
            .chain([&raw.replies.snoozed])
            .chain(raw.names.values());
        if let Some(bad) = unusable(all) {
            return Err(err(format!(
                "phrase {bad:?} matches nothing: it needs a word, and each `a|b` alternative must be one word"
            )));
        }
        let c = raw.commands;
        Ok(LanguageLexicon {
            language,
            urgent: sets(raw.urgent),
            dosing: sets(raw.dosing),
            not_urgent: PhraseSet::parse(&raw.not_urgent.phrases),
            commands: Commands {
                stop: PhraseSet::parse(&c.stop),
                start: PhraseSet::parse(&c.start),
                help: PhraseSet::parse(&c.help),
                language: PhraseSet::parse(&c.language),
                level: PhraseSet::parse(&c.level),
                yes: PhraseSet::parse(&c.yes),
                no: PhraseSet::parse(&c.no),
                simpler: PhraseSet::parse(&c.simpler),
            },
            replies: Replies {
                taken: PhraseSet::parse(&raw.replies.taken),
                skipped: PhraseSet::parse(&raw.replies.skipped),
                snoozed: PhraseSet::parse(&raw.replies.snoozed),
            },
            names: sets(raw.names),
        })
    }
}

/// Every language's lexicon.
#[derive(Debug, Clone)]
pub struct Lexicons {
    by_language: BTreeMap<Language, LanguageLexicon>,
}

impl Lexicons {
    /// Reads `<dir>/<code>.toml` for every supported language; all must be present and valid.
    pub fn load_dir(dir: &Path) -> Result<Lexicons, LexiconError> {
        let mut by_language = BTreeMap::new();
        for &language in Language::ALL {
            let path = dir.join(format!("{}.toml", language.code()));
            let text = std::fs::read_to_string(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    LexiconError::Missing(language)
                } else {
                    LexiconError::Folder {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            let lexicon = LanguageLexicon::parse(&path, &text)?;
            if lexicon.language != language {
                return Err(LexiconError::File {
                    path,
                    problem: format!("says language = \"{}\"", lexicon.language.code()),
                });
            }
            by_language.insert(language, lexicon);
        }
        Ok(Lexicons { by_language })
    }

    pub fn from_lexicons(list: impl IntoIterator<Item = LanguageLexicon>) -> Lexicons {
        Lexicons {
            by_language: list.into_iter().map(|l| (l.language, l)).collect(),
        }
    }

    pub fn get(&self, language: Language) -> Option<&LanguageLexicon> {
        self.by_language.get(&language)
    }

    /// The patient's language first, then every other, so the patient's own words win ties.
    pub fn in_order(&self, first: Language) -> impl Iterator<Item = &LanguageLexicon> {
        self.by_language.get(&first).into_iter().chain(
            self.by_language
                .values()
                .filter(move |l| l.language != first),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        normalize::words(s)
    }

    #[test]
    fn phrases_match_words_in_order() {
        let p = Phrase::parse("chest pain").unwrap();
        assert_eq!(p.find_all(&w("I have CHEST pain now")).len(), 1);
        assert!(p.find_all(&w("pain in my chest")).is_empty());
        assert!(p.find_all(&w("chestpain")).is_empty());
    }

    #[test]
    fn prefix_and_wildcard_words() {
        let p = Phrase::parse("suicid*").unwrap();
        assert_eq!(p.find_all(&w("suicidal thoughts")).len(), 1);
        let p = Phrase::parse("double * dose").unwrap();
        assert_eq!(p.find_all(&w("can I double my dose")).len(), 1);
        assert!(p.find_all(&w("double dose")).is_empty());
        assert!(Phrase::parse("*").is_none());
        assert!(Phrase::parse("  !! ").is_none());
        assert!(Phrase::parse("* ..").is_none());
    }

    #[test]
    fn alternatives_match_any_one_word() {
        let p = Phrase::parse("stop|quit|skip* my *statin").unwrap();
        assert_eq!(p.find_all(&w("can I quit my atorvastatin")).len(), 1);
        assert_eq!(p.find_all(&w("skipping my simvastatin")).len(), 1);
        assert!(p.find_all(&w("start my atorvastatin")).is_empty());
        assert!(
            Phrase::parse("stop|two words").is_some(),
            "split on spaces first"
        );
        assert!(Phrase::parse("stop|").is_none());
        let set = PhraseSet::parse(&["take|double my dose".into()]);
        assert!(set.find(&w("should I double my dose")).is_some());
    }

    #[test]
    fn arabic_and_joined_to_a_word_still_matches() {
        let p = Phrase::parse("وجهي مايل").unwrap();
        assert_eq!(p.find_all(&w("راسي يوجعني ووجهي مايل")).len(), 1);
    }

    #[test]
    fn gaps_and_suffixes_for_free_word_order_and_compounds() {
        let p = Phrase::parse("schwanger .. blutung*").unwrap();
        assert_eq!(
            p.find_all(&w("Ich bin schwanger und habe starke Blutungen"))
                .len(),
            1
        );
        assert_eq!(p.find_all(&w("schwanger Blutung")).len(), 1);
        assert!(
            p.find_all(&w(
                "schwanger, das Baby ist gesund, keine Sorgen, alles gut, Blutung"
            ))
            .is_empty()
        );
        let p = Phrase::parse("*tabletten absetzen").unwrap();
        assert_eq!(
            p.find_all(&w("Darf ich die Blutdrucktabletten absetzen?"))
                .len(),
            1
        );
        let p = Phrase::parse(".. chest pain ..").unwrap();
        assert!(p.is_whole(&w("chest pain")));
    }

    #[test]
    fn accents_and_apostrophes_in_phrases() {
        let p = Phrase::parse("don't have chest pain").unwrap();
        assert_eq!(
            p.find_all(&w("I dont have... no, I DON'T have chest pain"))
                .len(),
            1
        );
        let p = Phrase::parse("arrêt").unwrap();
        assert!(p.is_whole(&w("ARRET")));
    }

    #[test]
    fn strip_from_takes_the_longest_command() {
        let set = PhraseSet::parse(&["language".into(), "change language".into()]);
        assert_eq!(
            set.strip_from(&w("change language to es")).unwrap(),
            ["to", "es"]
        );
        assert_eq!(set.strip_from(&w("language es")).unwrap(), ["es"]);
        assert!(set.strip_from(&w("my language")).is_none());
    }

    #[test]
    fn a_lexicon_file_needs_its_sections() {
        let bad = LanguageLexicon::parse(Path::new("x.toml"), "language = \"en\"");
        assert!(bad.unwrap_err().to_string().contains("x.toml"));
        let typo = LanguageLexicon::parse(
            Path::new("x.toml"),
            "language = \"en\"\nurgnt = {}\n[urgent]\na=[\"b\"]\n[dosing]\n[commands]\nstop=[\"stop\"]\nstart=[]\nhelp=[]\nlanguage=[]\nlevel=[]\nyes=[]\nno=[]",
        );
        assert!(typo.unwrap_err().to_string().contains("urgnt"));
        let empty_alternative = LanguageLexicon::parse(
            Path::new("x.toml"),
            "language = \"en\"\n[urgent]\na=[\"chest|\"]\n[dosing]\n[commands]\nstop=[\"stop\"]\nstart=[]\nhelp=[]\nlanguage=[]\nlevel=[]\nyes=[]\nno=[]",
        );
        assert!(
            empty_alternative
                .unwrap_err()
                .to_string()
                .contains("chest|")
        );
    }
}
