//! Medication schedules as a care team enters them: every field checked (each problem names its
//! field, all problems at once), nothing stored unless all are right, and the doses planned as
//! soon as the schedule is stored or changed. [`run_planner`] extends every active schedule's
//! plan on a timer.

use std::time::Duration;

use careloop_core::{
    ChannelKind, DoseText, MedicationScheduleId, MedicineName, OrganizationId, ParseError,
    PatientId, QuietHoursPolicy, RecurrenceRule, StaffUserId, TimeZone,
};
use careloop_store::{
    MedicationSchedule, MedicationScheduleChanges, NewMedicationSchedule, Store, StoreError,
};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use crate::planner::{Recurrence, doses};
use crate::{PlanError, PlanOutcome, plan};

/// How far ahead doses are planned (default of the planner loop and of new schedules).
pub const DEFAULT_HORIZON: TimeDelta = TimeDelta::days(14);

/// A schedule as typed: text fields, checked by [`create`]. `timezone` defaults to the patient's;
/// `quiet_hours_policy` to `delay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    pub medicine_name: String,
    pub dose_text: String,
    /// RFC 5545 RRULE (`FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0`), wall-clock times in `timezone`.
    pub rrule: String,
    pub timezone: Option<String>,
    /// `YYYY-MM-DD`, local.
    pub starts_on: String,
    pub ends_on: Option<String>,
    pub quiet_hours_policy: Option<String>,
    /// Channels in order of preference: `telegram`, `email`, `web_chat`.
    pub channels: Vec<String>,
}

/// A change as typed: only the fields given change. `ends_on = ""` removes the end date.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEdit {
    pub medicine_name: Option<String>,
    pub dose_text: Option<String>,
    pub rrule: Option<String>,
    pub timezone: Option<String>,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub quiet_hours_policy: Option<String>,
    pub channels: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// Why a schedule was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Every field that is wrong, each with its reason; nothing was stored.
    #[error("{}", format_invalid(.0))]
    Invalid(Vec<ParseError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn format_invalid(errors: &[ParseError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field errors so one answer lists them all.
#[derive(Default)]
struct Checker(Vec<ParseError>);

impl Checker {
    fn field<T: std::str::FromStr<Err = ParseError>>(
        &mut self,
        field: &'static str,
        value: &str,
    ) -> Option<T> {
        match value.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                // The newtype names its own field; keep the name the care team typed.
                self.0.push(ParseError::new(field, e.reason));
                None
            }
        }
    }

    fn date(&mut self, field: &'static str, value: &str) -> Option<NaiveDate> {
        match NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
            Ok(d) => Some(d),
            Err(_) => {
                self.0
                    .push(ParseError::new(field, "must be a date as YYYY-MM-DD"));
                None
            }
        }
    }

    fn channels(&mut self, values: &[String]) -> Option<Vec<ChannelKind>> {
        if values.is_empty() {
            self.0.push(ParseError::new(
                "channels",
                "must name at least one of telegram, email, web_chat",
            ));
            return None;
        }
        let mut out = Vec::new();
        for v in values {
            out.push(self.field::<ChannelKind>("channels", v)?);
        }
        Some(out)
    }

    fn fail(&mut self, field: &'static str, reason: impl Into<String>) {
        self.0.push(ParseError::new(field, reason));
    }

    fn finish(self) -> Result<(), ScheduleError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ScheduleError::Invalid(self.0))
        }
    }
}

/// Checks that the rule can be planned from `starts_on` in `timezone` (the `rrule` crate
/// accepts it for this start, it is not more frequent than hourly, and not absurdly dense).
fn check_rule(
    checker: &mut Checker,
    rule: &RecurrenceRule,
    timezone: TimeZone,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
) {
    let recurrence = Recurrence {
        rule,
        timezone,
        starts_on,
        ends_on,
    };
    let from = starts_on
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc() - TimeDelta::days(1));
    if let Some(from) = from
        && let Err(e) = doses(&recurrence, None, from, from + TimeDelta::days(9))
    {
        checker.fail("rrule", e.reason);
    }
}

/// Checks `input`, stores the schedule for `patient` and plans its doses up to `horizon` from
/// `now`. Errors name every wrong field; on any error nothing is stored.
pub async fn create(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    input: &ScheduleInput,
    created_by: Option<StaffUserId>,
    now: DateTime<Utc>,
) -> Result<(MedicationSchedule, PlanOutcome), ScheduleError> {
    let patient_record = store
        .patients()
        .get(org, patient)
        .await?
        .ok_or(StoreError::NotFound { entity: "patient" })?;
    let mut c = Checker::default();
    let medicine_name = c.field::<MedicineName>("medicine_name", &input.medicine_name);
    let dose_text = c.field::<DoseText>("dose_text", &input.dose_text);
    let rrule = c.field::<RecurrenceRule>("rrule", &input.rrule);
    let timezone = match &input.timezone {
        Some(tz) => c.field::<TimeZone>("timezone", tz),
        None => Some(patient_record.timezone),
    };
    let starts_on = c.date("starts_on", &input.starts_on);
    let ends_on = match &input.ends_on {
        Some(d) => c.date("ends_on", d).map(Some),
        None => Some(None),
    };
    let quiet_hours_policy = match &input.quiet_hours_policy {
        Some(p) => c.field::<QuietHoursPolicy>("quiet_hours_policy", p),
        None => Some(QuietHoursPolicy::Delay),
    };
    let channels = c.channels(&input.channels);
    if let (Some(start), Some(Some(end))) = (starts_on, ends_on)
        && end < start
    {
        c.fail("ends_on", "must not be before starts_on");
    }
    if let (Some(rule), Some(tz), Some(start), Some(end)) = (&rrule, timezone, starts_on, ends_on) {
        check_rule(&mut c, rule, tz, start, end);
    }
    let (
        Some(medicine_name),
        Some(dose_text),
        Some(rrule),
        Some(timezone),
        Some(starts_on),
        Some(ends_on),
        Some(quiet_hours_policy),
        Some(channels),
    ) = (
        medicine_name,
        dose_text,
        rrule,
        timezone,
        starts_on,
        ends_on,
        quiet_hours_policy,
        channels,
    )
    else {
        c.finish()?;
        return Err(ScheduleError::Invalid(Vec::new()));
    };
    c.finish()?;
    let schedule = store
        .medication_schedules()
        .create(
            org,
            NewMedicationSchedule {
                patient_id: patient,
                medicine_name,
                dose_text,
                rrule,
                timezone,
                starts_on,
                ends_on,
                quiet_hours_policy,
                channels,
                created_by,
            },
        )
        .await?;
    let outcome = plan_stored(store, org, &schedule, now).await?;
    Ok((schedule, outcome))
}

