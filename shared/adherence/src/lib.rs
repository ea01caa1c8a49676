//! Adherence: what became of each medication reminder.
//!
//! - [`answer`] records a patient's answer to one reminder (a pressed Taken / Skip / Snooze button,
//!   or a typed "taken" matched to their [`open_reminder`]); Snooze plans the dose again
//!   [`AdherencePolicy::snooze`] later. Each kind of answer is recorded once per reminder (the
//!   store's unique `(occurrence, kind)`), so a pressed-twice button or a redelivered update is a
//!   [`Answered::Repeated`].
//! - [`mark_missed`] marks a sent reminder nobody answered within
//!   [`AdherencePolicy::missed_after`] as missed; when that makes
//!   [`AdherencePolicy::missed_streak`] missed doses in a row, it raises one `missed_doses` alert
//!   for the care team (once per streak: the next alert needs an answer in between).
//!
//! Everything takes `now` from the caller, so tests drive the clock.

use careloop_core::ReminderOccurrenceId;
use careloop_core::{AdherenceKind, AlertKind, ChannelKind, OrganizationId, PatientId};
use careloop_store::{NewAlert, NewReminderOccurrence, ReminderOccurrence, Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};

/// How answers and silences are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdherencePolicy {
    /// How long after its due time a typed answer ("taken") still applies to a reminder.
    pub answer_window: TimeDelta,
    /// A sent reminder with no answer this long after its due time is a missed dose.
    pub missed_after: TimeDelta,
    /// Missed doses in a row that raise an alert.
    pub missed_streak: u32,
    /// How long Snooze waits.
    pub snooze: TimeDelta,
}

impl Default for AdherencePolicy {
    fn default() -> Self {
        AdherencePolicy {
            answer_window: TimeDelta::hours(12),
            missed_after: TimeDelta::hours(2),
            missed_streak: 3,
            snooze: TimeDelta::minutes(30),
        }
    }
}

/// How far back [`mark_missed`] looks: reminders older than this are history, not news.
const MISSED_LOOKBACK: TimeDelta = TimeDelta::days(7);

/// What [`answer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Recorded; the reminder answered.
    Recorded(ReminderOccurrence),
    /// The same answer to the same reminder was recorded before: nothing new.
    Repeated(ReminderOccurrence),
    /// Not this patient's reminder, or no such reminder: nothing recorded.
    NotTheirs,
}

/// A patient's answer to one reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub occurrence: ReminderOccurrenceId,
    pub kind: AdherenceKind,
    /// Where it came in; `None` when staff recorded it.
    pub channel: Option<ChannelKind>,
    pub at: DateTime<Utc>,
}

/// Records the patient's answer (see the crate docs).
pub async fn answer(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    answer: Answer,
    policy: &AdherencePolicy,
) -> Result<Answered, StoreError> {
    let Answer {
        occurrence,
        kind,
        channel,
        at: now,
    } = answer;
    let Some(occ) = store.reminder_occurrences().get(org, occurrence).await? else {
        return Ok(Answered::NotTheirs);
    };
    if occ.patient_id != patient {
        return Ok(Answered::NotTheirs);
    }
    let recorded = store
        .adherence_events()
        .record_once(org, patient, occurrence, kind, channel, now)
        .await?;
    if recorded.is_none() {
        return Ok(Answered::Repeated(occ));
    }
    if kind == AdherenceKind::Snoozed {
        store
            .reminder_occurrences()
            .insert_if_absent(
                org,
                NewReminderOccurrence {
                    schedule_id: occ.schedule_id,
                    campaign_id: occ.campaign_id,
                    patient_id: patient,
                    due_at: now + policy.snooze,
                    idempotency_key: format!("{}:snooze", occ.idempotency_key),
                },
            )
            .await?;
    }
    tracing::info!(
        organization_id = %org,
        patient_id = %patient,
        occurrence_id = %occurrence,
        kind = kind.as_str(),
        "reminder answered"
    );
    Ok(Answered::Recorded(occ))
}

/// The reminder a typed answer is about: the patient's newest medication reminder that was sent,
/// is due within [`AdherencePolicy::answer_window`] before `now`, and has no answer yet.
pub async fn open_reminder(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    now: DateTime<Utc>,
    policy: &AdherencePolicy,
) -> Result<Option<ReminderOccurrence>, StoreError> {
    store
        .adherence_events()
        .open_reminder(org, patient, now - policy.answer_window)
        .await
}

/// What one [`mark_missed`] round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MissedRound {
    /// Doses marked missed.
    pub missed: u32,
    /// `missed_doses` alerts raised.
    pub alerts: u32,
}

/// Marks unanswered reminders missed and raises alerts for streaks (see the crate docs); at most
/// `batch` reminders per round. Safe to run in several processes at once.
pub async fn mark_missed(
    store: &Store,
    now: DateTime<Utc>,
    policy: &AdherencePolicy,
    batch: u64,
) -> Result<MissedRound, StoreError> {
    let cutoff = now - policy.missed_after;
    let overdue = store
        .adherence_events()
        .unanswered_before(cutoff - MISSED_LOOKBACK, cutoff, batch)
        .await?;
    let mut round = MissedRound::default();
    for occ in overdue {
        let org = occ.organization_id;
        let recorded = store
            .adherence_events()
            .record_once(
                org,
                occ.patient_id,
                occ.id,
                AdherenceKind::Missed,
                None,
                now,
            )
            .await?;
        if recorded.is_none() {
            continue;
        }
        round.missed += 1;
        if raise_if_streak(store, org, occ.patient_id, policy.missed_streak).await? {
            round.alerts += 1;
        }
    }
    if round.missed > 0 {
        tracing::info!(
            missed = round.missed,
            alerts = round.alerts,
            "missed doses recorded"
        );
    }
    Ok(round)
}

/// Raises a `missed_doses` alert when the patient's newest `streak` answers (snoozes aside) are
/// all missed and the one before them is not: the moment a streak reaches its length.
async fn raise_if_streak(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    streak: u32,
) -> Result<bool, StoreError> {
    if streak == 0 {
        return Ok(false);
    }
    let n = streak as usize;
    // Snoozes are not answers about the dose; a generous window leaves room for them.
    let recent = store
        .adherence_events()
        .recent_for_patient(org, patient, (n as u64 + 1) * 4)
        .await?;
    let outcomes: Vec<_> = recent
        .iter()
        .filter(|e| e.kind != AdherenceKind::Snoozed)
        .take(n + 1)
        .collect();
    let reached = outcomes.len() >= n
        && outcomes[..n]
            .iter()
            .all(|e| e.kind == AdherenceKind::Missed)
        && outcomes
            .get(n)
            .is_none_or(|e| e.kind != AdherenceKind::Missed);
    if !reached {
        return Ok(false);
    }
    let occurrences: Vec<String> = outcomes[..n]
        .iter()
        .filter_map(|e| e.occurrence_id.map(|o| o.to_string()))
        .collect();
    store
        .alerts()
        .raise(
            org,
            NewAlert {
                patient_id: patient,
                kind: AlertKind::MissedDoses,
                category: Some("missed_in_a_row".to_owned()),
                message_id: None,
                details: serde_json::json!({ "missed_in_a_row": streak, "occurrences": occurrences }),
            },
        )
        .await?;
    Ok(true)
}
