//! Constrained values, each parsed once at the edge with an error naming the field.

use std::{fmt, str::FromStr};

use chrono::{DateTime, NaiveTime, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ParseError;

/// Implements `Serialize`/`Deserialize` through `Display`/`FromStr`, so JSON input is parsed by the
/// same code as every other input.
macro_rules! serde_via_str {
    ($($name:ty),*) => {$(
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

/// A language careloop supports end to end: content, triage lexicons, commands and readability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    English,
    Spanish,
    French,
    German,
    Portuguese,
    Arabic,
}

impl Language {
    pub const ALL: &'static [Language] = &[
        Language::English,
        Language::Spanish,
        Language::French,
        Language::German,
        Language::Portuguese,
        Language::Arabic,
    ];

    /// ISO 639-1 code.
    pub const fn code(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
            Language::French => "fr",
            Language::German => "de",
            Language::Portuguese => "pt",
            Language::Arabic => "ar",
        }
    }

    /// Written right to left.
    pub const fn is_rtl(self) -> bool {
        matches!(self, Language::Arabic)
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Language {
    type Err = ParseError;
    /// Accepts an ISO 639-1 code or a BCP 47 tag whose primary subtag is one (`pt-BR`, `en_GB`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let primary = s.trim().split(['-', '_']).next().unwrap_or_default();
        Language::ALL
            .iter()
            .copied()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
            .ok_or_else(|| {
                let codes: Vec<&str> = Language::ALL.iter().map(|l| l.code()).collect();
                ParseError::new(
                    "language",
                    format!("unsupported language; supported: {}", codes.join(", ")),
                )
            })
    }
}

/// How plainly a reply is written. Bands and formulas: `shared/literacy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadingLevel {
    /// Short sentences, everyday words (about US grade 5 or lower).
    Easy,
    /// Plain language for most adults (about US grade 6–8).
    Standard,
}

impl ReadingLevel {
    pub const ALL: &'static [ReadingLevel] = &[ReadingLevel::Easy, ReadingLevel::Standard];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReadingLevel::Easy => "easy",
            ReadingLevel::Standard => "standard",
        }
    }

    /// The next easier band, for "explain more simply".
    pub const fn simpler(self) -> ReadingLevel {
        ReadingLevel::Easy
    }
}

impl fmt::Display for ReadingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReadingLevel {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReadingLevel::ALL
            .iter()
            .copied()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseError::new("reading_level", "must be one of: easy, standard"))
    }
}

/// An IANA time zone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub const UTC: TimeZone = TimeZone(chrono_tz::UTC);

    pub const fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl FromStr for TimeZone {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| {
                ParseError::new(
                    "timezone",
                    "must be an IANA time zone name such as Europe/Berlin",
                )
            })
    }
}

/// An RFC 5545 recurrence rule (`FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0`), validated and normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecurrenceRule(String);

impl RecurrenceRule {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The validated rule for a first occurrence at `dt_start`.
    pub fn to_rrule(&self, dt_start: DateTime<rrule::Tz>) -> Result<rrule::RRuleSet, ParseError> {
        parse_rrule(&self.0)?
            .build(dt_start)
            .map_err(|e| ParseError::new("recurrence_rule", e.to_string()))
    }
}

fn parse_rrule(s: &str) -> Result<rrule::RRule<rrule::Unvalidated>, ParseError> {
    let body = s.trim();
    let body = body.strip_prefix("RRULE:").unwrap_or(body);
    if body.is_empty() {
        return Err(ParseError::new("recurrence_rule", "must not be empty"));
    }
    if body.contains(['\n', '\r']) {
        return Err(ParseError::new(
            "recurrence_rule",
            "must be a single RRULE line",
        ));
    }
    body.parse::<rrule::RRule<rrule::Unvalidated>>()
        .map_err(|e| ParseError::new("recurrence_rule", e.to_string()))
}

impl fmt::Display for RecurrenceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RecurrenceRule {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unvalidated = parse_rrule(s)?;
        // Validation needs a start; the rule's own constraints do not depend on which.
        let start = rrule::Tz::UTC
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .ok_or_else(|| ParseError::new("recurrence_rule", "internal start time"))?;
        unvalidated
            .clone()
            .validate(start)
            .map_err(|e| ParseError::new("recurrence_rule", e.to_string()))?;
        // Keep the rule as written: validation fills in parts (BYHOUR, BYDAY…) from the start
        // it was given, which would turn "weekly" into "weekly on Wednesdays at midnight".
        Ok(RecurrenceRule(unvalidated.to_string()))
    }
}