/// Applies an edit and re-plans: doses not yet sent move or are cancelled, sent ones stay.
pub async fn edit(
    store: &Store,
    org: OrganizationId,
    id: MedicationScheduleId,
    edit: &ScheduleEdit,
    now: DateTime<Utc>,
) -> Result<(MedicationSchedule, PlanOutcome), ScheduleError> {
    let current = store
        .medication_schedules()
        .get(org, id)
        .await?
        .ok_or(StoreError::NotFound {
            entity: "medication schedule",
        })?;
    let mut c = Checker::default();
    let mut changes = MedicationScheduleChanges {
        medicine_name: edit
            .medicine_name
            .as_deref()
            .and_then(|v| c.field("medicine_name", v)),
        dose_text: edit
            .dose_text
            .as_deref()
            .and_then(|v| c.field("dose_text", v)),
        rrule: edit.rrule.as_deref().and_then(|v| c.field("rrule", v)),
        timezone: edit
            .timezone
            .as_deref()
            .and_then(|v| c.field("timezone", v)),
        starts_on: edit
            .starts_on
            .as_deref()
            .and_then(|v| c.date("starts_on", v)),
        ends_on: None,
        quiet_hours_policy: edit
            .quiet_hours_policy
            .as_deref()
            .and_then(|v| c.field("quiet_hours_policy", v)),
        channels: edit.channels.as_deref().and_then(|v| c.channels(v)),
        active: edit.active,
    };
    if let Some(end) = &edit.ends_on {
        changes.ends_on = if end.trim().is_empty() {
            Some(None)
        } else {
            c.date("ends_on", end).map(Some)
        };
    }
    let starts_on = changes.starts_on.unwrap_or(current.starts_on);
    let ends_on = changes.ends_on.unwrap_or(current.ends_on);
    if ends_on.is_some_and(|end| end < starts_on) {
        c.fail("ends_on", "must not be before starts_on");
    }
    let rule = changes.rrule.as_ref().unwrap_or(&current.rrule);
    let timezone = changes.timezone.unwrap_or(current.timezone);
    check_rule(&mut c, rule, timezone, starts_on, ends_on);
    c.finish()?;
    let schedule = store
        .medication_schedules()
        .update(org, id, changes)
        .await?;
    let outcome = plan_stored(store, org, &schedule, now).await?;
    Ok((schedule, outcome))
}

/// Re-plans every active schedule of the patient (after their quiet hours or zone changed; an
/// inactive schedule was planned when it was stopped). See [`crate::follow`].
pub async fn replan_patient(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    now: DateTime<Utc>,
) -> Result<PlanOutcome, ScheduleError> {
    let mut total = PlanOutcome::default();
    for schedule in store
        .medication_schedules()
        .list_for_patient(org, patient)
        .await?
        .iter()
        .filter(|s| s.active)
    {
        let o = plan_stored(store, org, schedule, now).await?;
        total.inserted += o.inserted;
        total.kept += o.kept;
        total.moved += o.moved;
        total.cancelled += o.cancelled;
        total.left += o.left;
    }
    Ok(total)
}

async fn plan_stored(
    store: &Store,
    org: OrganizationId,
    schedule: &MedicationSchedule,
    now: DateTime<Utc>,
) -> Result<PlanOutcome, ScheduleError> {
    match plan(store, org, schedule, now, DEFAULT_HORIZON).await {
        Ok(o) => Ok(o),
        Err(PlanError::Invalid(e)) => Err(ScheduleError::Invalid(vec![e])),
        Err(PlanError::Store(e)) => Err(e.into()),
    }
}

/// Plans every active schedule up to `horizon` ahead, every `interval`, until `shutdown`: the
/// plan keeps reaching past the horizon as days pass. A schedule that cannot be planned is
/// logged and skipped; the others go on.
pub async fn run_planner(
    store: Store,
    horizon: TimeDelta,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match store.medication_schedules().list_all_active().await {
            Ok(schedules) => {
                for schedule in schedules {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    if let Err(e) = plan(
                        &store,
                        schedule.organization_id,
                        &schedule,
                        Utc::now(),
                        horizon,
                    )
                    .await
                    {
                        tracing::warn!(schedule_id = %schedule.id, error = %e, "schedule not planned");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "planner could not list schedules"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
