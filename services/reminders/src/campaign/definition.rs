//! What a campaign says, as a care team writes it (TOML or JSON, [`CampaignFile`]) and as the
//! engine uses it ([`CampaignDefinition`]), parsed once with every problem named by its field
//! (`steps[1].template`, `audience.conditions[0]`).
//!
//! ```toml
//! name = "Heart failure: after discharge"
//!
//! [audience]
//! conditions = ["heart_failure"]     # any of them (empty: everyone)
//! tags = ["pilot"]                   # all of them
//! enrolled_from = "2026-01-01"       # patients.created_at, UTC date, inclusive
//! enrolled_until = "2026-12-31"
//! channels = ["telegram", "email"]   # in order of preference (default: telegram, web_chat, email)
//!
//! [[steps]]                          # absolute: the same wall-clock time in each patient's zone
//! template = "hf-welcome"
//! at = "2026-12-01T10:00"            # or an instant, "2026-12-01T09:00:00Z", the same for all
//!
//! [[steps]]                          # relative to a patient date (`enrolled`: created_at)
//! template = "hf-day-3"
//! relative_to = "discharge_date"
//! days = 3
//! time = "10:00"                     # the patient's local time
//! ```

use std::fmt;

use careloop_core::{ChannelKind, Slug};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// Steps a campaign may have.
pub const MAX_STEPS: usize = 50;
/// How far before or after its date a relative step may fall.
pub const MAX_DAYS: i64 = 3650;
/// The built-in date field: the day the patient was enrolled (`patients.created_at`).
pub const ENROLLED: &str = "enrolled";
/// Channels tried, in order, when a campaign names none.
pub const DEFAULT_CHANNELS: &[ChannelKind] = &[
    ChannelKind::Telegram,
    ChannelKind::WebChat,
    ChannelKind::Email,
];

/// A campaign document as written. Everything is text here so that each value is parsed with an
/// error naming its field; unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub audience: AudienceFile,
    #[serde(default)]
    pub steps: Vec<StepFile>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_until: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    #[serde(default)]
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// A validated campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignDefinition {
    pub name: String,
    pub audience: Audience,
    pub steps: Vec<Step>,
}

/// Who the campaign is for, and how they are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The patient has any of these (empty: no condition required).
    pub conditions: Vec<Slug>,
    /// The patient has all of these.
    pub tags: Vec<String>,
    /// Enrolled (`created_at`, UTC date) on or after.
    pub enrolled_from: Option<NaiveDate>,
    /// Enrolled on or before.
    pub enrolled_until: Option<NaiveDate>,
    /// Tried in order; the first the patient is linked on and has not opted out of is used.
    pub channels: Vec<ChannelKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The key of an approved template, sent in each patient's language.
    pub template: Slug,
    pub when: StepTime,
}

/// When a step falls for a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepTime {
    /// The same instant for everyone.
    Instant(DateTime<Utc>),
    /// The same wall-clock time in each patient's own zone.
    Local(NaiveDateTime),
    /// `days` after (or before) one of the patient's dates, at `time` in their zone.
    Relative {
        field: DateField,
        days: i64,
        time: NaiveTime,
    },
}

/// A patient date a step may be relative to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DateField {
    /// The day the patient was enrolled, in their zone.
    Enrolled,
    /// A date set with `patient set-date` (`discharge_date`).
    Named(Slug),
}

impl fmt::Display for DateField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DateField::Enrolled => f.write_str(ENROLLED),
            DateField::Named(name) => f.write_str(name.as_str()),
        }
    }
}

/// One problem with a campaign document: the field (`steps[1].template`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A campaign document was rejected; every problem found is listed, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidCampaign {
    pub errors: Vec<FieldError>,
}

impl InvalidCampaign {
    pub fn one(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidCampaign {
            errors: vec![FieldError::new(field, reason)],
        }
    }