/// An email address. Its `Debug` output is redacted so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmailAddress {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > 254 {
            return Err(ParseError::new("email", "must be at most 254 characters"));
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            s,
            email_address::Options::default().without_display_text(),
        )
        .map_err(|_| ParseError::new("email", "must be an address like name@example.org"))?;
        if !parsed.domain().contains('.') && parsed.domain() != "localhost" {
            return Err(ParseError::new("email", "the domain must contain a dot"));
        }
        // The local part is case-sensitive in principle; the domain never is.
        Ok(EmailAddress(format!(
            "{}@{}",
            parsed.local_part(),
            parsed.domain().to_ascii_lowercase()
        )))
    }
}

/// A daily window in local time when no reminder may be sent; may wrap past midnight (22:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietHours {
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, ParseError> {
        if start == end {
            return Err(ParseError::new("quiet_hours", "start and end must differ"));
        }
        Ok(Self { start, end })
    }

    pub const fn start(self) -> NaiveTime {
        self.start
    }

    pub const fn end(self) -> NaiveTime {
        self.end
    }

    /// Whether a local wall-clock time falls inside the window (start inclusive, end exclusive).
    pub fn contains(self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl FromStr for QuietHours {
    type Err = ParseError;
    /// `HH:MM-HH:MM`, e.g. `22:00-07:00`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("quiet_hours", "must look like 22:00-07:00");
        let (a, b) = s.trim().split_once('-').ok_or_else(err)?;
        let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| err())?;
        let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| err())?;
        QuietHours::new(start, end)
    }
}

/// Bounded free text with a field name; `Debug` is redacted because such text is personal data.
macro_rules! bounded_text {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                if s.is_empty() {
                    return Err(ParseError::new($field, "must not be empty"));
                }
                if s.chars().count() > $max {
                    return Err(ParseError::new($field, format!("must be at most {} characters", $max)));
                }
                if s.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(ParseError::new($field, "must not contain control characters"));
                }
                Ok($name(s.to_owned()))
            }
        }
    };
}

bounded_text!(
    /// What staff and patients see as a person's name.
    DisplayName, "display_name", 100
);
bounded_text!(
    /// Dose instructions exactly as the care team wrote them; never generated.
    DoseText, "dose_text", 200
);
bounded_text!(
    /// A medicine's name as the care team wrote it.
    MedicineName, "medicine_name", 120
);

/// A Telegram chat id (private chats are positive, groups negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TelegramChatId(i64);

impl TelegramChatId {
    pub const fn new(id: i64) -> Self {
        Self(id)
    }
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for TelegramChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TelegramChatId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i64>() {
            Ok(0) | Err(_) => Err(ParseError::new(
                "telegram_chat_id",
                "must be a non-zero integer",
            )),
            Ok(id) => Ok(Self(id)),
        }
    }
}

/// A short, stable machine name: a condition code (`type2_diabetes`), a topic, a template key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    pub const MAX_CHARS: usize = 64;
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Slug {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_CHARS
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Slug(s.to_owned()))
        } else {
            Err(ParseError::new(
                "slug",
                "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter",
            ))
        }
    }
}

serde_via_str!(
    Language,
    ReadingLevel,
    TimeZone,
    RecurrenceRule,
    EmailAddress,
    QuietHours,
    DisplayName,
    DoseText,
    MedicineName,
    Slug
);

