//! Who a campaign is for, and when each step reaches one patient: pure, no I/O, no clock of its
//! own (the caller passes `now`).
//!
//! A step's time is resolved in the patient's own zone the way doses are (a wall-clock time
//! skipped by the spring change falls at the end of the gap, a repeated one at its first
//! occurrence, see [`crate::planner::resolve_local`]); the patient's quiet hours then delay it to
//! their end (a campaign step is never skipped for quiet hours). A step whose time has passed
//! when the patient joins is skipped: starting a campaign never sends last month's step.
//!
//! [`Pacer`] spreads the fan-out: at most `per_second` campaign messages per channel fall in
//! any one second, so a campaign of 100,000 patients feeds the outbox at a rate below the
//! channel's own limit (Telegram's 30 messages a second per bot) instead of queueing the whole
//! campaign ahead of replies and medication reminders.

use std::collections::HashMap;
use std::fmt;

use careloop_core::{
    ChannelKind, ConsentState, ContentKind, Language, PatientId, QuietHoursPolicy, ReadingLevel,
    Slug,
};
use careloop_store::{ApprovedContent, AudienceMember};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::definition::{Audience, DateField, Step, StepTime};
use crate::planner::{QuietRule, resolve_local};

/// Why a step does not reach a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Consent pending or withdrawn.
    NoConsent,
    /// Linked on a campaign channel, but opted out of every such channel.
    OptedOut,
    /// Not linked on any of the campaign's channels.
    NoChannel,
    /// The patient has no such date.
    NoDate(DateField),
    /// No approved template with the step's key in the patient's language.
    NoTemplate(Language),
    /// The step's time had passed when the patient joined the campaign.
    Past,
}

impl SkipReason {
    /// The code stored in `reminder_occurrences.reason`.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NoConsent => "no_consent",
            SkipReason::OptedOut => "opted_out",
            SkipReason::NoChannel => "no_channel",
            SkipReason::NoDate(_) => "no_date",
            SkipReason::NoTemplate(_) => "no_template",
            SkipReason::Past => "past",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoConsent => f.write_str("no consent to be contacted"),
            SkipReason::OptedOut => f.write_str("opted out of every campaign channel"),
            SkipReason::NoChannel => f.write_str("not linked on any campaign channel"),
            SkipReason::NoDate(field) => write!(f, "no {field} date"),
            SkipReason::NoTemplate(language) => {
                write!(f, "no approved template in {}", language.code())
            }
            SkipReason::Past => f.write_str("the step's time has passed"),
        }
    }
}

/// A step that reaches the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: ChannelKind,
    pub template: ApprovedContent,
    /// When the step falls for the patient, quiet hours applied (before pacing).
    pub slot_at: DateTime<Utc>,
    /// `slot_at` on the patient's wall clock.
    pub local: NaiveDateTime,
    /// The step's own time fell in the patient's quiet hours and was moved to their end.
    pub delayed_by_quiet_hours: bool,
}

/// What a step does for one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepPlan {
    Send(Box<Delivery>),
    Skip(SkipReason),
}

/// The organization's approved templates (kind `template`, for every condition), by key,
/// language and reading level.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    by_key: HashMap<(Slug, Language, ReadingLevel), ApprovedContent>,
}

impl Templates {
    pub fn new(approved: Vec<ApprovedContent>) -> Self {
        let by_key = approved
            .into_iter()
            .filter(|c| c.item.kind == ContentKind::Template && c.item.condition.is_none())
            .map(|c| {
                (
                    (c.item.key.clone(), c.item.language, c.item.reading_level),
                    c,
                )
            })
            .collect();
        Templates { by_key }
    }

    /// The template in the patient's language, at their reading level if there is one, else at
    /// the other level.
    pub fn choose(
        &self,
        key: &Slug,
        language: Language,
        level: ReadingLevel,
    ) -> Option<&ApprovedContent> {
        let other = match level {
            ReadingLevel::Easy => ReadingLevel::Standard,
            ReadingLevel::Standard => ReadingLevel::Easy,
        };
        [level, other]
            .into_iter()
            .find_map(|l| self.by_key.get(&(key.clone(), language, l)))
    }

    /// Whether the key has an approved template in any language.
    pub fn has_key(&self, key: &Slug) -> bool {
        self.by_key.keys().any(|(k, _, _)| k == key)
    }
}

