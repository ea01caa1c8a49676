//! Evaluation on the labelled sets in `tests/labelled/`: triage recall and false alarms, and
//! retrieval hit rate. Used by the tests (which assert the targets) and by `careloop eval`
//! (which reports the numbers for BENCHMARKS.md).

use std::path::{Path, PathBuf};

use careloop_core::{Language, ReadingLevel, Slug};
use serde::Deserialize;

use crate::lexicon::Lexicons;
use crate::library::{Library, Query};
use crate::triage::{Triage, triage};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct EvalError {
    pub path: PathBuf,
    pub problem: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageCase {
    pub text: String,
    /// `urgent`, `dosing` or `ordinary`.
    pub expect: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledQuestion {
    pub text: String,
    pub condition: String,
    pub topic: String,
}

#[derive(Deserialize)]
struct TriageFile {
    case: Vec<TriageCase>,
}

#[derive(Deserialize)]
struct QuestionFile {
    question: Vec<LabelledQuestion>,
}

fn read_sets<T, F: for<'de> Deserialize<'de>>(
    dir: &Path,
    prefix: &str,
    items: impl Fn(F) -> Vec<T>,
) -> Result<Vec<(Language, T)>, EvalError> {
    let mut out = Vec::new();
    for &language in Language::ALL {
        let path = dir.join(format!("{prefix}.{}.toml", language.code()));
        let err = |problem: String| EvalError {
            path: path.clone(),
            problem,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let file: F = toml::from_str(&text).map_err(|e| err(e.message().to_owned()))?;
        out.extend(items(file).into_iter().map(|t| (language, t)));
    }
    Ok(out)
}

/// Every labelled triage case, with the language of its file.
pub fn triage_cases(dir: &Path) -> Result<Vec<(Language, TriageCase)>, EvalError> {
    read_sets(dir, "triage", |f: TriageFile| f.case)
}

/// Every held-out triage case (`holdout.<code>.toml`, written apart from the lexicons to check
/// they generalise), with the language of its file.
pub fn holdout_cases(dir: &Path) -> Result<Vec<(Language, TriageCase)>, EvalError> {
    read_sets(dir, "holdout", |f: TriageFile| f.case)
}

/// Every labelled question, with the language of its file.
pub fn questions(dir: &Path) -> Result<Vec<(Language, LabelledQuestion)>, EvalError> {
    read_sets(dir, "questions", |f: QuestionFile| f.question)
}

/// Triage against the labels.
#[derive(Debug, Clone, Default)]
pub struct TriageScore {
    pub cases: usize,
    pub urgent: usize,
    pub urgent_caught: usize,
    pub dosing: usize,
    /// Dosing questions escalated (as dosing, or as urgent: either way no model answers).
    pub dosing_caught: usize,
    pub ordinary: usize,
    pub false_alarms: usize,
    /// One line per wrong outcome.
    pub misses: Vec<String>,
}

impl TriageScore {
    pub fn urgent_recall(&self) -> f64 {
        ratio(self.urgent_caught, self.urgent)
    }
    pub fn dosing_recall(&self) -> f64 {
        ratio(self.dosing_caught, self.dosing)
    }
    pub fn false_alarm_rate(&self) -> f64 {
        ratio(self.false_alarms, self.ordinary)
    }
}

impl std::fmt::Display for TriageScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages; urgent recall {:.3} ({}/{}), dosing recall {:.3} ({}/{}), false alarms {:.3} ({}/{})",
            self.cases,
            self.urgent_recall(),
            self.urgent_caught,
            self.urgent,
            self.dosing_recall(),
            self.dosing_caught,
            self.dosing,
            self.false_alarm_rate(),
            self.false_alarms,
            self.ordinary,
        )
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

pub fn score_triage(lexicons: &Lexicons, cases: &[(Language, TriageCase)]) -> TriageScore {
    let mut s = TriageScore {
        cases: cases.len(),
        ..TriageScore::default()
    };
    for (language, case) in cases {
        let got = triage(lexicons, &case.text, *language);
        let ok = match case.expect.as_str() {
            "urgent" => {
                s.urgent += 1;
                let ok = matches!(got, Triage::Urgent { .. });
                s.urgent_caught += usize::from(ok);
                ok
            }
            "dosing" => {
                s.dosing += 1;
                let ok = !got.is_ordinary();
                s.dosing_caught += usize::from(ok);
                ok
            }
            _ => {
                s.ordinary += 1;
                let ok = got.is_ordinary();
                s.false_alarms += usize::from(!ok);
                ok
            }
        };
        if !ok {
            s.misses.push(format!(
                "[{language}] expected {}, got {got:?}: {}",
                case.expect, case.text
            ));
        }
    }
    s
}

/// Retrieval against the labels, at one reading level.
#[derive(Debug, Clone, Default)]
pub struct RetrievalScore {
    pub questions: usize,
    /// The labelled article is ranked first.
    pub top1: usize,
    /// … within the first three, searching every condition.
    pub top3: usize,
    /// … within the first three when the patient's condition is known (the live case).
    pub top3_with_profile: usize,
    pub misses: Vec<String>,
}

impl RetrievalScore {
    pub fn top3_rate(&self) -> f64 {
        ratio(self.top3, self.questions)
    }
    pub fn top1_rate(&self) -> f64 {
        ratio(self.top1, self.questions)
    }
    pub fn top3_with_profile_rate(&self) -> f64 {
        ratio(self.top3_with_profile, self.questions)
    }
}

pub fn score_retrieval(
    library: &Library,
    questions: &[(Language, LabelledQuestion)],
    level: ReadingLevel,
) -> RetrievalScore {
    let mut s = RetrievalScore::default();
    for (language, q) in questions {
        s.questions += 1;
        let rank = |conditions: &[Slug]| {
            library
                .search(&Query {
                    text: &q.text,
                    language: *language,
                    level,
                    conditions,
                    limit: 3,
                })
                .iter()
                .position(|h| {
                    h.article.condition.as_str() == q.condition
                        && h.article.topic.as_str() == q.topic
                })
        };
        let open = rank(&[]);
        let profile: Vec<Slug> = q.condition.parse().into_iter().collect();
        let with_profile = rank(&profile);
        s.top1 += usize::from(open == Some(0));
        s.top3 += usize::from(open.is_some());
        s.top3_with_profile += usize::from(with_profile.is_some());
        if open.is_none() {
            s.misses.push(format!(
                "[{language} {level}] {}/{}: {}",
                q.condition, q.topic, q.text
            ));
        }
    }
    s
}