/// The current time, behind a trait so schedules can be tested with a controllable clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_accepts_codes_and_tags() {
        assert_eq!("pt-BR".parse::<Language>().unwrap(), Language::Portuguese);
        assert_eq!("EN".parse::<Language>().unwrap(), Language::English);
        assert_eq!("ar".parse::<Language>().unwrap(), Language::Arabic);
        assert!(Language::Arabic.is_rtl());
    }

    #[test]
    fn language_rejects_unsupported_and_names_field() {
        for bad in ["", "xx", "english", "zh-CN"] {
            let err = bad.parse::<Language>().unwrap_err();
            assert_eq!(err.field, "language", "{bad}");
            assert!(err.reason.contains("en, es, fr, de, pt, ar"));
        }
    }

    #[test]
    fn reading_level_parses() {
        assert_eq!("Easy".parse::<ReadingLevel>().unwrap(), ReadingLevel::Easy);
        assert_eq!(
            "college".parse::<ReadingLevel>().unwrap_err().field,
            "reading_level"
        );
        assert_eq!(ReadingLevel::Standard.simpler(), ReadingLevel::Easy);
    }

    #[test]
    fn timezone_accepts_iana_and_rejects_others() {
        assert_eq!(
            "America/New_York".parse::<TimeZone>().unwrap().name(),
            "America/New_York"
        );
        for bad in ["Mars/Olympus", "", "GMT+25", "europe berlin"] {
            assert_eq!(
                bad.parse::<TimeZone>().unwrap_err().field,
                "timezone",
                "{bad}"
            );
        }
    }

    #[test]
    fn rrule_is_validated_and_normalised() {
        let r: RecurrenceRule = "RRULE:FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0;BYSECOND=0"
            .parse()
            .unwrap();
        assert!(r.as_str().starts_with("FREQ=DAILY"), "{r}");
        let every_other_day: RecurrenceRule = "FREQ=DAILY;INTERVAL=2".parse().unwrap();
        assert!(every_other_day.as_str().contains("INTERVAL=2"));
        assert!("FREQ=WEEKLY;BYDAY=MO".parse::<RecurrenceRule>().is_ok());
        // Kept as written: nothing is filled in from the start date validation used.
        let weekly: RecurrenceRule = "FREQ=WEEKLY".parse().unwrap();
        assert!(
            !weekly.as_str().contains("BYDAY") && !weekly.as_str().contains("BYHOUR"),
            "{weekly}"
        );
    }

    #[test]
    fn rrule_rejects_garbage_with_field_name() {
        for bad in [
            "",
            "FREQ=SOMETIMES",
            "BYHOUR=8",
            "FREQ=DAILY;BYHOUR=25",
            "FREQ=DAILY\nRRULE:FREQ=DAILY",
        ] {
            let err = bad.parse::<RecurrenceRule>().unwrap_err();
            assert_eq!(err.field, "recurrence_rule", "{bad}: {err}");
        }
    }

    #[test]
    fn email_is_parsed_and_redacted_in_debug() {
        let e: EmailAddress = " Ana.Perez@Example.ORG ".parse().unwrap();
        assert_eq!(e.as_str(), "Ana.Perez@example.org");
        assert_eq!(format!("{e:?}"), "EmailAddress(<redacted>)");
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.org",
            "ana@example",
            "Ana <ana@example.org>",
        ] {
            assert_eq!(
                bad.parse::<EmailAddress>().unwrap_err().field,
                "email",
                "{bad}"
            );
        }
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q: QuietHours = "22:00-07:00".parse().unwrap();
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(q.contains(t(23, 0)));
        assert!(q.contains(t(3, 0)));
        assert!(q.contains(t(22, 0)));
        assert!(!q.contains(t(7, 0)));
        assert!(!q.contains(t(12, 0)));
        let day: QuietHours = "12:00-14:00".parse().unwrap();
        assert!(day.contains(t(13, 0)) && !day.contains(t(15, 0)));
        assert_eq!(q.to_string(), "22:00-07:00");
        for bad in ["22-07", "25:00-07:00", "08:00-08:00", ""] {
            assert_eq!(
                bad.parse::<QuietHours>().unwrap_err().field,
                "quiet_hours",
                "{bad}"
            );
        }
    }

    #[test]
    fn bounded_text_limits_and_redacts() {
        let long = "x".repeat(201);
        let err = long.parse::<DoseText>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dose_text: must be at most 200 characters"
        );
        assert_eq!(
            "  ".parse::<DisplayName>().unwrap_err().field,
            "display_name"
        );
        let name: DisplayName = "Ana".parse().unwrap();
        assert_eq!(format!("{name:?}"), "DisplayName(<redacted>)");
    }

    #[test]
    fn slugs_and_chat_ids() {
        assert!("type2_diabetes".parse::<Slug>().is_ok());
        assert_eq!("Type 2".parse::<Slug>().unwrap_err().field, "slug");
        assert_eq!(
            "0".parse::<TelegramChatId>().unwrap_err().field,
            "telegram_chat_id"
        );
        assert_eq!("-100123".parse::<TelegramChatId>().unwrap().get(), -100123);
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let err = serde_json::from_str::<TimeZone>("\"Nowhere/Land\"").unwrap_err();
        assert!(err.to_string().contains("invalid timezone"), "{err}");
        let tz: TimeZone = serde_json::from_str("\"Australia/Sydney\"").unwrap();
        assert_eq!(serde_json::to_string(&tz).unwrap(), "\"Australia/Sydney\"");
    }
}