/// Whether the patient belongs to the audience (conditions: any of; tags: all of; enrolment
/// date, UTC, inclusive).
pub fn in_audience(audience: &Audience, member: &AudienceMember) -> bool {
    let p = &member.patient;
    let enrolled = p.created_at.date_naive();
    (audience.conditions.is_empty()
        || audience
            .conditions
            .iter()
            .any(|c| member.conditions.contains(c)))
        && audience.tags.iter().all(|t| p.tags.contains(t))
        && audience.enrolled_from.is_none_or(|d| enrolled >= d)
        && audience.enrolled_until.is_none_or(|d| enrolled <= d)
}

/// The first of the campaign's channels the patient is linked on and has not opted out of.
pub fn channel_for(
    audience: &Audience,
    member: &AudienceMember,
) -> Result<ChannelKind, SkipReason> {
    let linked: Vec<ChannelKind> = audience
        .channels
        .iter()
        .copied()
        .filter(|c| member.channels.contains(c))
        .collect();
    if linked.is_empty() {
        return Err(SkipReason::NoChannel);
    }
    linked
        .into_iter()
        .find(|c| !member.patient.is_opted_out(*c))
        .ok_or(SkipReason::OptedOut)
}

/// The patient's quiet hours as a rule that delays (campaign steps are never skipped for them).
pub fn quiet_rule(member: &AudienceMember) -> Option<QuietRule> {
    member.patient.quiet_hours.map(|hours| QuietRule {
        hours,
        timezone: member.patient.timezone,
        policy: QuietHoursPolicy::Delay,
    })
}

/// The step's own time for the patient (before quiet hours), or why it has none.
pub fn step_time(step: &Step, member: &AudienceMember) -> Result<DateTime<Utc>, SkipReason> {
    let tz = member.patient.timezone.tz();
    let local = match &step.when {
        StepTime::Instant(t) => return Ok(*t),
        StepTime::Local(t) => *t,
        StepTime::Relative { field, days, time } => {
            let date = match field {
                DateField::Enrolled => member.patient.created_at.with_timezone(&tz).date_naive(),
                DateField::Named(name) => *member
                    .dates
                    .get(name)
                    .ok_or_else(|| SkipReason::NoDate(field.clone()))?,
            };
            date.checked_add_signed(TimeDelta::days(*days))
                .ok_or_else(|| SkipReason::NoDate(field.clone()))?
                .and_time(*time)
        }
    };
    resolve_local(tz, local).ok_or(SkipReason::Past)
}

/// What `step` does for a patient of the audience at `now`.
pub fn plan_step(
    step: &Step,
    audience: &Audience,
    member: &AudienceMember,
    templates: &Templates,
    now: DateTime<Utc>,
) -> StepPlan {
    let p = &member.patient;
    if p.consent != ConsentState::Granted {
        return StepPlan::Skip(SkipReason::NoConsent);
    }
    let channel = match channel_for(audience, member) {
        Ok(c) => c,
        Err(why) => return StepPlan::Skip(why),
    };
    let at = match step_time(step, member) {
        Ok(at) => at,
        Err(why) => return StepPlan::Skip(why),
    };
    if at < now {
        return StepPlan::Skip(SkipReason::Past);
    }
    let Some(template) = templates.choose(&step.template, p.language, p.reading_level) else {
        return StepPlan::Skip(SkipReason::NoTemplate(p.language));
    };
    let slot_at = quiet_rule(member).and_then(|q| q.apply(at)).unwrap_or(at);
    StepPlan::Send(Box::new(Delivery {
        channel,
        template: template.clone(),
        slot_at,
        local: slot_at.with_timezone(&p.timezone.tz()).naive_local(),
        delayed_by_quiet_hours: slot_at != at,
    }))
}

/// The idempotency key of one step for one patient.
pub fn occurrence_key(
    campaign: careloop_core::CampaignId,
    step: usize,
    patient: PatientId,
) -> String {
    format!("campaign:{campaign}:step{step}:patient:{patient}")
}

/// Campaign messages per second per channel: below each channel's own limit, leaving room for
/// replies and medication reminders on the same bot or mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    pub telegram: u32,
    pub web_chat: u32,
    pub email: u32,
}

