//! `careloop schedule …`: a care team's medication schedules from the command line (the staff
//! app will call the same `careloop_reminders::schedules` functions).

use anyhow::Context;
use careloop_config::Settings;
use careloop_core::{MedicationScheduleId, PatientId};
use careloop_reminders::schedules::{self, ScheduleEdit, ScheduleInput};
use chrono::Utc;
use clap::{Args, Subcommand};

use crate::{BadInput, content, serve};

/// Field errors and unknown ids are [`BadInput`] (exit code 2); anything else stays an error.
fn refused(context: &str, e: schedules::ScheduleError) -> anyhow::Error {
    match e {
        schedules::ScheduleError::Invalid(_)
        | schedules::ScheduleError::Store(careloop_store::StoreError::NotFound { .. })
        | schedules::ScheduleError::Store(careloop_store::StoreError::Invalid(_)) => {
            BadInput(format!("{context}: {e}")).into()
        }
        e => anyhow::Error::new(e).context(context.to_owned()),
    }
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Create a schedule for a patient and plan its doses.
    Add {
        /// The patient's id.
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        fields: ScheduleFields,
    },
    /// Change a schedule; doses not yet sent are re-planned, sent ones stay as they were.
    Edit {
        /// The schedule's id.
        id: String,
        #[command(flatten)]
        fields: ScheduleFields,
        /// `false` stops the schedule (its planned doses are cancelled); `true` resumes it.
        #[arg(long)]
        active: Option<bool>,
    },
    /// List a patient's schedules and their next doses.
    List {
        #[arg(long)]
        patient: String,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleFields {
    /// The medicine's name, as the care team writes it.
    #[arg(long)]
    medicine: Option<String>,
    /// The dose, as the care team writes it ("500 mg with dinner"); never generated.
    #[arg(long)]
    dose: Option<String>,
    /// RFC 5545 RRULE, wall-clock times in --timezone (`FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0`).
    #[arg(long)]
    rrule: Option<String>,
    /// IANA zone of the rule's times (default: the patient's).
    #[arg(long)]
    timezone: Option<String>,
    /// First day, YYYY-MM-DD (default today in UTC when adding).
    #[arg(long)]
    starts: Option<String>,
    /// Last day, YYYY-MM-DD (`""` removes it when editing).
    #[arg(long)]
    ends: Option<String>,
    /// What a dose inside the patient's quiet hours does: `delay` (default) or `skip`.
    #[arg(long)]
    quiet_hours_policy: Option<String>,
    /// Channels in order of preference, comma-separated: telegram, email, web_chat.
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
}

pub async fn run(settings: &Settings, action: ScheduleAction) -> anyhow::Result<()> {
    let store = serve::open_store(settings).await?;
    store.migrate().await.context("migrations")?;
    let org = content::default_organization(&store).await?;
    let now = Utc::now();
    let mut out = String::new();
    match action {
        ScheduleAction::Add { patient, fields } => {
            let patient: PatientId = patient
                .parse()
                .map_err(|e| BadInput(format!("--patient: {e}")))?;
            let input = ScheduleInput {
                medicine_name: fields.medicine.unwrap_or_default(),
                dose_text: fields.dose.unwrap_or_default(),
                rrule: fields.rrule.unwrap_or_default(),
                timezone: fields.timezone,
                starts_on: fields
                    .starts
                    .unwrap_or_else(|| now.date_naive().to_string()),
                ends_on: fields.ends,
                quiet_hours_policy: fields.quiet_hours_policy,
                channels: fields.channels.unwrap_or_default(),
            };
            let (schedule, outcome) = schedules::create(&store, org, patient, &input, None, now)
                .await
                .map_err(|e| refused("schedule not created", e))?;
            out.push_str(&format!(
                "schedule: {}\nplanned: {} doses\n",
                schedule.id, outcome.inserted
            ));
            next_doses(&store, org, &schedule, &mut out).await?;
        }
        ScheduleAction::Edit { id, fields, active } => {
            let id: MedicationScheduleId = id
                .parse()
                .map_err(|e| BadInput(format!("schedule id: {e}")))?;
            let edit = ScheduleEdit {
                medicine_name: fields.medicine,
                dose_text: fields.dose,
                rrule: fields.rrule,
                timezone: fields.timezone,
                starts_on: fields.starts,
                ends_on: fields.ends,
                quiet_hours_policy: fields.quiet_hours_policy,
                channels: fields.channels,
                active,
            };
            let (schedule, outcome) = schedules::edit(&store, org, id, &edit, now)
                .await
                .map_err(|e| refused("schedule not changed", e))?;
            out.push_str(&format!(
                "schedule: {}\nplanned: {} new, {} moved, {} cancelled, {} kept\n",
                schedule.id, outcome.inserted, outcome.moved, outcome.cancelled, outcome.kept
            ));
            next_doses(&store, org, &schedule, &mut out).await?;
        }
        ScheduleAction::List { patient } => {
            let patient: PatientId = patient
                .parse()
                .map_err(|e| BadInput(format!("--patient: {e}")))?;
            for schedule in store
                .medication_schedules()
                .list_for_patient(org, patient)
                .await?
            {
                out.push_str(&format!(
                    "schedule: {}  active: {}  rule: {}  zone: {}  from: {}  to: {}\n",
                    schedule.id,
                    schedule.active,
                    schedule.rrule.as_str(),
                    schedule.timezone,
                    schedule.starts_on,
                    schedule
                        .ends_on
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                ));
                next_doses(&store, org, &schedule, &mut out).await?;
            }
        }
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}

/// The next few planned doses, in the schedule's zone.
async fn next_doses(
    store: &careloop_store::Store,
    org: careloop_core::OrganizationId,
    schedule: &careloop_store::MedicationSchedule,
    out: &mut String,
) -> anyhow::Result<()> {
    let planned = store
        .reminder_occurrences()
        .list_planned_for_schedule(org, schedule.id, Utc::now())
        .await?;
    let tz = schedule.timezone.tz();
    for o in planned.iter().take(5) {
        out.push_str(&format!(
            "  next: {} ({})\n",
            o.due_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            o.due_at.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    Ok(())
}
