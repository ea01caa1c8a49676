//! Keeps a schedule's stored occurrences in step with what [`crate::planner`] says is due.
//!
//! Planning is re-run whenever anything that decides a due time may have changed (the schedule,
//! its zone, the patient's quiet hours) and on a timer to extend the horizon; it is the same
//! operation each time. Every step is idempotent and conditional on the occurrence's state, so a
//! run that stops half way, or two planners on one schedule, converge on the next run without a
//! transaction around the whole plan, and the dispatcher (which claims `planned` → `dispatching`
//! only for due occurrences) never races a change to one it may already be sending.

use std::collections::HashSet;

use careloop_core::{OccurrenceState, OrganizationId, ParseError};
use careloop_store::{Inserted, MedicationSchedule, NewReminderOccurrence, Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};

use crate::planner::{QuietRule, Recurrence, doses, idempotency_key};

/// Why a plan could not be made. Input errors name the field.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Invalid(#[from] ParseError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one planning run did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOutcome {
    /// Doses planned for the first time.
    pub inserted: u32,
    /// Already planned for the right time.
    pub kept: u32,
    /// Planned (or cancelled by an earlier plan) and now planned for a new time.
    pub moved: u32,
    /// Planned, and no longer wanted at any time in the window.
    pub cancelled: u32,
    /// Past `planned` (being sent, sent, skipped, failed) or already due: left alone.
    pub left: u32,
}

/// Plans the schedule's doses due in `[now, now + horizon)`.
///
/// A dose is identified by its schedule and original local slot, so:
/// - a missing dose is inserted (`insert_if_absent`: a concurrent planner cannot duplicate it);
/// - a planned dose whose due time changed (new zone, new quiet hours) is moved, not duplicated;
///   one cancelled by an earlier plan and wanted again is planned again;
/// - a planned future dose that is no longer wanted (new rule, `Skip` quiet hours, inactive
///   schedule) is cancelled;
/// - a dose that is being sent or was sent is never touched, and never planned again.
///
/// Occurrences already due at `now` belong to the dispatcher and are left as they are, so a
/// change takes effect from `now` on.
pub async fn plan(
    store: &Store,
    org: OrganizationId,
    schedule: &MedicationSchedule,
    now: DateTime<Utc>,
    horizon: TimeDelta,
) -> Result<PlanOutcome, PlanError> {
    if schedule.organization_id != org {
        return Err(StoreError::NotFound {
            entity: "medication schedule",
        }
        .into());
    }
    let occurrences = store.reminder_occurrences();
    let planned = occurrences
        .list_planned_for_schedule(org, schedule.id, now)
        .await?;

    let wanted = if schedule.active {
        let patient = store
            .patients()
            .get(org, schedule.patient_id)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient" })?;
        let mut to = now
            .checked_add_signed(horizon)
            .ok_or_else(|| ParseError::new("horizon", "is out of range"))?;
        // Judge what an earlier, longer horizon planned by the same rules, so a shorter horizon
        // today does not read as a change.
        if let Some(last) = planned.iter().map(|o| o.due_at).max() {
            to = to.max(last + TimeDelta::microseconds(1));
        }
        let recurrence = Recurrence {
            rule: &schedule.rrule,
            timezone: schedule.timezone,
            starts_on: schedule.starts_on,
            ends_on: schedule.ends_on,
        };
        let quiet = patient.quiet_hours.map(|hours| QuietRule {
            hours,
            timezone: patient.timezone,
            policy: schedule.quiet_hours_policy,
        });
        doses(&recurrence, quiet, now, to)?
    } else {
        Vec::new()
    };

    let mut outcome = PlanOutcome::default();
    let mut wanted_keys = HashSet::with_capacity(wanted.len());
    for dose in wanted {
        let key = idempotency_key(schedule.id, dose.slot);
        wanted_keys.insert(key.clone());
        let inserted = occurrences
            .insert_if_absent(
                org,
                NewReminderOccurrence {
                    schedule_id: Some(schedule.id),
                    campaign_id: None,
                    patient_id: schedule.patient_id,
                    due_at: dose.due_at,
                    idempotency_key: key,
                },
            )
            .await?;
        let existing = match inserted {
            Inserted::New(_) => {
                outcome.inserted += 1;
                continue;
            }
            Inserted::Duplicate(existing) => existing,
        };
        let movable = match existing.state {
            OccurrenceState::Planned => existing.due_at > now,
            OccurrenceState::Cancelled => true,
            _ => false,
        };
        if existing.state == OccurrenceState::Planned && existing.due_at == dose.due_at {
            outcome.kept += 1;
        } else if movable
            && occurrences
                .replan(org, existing.id, dose.due_at, now)
                .await?
        {
            outcome.moved += 1;
        } else {
            outcome.left += 1;
        }
    }

    for stale in planned
        .iter()
        .filter(|o| !wanted_keys.contains(&o.idempotency_key))
    {
        if occurrences
            .transition_state(
                org,
                stale.id,
                OccurrenceState::Planned,
                OccurrenceState::Cancelled,
            )
            .await?
        {
            outcome.cancelled += 1;
        }
    }

    tracing::info!(
        organization_id = %org,
        schedule_id = %schedule.id,
        inserted = outcome.inserted,
        kept = outcome.kept,
        moved = outcome.moved,
        cancelled = outcome.cancelled,
        left = outcome.left,
        "reminders planned"
    );
    Ok(outcome)
}