impl Default for Pacing {
    /// Telegram 20/s (its limit is 30/s per bot), web chat 20/s, email 10/s.
    fn default() -> Self {
        Pacing {
            telegram: 20,
            web_chat: 20,
            email: 10,
        }
    }
}

impl Pacing {
    pub fn per_second(&self, channel: ChannelKind) -> u32 {
        match channel {
            ChannelKind::Telegram => self.telegram,
            ChannelKind::WebChat => self.web_chat,
            ChannelKind::Email => self.email,
        }
        .max(1)
    }
}

/// Places campaign messages in time so that no second holds more than the channel's pace.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    pacing: Pacing,
    lanes: HashMap<ChannelKind, Lane>,
}

/// One channel's seconds: how many messages each holds, and for a full second the next one that
/// may have room (path-compressed, so placing n messages at one instant is near O(n)).
#[derive(Debug, Clone, Default)]
struct Lane {
    used: HashMap<i64, u32>,
    next: HashMap<i64, i64>,
}

impl Lane {
    fn free_from(&mut self, second: i64) -> i64 {
        let mut root = second;
        while let Some(&n) = self.next.get(&root) {
            root = n;
        }
        let mut cur = second;
        while let Some(&n) = self.next.get(&cur) {
            if n != root {
                self.next.insert(cur, root);
            }
            cur = n;
        }
        root
    }

    fn take(&mut self, at: DateTime<Utc>, per_second: u32) -> DateTime<Utc> {
        let wanted = at.timestamp();
        let second = self.free_from(wanted);
        let used = self.used.entry(second).or_insert(0);
        *used += 1;
        if *used >= per_second {
            self.next.insert(second, second + 1);
        }
        if second == wanted {
            at
        } else {
            DateTime::from_timestamp(second, 0).unwrap_or(at)
        }
    }
}

impl Pacer {
    pub fn new(pacing: Pacing) -> Self {
        Pacer {
            pacing,
            lanes: HashMap::new(),
        }
    }

    /// When a message on `channel` meant for `at` goes out: `at`, or the first later second with
    /// room; moved past the patient's quiet hours again if pacing pushed it into them.
    pub fn place(
        &mut self,
        channel: ChannelKind,
        at: DateTime<Utc>,
        quiet: Option<QuietRule>,
    ) -> DateTime<Utc> {
        let per_second = self.pacing.per_second(channel);
        let lane = self.lanes.entry(channel).or_default();
        let mut wanted = at;
        let mut placed = lane.take(wanted, per_second);
        // Each round moves past one quiet window; three cover any pacing delay.
        for _ in 0..3 {
            match quiet.and_then(|q| q.apply(placed)) {
                Some(after) if after != placed => {
                    wanted = after;
                    placed = lane.take(wanted, per_second);
                }
                _ => break,
            }
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_pacer_fills_each_second_up_to_the_pace_then_moves_on() {
        let mut pacer = Pacer::new(Pacing {
            telegram: 3,
            web_chat: 1,
            email: 1,
        });
        let t = at("2026-12-01T10:00:00.250Z");
        let placed: Vec<_> = (0..7)
            .map(|_| pacer.place(ChannelKind::Telegram, t, None))
            .collect();
        assert_eq!(&placed[..3], &[t, t, t]);
        assert_eq!(&placed[3..6], &[at("2026-12-01T10:00:01Z"); 3]);
        assert_eq!(placed[6], at("2026-12-01T10:00:02Z"));
        // Another channel has its own lane; a later instant is not moved.
        assert_eq!(pacer.place(ChannelKind::Email, t, None), t);
        let later = at("2026-12-01T11:00:00Z");
        assert_eq!(pacer.place(ChannelKind::Telegram, later, None), later);
    }

    #[test]
    fn pacing_into_quiet_hours_moves_to_their_end() {
        let mut pacer = Pacer::new(Pacing {
            telegram: 1,
            web_chat: 1,
            email: 1,
        });
        let quiet = Some(QuietRule {
            hours: "22:00-07:00".parse().unwrap(),
            timezone: "UTC".parse().unwrap(),
            policy: QuietHoursPolicy::Delay,
        });
        let t = at("2026-12-01T21:59:59Z");
        assert_eq!(pacer.place(ChannelKind::Telegram, t, quiet), t);
        assert_eq!(
            pacer.place(ChannelKind::Telegram, t, quiet),
            at("2026-12-02T07:00:00Z")
        );
    }
}