    /// Whether some problem is about `field`.
    pub fn names(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for InvalidCampaign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid campaign")?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The format of a campaign document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    /// From a file name's extension (`.toml`, `.json`).
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Reads a campaign document. Syntax errors and unknown fields are reported with the parser's
/// position, under the field `file`.
pub fn parse_document(text: &str, format: Format) -> Result<CampaignFile, InvalidCampaign> {
    match format {
        Format::Toml => toml::from_str(text).map_err(|e| {
            InvalidCampaign::one("file", e.message().to_owned() + &at_line(text, e.span()))
        }),
        Format::Json => {
            serde_json::from_str(text).map_err(|e| InvalidCampaign::one("file", e.to_string()))
        }
    }
}

fn at_line(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text
            .get(..s.start)
            .map_or(0, |before| before.matches('\n').count())
            + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

/// Collects problems while a document is parsed.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(field, reason));
    }

    fn parse<T: std::str::FromStr<Err = careloop_core::ParseError>>(
        &mut self,
        field: String,
        text: &str,
    ) -> Option<T> {
        match text.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.reason);
                None
            }
        }
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

fn parse_time(text: &str) -> Option<NaiveTime> {
    let t = text.trim();
    NaiveTime::parse_from_str(t, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"))
        .ok()
}

fn parse_at(text: &str) -> Option<StepTime> {
    let t = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(t) {
        return Some(StepTime::Instant(instant.with_timezone(&Utc)));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .map(StepTime::Local)
}

impl CampaignFile {
    /// Validates everything that needs no database (see [`crate::campaign::create`] for the
    /// checks against approved content and the condition catalogue).
    pub fn parse(&self) -> Result<CampaignDefinition, InvalidCampaign> {
        let mut p = Problems::default();

        let name = self.name.trim().to_owned();
        if name.is_empty() {
            p.add("name", "must not be empty");
        } else if name.chars().count() > 200 {
            p.add("name", "must be at most 200 characters");
        }

        let a = &self.audience;
        let mut conditions = Vec::new();
        for (i, c) in a.conditions.iter().enumerate() {
            if let Some(c) = p.parse::<Slug>(format!("audience.conditions[{i}]"), c)
                && !conditions.contains(&c)
            {
                conditions.push(c);
            }
        }
        let mut tags = Vec::new();
        for (i, t) in a.tags.iter().enumerate() {
            let t = t.trim();
            if t.is_empty() || t.chars().count() > 64 {
                p.add(format!("audience.tags[{i}]"), "must be 1-64 characters");
            } else if !tags.iter().any(|x: &String| x == t) {
                tags.push(t.to_owned());
            }
        }
        let mut date = |field: &str, text: &Option<String>| {
            text.as_deref().and_then(|t| {
                let d = parse_date(t);
                if d.is_none() {
                    p.add(
                        format!("audience.{field}"),
                        "must be a date like 2026-12-01",
                    );
                }
                d
            })
        };
        let enrolled_from = date("enrolled_from", &a.enrolled_from);
        let enrolled_until = date("enrolled_until", &a.enrolled_until);
        if let (Some(from), Some(until)) = (enrolled_from, enrolled_until)
            && until < from
        {
            p.add(
                "audience.enrolled_until",
                "must not be before enrolled_from",
            );
        }
        let mut channels = Vec::new();
        for (i, c) in a.channels.iter().enumerate() {
            if let Some(c) = p.parse::<ChannelKind>(format!("audience.channels[{i}]"), c)
                && !channels.contains(&c)
            {
                channels.push(c);
            }
        }
        if channels.is_empty() {
            channels = DEFAULT_CHANNELS.to_vec();
        }

        if self.steps.is_empty() {
            p.add("steps", "at least one step is required");
        } else if self.steps.len() > MAX_STEPS {
            p.add("steps", format!("at most {MAX_STEPS} steps"));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.iter().enumerate() {
            let template = p.parse::<Slug>(format!("steps[{i}].template"), &s.template);
            let when = match (&s.at, &s.relative_to) {
                (Some(_), Some(_)) => {
                    p.add(
                        format!("steps[{i}]"),
                        "give either `at` or `relative_to`, not both",
                    );
                    None
                }
                (None, None) => {
                    p.add(
                        format!("steps[{i}].at"),
                        "each step needs `at` (a date-time) or `relative_to` (a patient date)",
                    );
                    None
                }
                (Some(at), None) => {
                    for (given, name) in [(s.days.is_some(), "days"), (s.time.is_some(), "time")] {
                        if given {
                            p.add(format!("steps[{i}].{name}"), "only goes with `relative_to`");
                        }
                    }
                    let when = parse_at(at);
                    if when.is_none() {
                        p.add(
                            format!("steps[{i}].at"),
                            "must be a local date-time like 2026-12-01T10:00, or an instant \
                             like 2026-12-01T09:00:00Z",
                        );
                    }
                    when
                }
                (None, Some(field)) => {
                    let field = if field.trim() == ENROLLED {
                        Some(DateField::Enrolled)
                    } else {
                        p.parse::<Slug>(format!("steps[{i}].relative_to"), field.trim())
                            .map(DateField::Named)
                    };
                    let days = s.days.unwrap_or(0);
                    if days.abs() > MAX_DAYS {
                        p.add(
                            format!("steps[{i}].days"),
                            format!("must be between -{MAX_DAYS} and {MAX_DAYS}"),
                        );
                    }
                    let time = match &s.time {
                        None => {
                            p.add(format!("steps[{i}].time"), "is required with `relative_to`");
                            None
                        }
                        Some(t) => {
                            let time = parse_time(t);
                            if time.is_none() {
                                p.add(format!("steps[{i}].time"), "must be a time like 10:00");
                            }
                            time
                        }
                    };
                    match (field, time) {
                        (Some(field), Some(time)) if days.abs() <= MAX_DAYS => {
                            Some(StepTime::Relative { field, days, time })
                        }
                        _ => None,
                    }
                }
            };
            if let (Some(template), Some(when)) = (template, when) {
                steps.push(Step { template, when });
            }
        }

        if !p.0.is_empty() {
            return Err(InvalidCampaign { errors: p.0 });
        }
        Ok(CampaignDefinition {
            name,
            audience: Audience {
                conditions,
                tags,
                enrolled_from,
                enrolled_until,
                channels,
            },
            steps,
        })
    }
}

impl CampaignDefinition {
    /// The canonical document (what is stored in `campaigns.audience` and `campaigns.steps`).
    pub fn to_file(&self) -> CampaignFile {
        let a = &self.audience;
        CampaignFile {
            name: self.name.clone(),
            audience: AudienceFile {
                conditions: a.conditions.iter().map(|c| c.as_str().to_owned()).collect(),
                tags: a.tags.clone(),
                enrolled_from: a.enrolled_from.map(|d| d.to_string()),
                enrolled_until: a.enrolled_until.map(|d| d.to_string()),
                channels: a.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            },
            steps: self
                .steps
                .iter()
                .map(|s| {
                    let template = s.template.as_str().to_owned();
                    match &s.when {
                        StepTime::Instant(t) => StepFile {
                            template,
                            at: Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                            ..StepFile::default()
                        },
                        StepTime::Local(t) => StepFile {
                            template,
                            at: Some(t.format("%Y-%m-%dT%H:%M:%S").to_string()),
                            ..StepFile::default()
                        },
                        StepTime::Relative { field, days, time } => StepFile {
                            template,
                            relative_to: Some(field.to_string()),
                            days: Some(*days),
                            time: Some(time.format("%H:%M:%S").to_string()),
                            ..StepFile::default()
                        },
                    }
                })
                .collect(),
        }
    }

    /// Reads back what [`Self::to_file`] stored.
    pub fn from_stored(campaign: &careloop_store::Campaign) -> Result<Self, InvalidCampaign> {
        let audience = serde_json::from_value(campaign.audience.clone())
            .map_err(|e| InvalidCampaign::one("audience", e.to_string()))?;
        let steps = serde_json::from_value(campaign.steps.clone())
            .map_err(|e| InvalidCampaign::one("steps", e.to_string()))?;
        CampaignFile {
            name: campaign.name.clone(),
            audience,
            steps,
        }
        .parse()
    }

    /// When no patient can gain an occurrence any more: every step is absolute and its time has
    /// passed in every zone (local times are read as UTC+14 … UTC-12, so +14 h is safe). `None`
    /// when a step is relative (dates may be set at any time).
    pub fn closes_at(&self) -> Option<DateTime<Utc>> {
        self.steps
            .iter()
            .map(|s| match &s.when {
                StepTime::Instant(t) => Some(*t),
                StepTime::Local(t) => Some(t.and_utc() + chrono::TimeDelta::hours(14)),
                StepTime::Relative { .. } => None,
            })
            .try_fold(DateTime::<Utc>::MIN_UTC, |latest, t| {
                t.map(|t| latest.max(t))
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn doc(text: &str) -> Result<CampaignDefinition, InvalidCampaign> {
        parse_document(text, Format::Toml)?.parse()
    }

    #[test]
    fn a_full_document_parses_and_round_trips_through_its_stored_form() {
        let def = doc(r#"
            name = "HF"
            [audience]
            conditions = ["heart_failure", "heart_failure"]
            tags = ["pilot"]
            enrolled_from = "2026-01-01"
            channels = ["email"]
            [[steps]]
            template = "hf-welcome"
            at = "2026-12-01T10:00"
            [[steps]]
            template = "hf-day-3"
            relative_to = "discharge_date"
            days = 3
            time = "10:00"
            [[steps]]
            template = "hf-all"
            at = "2026-12-01T09:00:00+01:00"
        "#)
        .unwrap();
        assert_eq!(def.audience.conditions.len(), 1);
        assert_eq!(def.audience.channels, vec![ChannelKind::Email]);
        assert!(matches!(def.steps[0].when, StepTime::Local(_)));
        assert!(matches!(
            &def.steps[1].when,
            StepTime::Relative { field: DateField::Named(f), days: 3, .. } if f.as_str() == "discharge_date"
        ));
        assert_eq!(
            def.steps[2].when,
            StepTime::Instant("2026-12-01T08:00:00Z".parse().unwrap())
        );
        assert_eq!(def.to_file().parse().unwrap(), def);
        assert_eq!(def.closes_at(), None);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let err = doc(r#"
            name = " "
            [audience]
            conditions = ["Heart Failure"]
            enrolled_from = "2026-02-01"
            enrolled_until = "2026-01-01"
            channels = ["pigeon"]
            [[steps]]
            template = "ok"
            [[steps]]
            template = "Bad Slug"
            at = "tomorrow"
            [[steps]]
            template = "x"
            relative_to = "discharge_date"
            days = 99999
        "#)
        .unwrap_err();
        for field in [
            "name",
            "audience.conditions[0]",
            "audience.enrolled_until",
            "audience.channels[0]",
            "steps[0].at",
            "steps[1].template",
            "steps[1].at",
            "steps[2].days",
            "steps[2].time",
        ] {
            assert!(err.names(field), "{field} not named in {err}");
        }
        assert!(err.to_string().starts_with("invalid campaign: name: "));
    }

    #[test]
    fn unknown_fields_and_no_steps_are_rejected() {
        let err = parse_document("name = \"x\"\n[[steps]]\ntempalte = \"a\"\n", Format::Toml)
            .unwrap_err();
        assert!(
            err.names("file") && err.to_string().contains("tempalte"),
            "{err}"
        );
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = doc("name = \"x\"").unwrap_err();
        assert!(err.names("steps"));
        let err = parse_document("{\"name\": 1}", Format::Json).unwrap_err();
        assert!(err.names("file"));
    }

    #[test]
    fn an_absolute_campaign_closes_after_its_last_step_everywhere() {
        let def = doc(r#"
            name = "x"
            [[steps]]
            template = "a"
            at = "2026-12-01T10:00"
            [[steps]]
            template = "b"
            at = "2026-11-01T00:00:00Z"
        "#)
        .unwrap();
        assert_eq!(
            def.closes_at(),
            Some("2026-12-02T00:00:00Z".parse().unwrap())
        );
    }
}
