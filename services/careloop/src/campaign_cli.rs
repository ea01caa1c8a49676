//! `careloop campaign …` and `careloop patient set-date`: campaigns from the command line (the
//! staff app will call the same `careloop_reminders::campaign` functions). Bad input (a campaign
//! file with problems, an unknown id, a move the campaign's state does not allow) is a
//! [`crate::BadInput`]: printed with the field named, exit code 2.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use careloop_config::Settings;
use careloop_core::{CampaignId, OrganizationId, PatientId, Role, Slug, StaffUserId};
use careloop_reminders::campaign::{
    self, CampaignError, CampaignService, Format, Progress, StepPlan,
};
use careloop_store::{Actor, Store};
use chrono::{NaiveDate, Utc};
use clap::Subcommand;

use crate::{BadInput, content, serve};

#[derive(Debug, Subcommand)]
pub enum CampaignAction {
    /// Check a campaign file (TOML or JSON, see `careloop_reminders::campaign::definition`) and
    /// store it as a draft; prints its id.
    Create {
        #[arg(long)]
        file: PathBuf,
        /// The author's email (default: the organization's first active admin or care team
        /// member).
        #[arg(long)]
        staff: Option<String>,
    },
    /// The organization's campaigns.
    List,
    /// Who would get what, when and in which language; why the others would not.
    Preview {
        id: String,
        /// Patients × steps to list (the summary counts everyone).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Start a draft: plans every patient's steps (again, idempotently, for a running one).
    Start { id: String },
    /// Hold back everything not yet sent.
    Pause { id: String },
    /// Plan what the pause held back again, and patients who joined meanwhile.
    Resume { id: String },
    /// Cancel everything not yet sent.
    Cancel { id: String },
    /// Counts by step and state, and what the outbox did with what was sent.
    Progress { id: String },
}

fn campaign_id(id: &str) -> Result<CampaignId, BadInput> {
    id.parse()
        .map_err(|_| BadInput(format!("campaign id: `{id}` is not a campaign id")))
}

/// `CampaignError`s a person can fix become [`BadInput`].
fn classify(err: CampaignError) -> anyhow::Error {
    match err {
        CampaignError::Invalid(invalid) => {
            let mut msg = String::from("invalid campaign");
            for e in &invalid.errors {
                let _ = write!(msg, "\n  {e}");
            }
            BadInput(msg).into()
        }
        CampaignError::NotFound => BadInput("campaign id: no such campaign".into()).into(),
        e @ CampaignError::State { .. } => BadInput(e.to_string()).into(),
        CampaignError::Store(e) => anyhow::Error::new(e),
    }
}

async fn open(settings: &Settings) -> anyhow::Result<(Store, OrganizationId)> {
    let store = serve::open_store(settings).await?;
    store.migrate().await.context("migrations")?;
    let org = content::default_organization(&store).await?;
    Ok((store, org))
}

async fn author(
    store: &Store,
    org: OrganizationId,
    email: Option<&str>,
) -> anyhow::Result<StaffUserId> {
    if let Some(email) = email {
        let email = email
            .parse()
            .map_err(|e: careloop_core::ParseError| BadInput(format!("--staff: {}", e.reason)))?;
        return store
            .staff_users()
            .find_by_email(org, &email)
            .await?
            .filter(|s| s.active)
            .map(|s| s.id)
            .ok_or_else(|| {
                BadInput("--staff: no active staff user with this email".into()).into()
            });
    }
    store
        .staff_users()
        .list(org)
        .await?
        .into_iter()
        .find(|s| s.active && matches!(s.role, Role::Admin | Role::CareTeam))
        .map(|s| s.id)
        .ok_or_else(|| {
            BadInput("--staff: the organization has no active admin or care team member".into())
                .into()
        })
}

fn out(text: &str) -> anyhow::Result<()> {
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes())?;
    Ok(())
}

pub async fn run(settings: &Settings, action: CampaignAction) -> anyhow::Result<()> {
    // Ids are checked before the database is opened.
    let id = match &action {
        CampaignAction::Preview { id, .. }
        | CampaignAction::Start { id }
        | CampaignAction::Pause { id }
        | CampaignAction::Resume { id }
        | CampaignAction::Cancel { id }
        | CampaignAction::Progress { id } => Some(campaign_id(id)?),
        CampaignAction::Create { .. } | CampaignAction::List => None,
    };
    let file = match &action {
        CampaignAction::Create { file, .. } => {
            let format = Format::from_path(file)
                .ok_or_else(|| BadInput("--file: must end in .toml or .json".into()))?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| BadInput(format!("--file: cannot read {}: {e}", file.display())))?;
            Some(campaign::parse_document(&text, format).map_err(|e| classify(e.into()))?)
        }
        _ => None,
    };
    let (store, org) = open(settings).await?;
    let service = CampaignService::new(&store, org, Actor::System);
    let now = Utc::now();
    match (action, id, file) {
        (CampaignAction::Create { staff, .. }, _, Some(file)) => {
            let by = author(&store, org, staff.as_deref()).await?;
            let service = CampaignService {
                actor: Actor::Staff(by),
                ..service
            };
            let campaign = service.create(by, &file).await.map_err(classify)?;
            out(&format!("{}\n", campaign.id))
        }
        (CampaignAction::List, ..) => {
            let mut text = String::new();
            for c in store.campaigns().list(org).await? {
                let _ = writeln!(text, "{}\t{}\t{}", c.id, c.state, c.name);
            }
            out(&text)
        }
        (CampaignAction::Preview { limit, .. }, Some(id), _) => {
            let preview = service.preview(id, now).await.map_err(classify)?;
            out(&preview_text(&preview, limit))
        }
        (CampaignAction::Start { .. }, Some(id), _) => {
            let done = service.start(id, now).await.map_err(classify)?;
            out(&format!(
                "started: {} patients, {} steps planned, {} skipped, {} planned again\n",
                done.patients, done.planned, done.skipped, done.replanned
            ))
        }
        (CampaignAction::Pause { .. }, Some(id), _) => {
            let held = service.pause(id).await.map_err(classify)?;
            out(&format!("paused: {held} planned steps held back\n"))
        }
        (CampaignAction::Resume { .. }, Some(id), _) => {
            let (released, done) = service.resume(id, now).await.map_err(classify)?;
            out(&format!(
                "resumed: {released} held steps planned again, {} new steps planned\n",
                done.planned
            ))
        }
        (CampaignAction::Cancel { .. }, Some(id), _) => {
            let cancelled = service.cancel(id).await.map_err(classify)?;
            out(&format!("cancelled: {cancelled} steps will not be sent\n"))
        }
        (CampaignAction::Progress { .. }, Some(id), _) => {
            let progress = service.progress(id, now).await.map_err(classify)?;
            out(&progress_text(&progress))
        }
        _ => anyhow::bail!("unreachable campaign command"),
    }
}

fn preview_text(preview: &campaign::Preview, limit: usize) -> String {
    let mut text = format!("patients in the audience: {}\n", preview.patients);
    for (i, s) in preview.steps.iter().enumerate() {
        let _ = write!(
            text,
            "step {i}: {} to send ({} delayed by quiet hours)",
            s.send, s.delayed_by_quiet_hours
        );
        for (reason, n) in &s.skipped {
            let _ = write!(text, ", {n} skipped: {reason}");
        }
        text.push('\n');
    }
    for row in preview.rows.iter().take(limit) {
        let _ = match (&row.plan, row.due_at) {
            (StepPlan::Send(d), Some(due)) => writeln!(
                text,
                "{}\tstep {}\t{} v{} {}\t{}\t{} {}{}\t{}",
                row.patient_id,
                row.step,
                d.template.item.key,
                d.template.version.version,
                d.template.item.language.code(),
                due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                d.local.format("%Y-%m-%d %H:%M"),
                d.template.item.reading_level,
                if d.delayed_by_quiet_hours {
                    " (after quiet hours)"
                } else {
                    ""
                },
                d.channel,
            ),
            (StepPlan::Skip(why), _) => {
                writeln!(
                    text,
                    "{}\tstep {}\tskipped: {why}",
                    row.patient_id, row.step
                )
            }
            (StepPlan::Send(_), None) => Ok(()),
        };
    }
    if preview.rows.len() > limit {
        let _ = writeln!(text, "… {} more (--limit)", preview.rows.len() - limit);
    }
    text
}

fn progress_text(progress: &Progress) -> String {
    let mut text = format!("state: {}\n", progress.state);
    for (i, s) in progress.steps.iter().enumerate() {
        let _ = write!(
            text,
            "step {i}: planned {} dispatching {} sent {} failed {} cancelled {} paused {} skipped {}",
            s.planned, s.dispatching, s.sent, s.failed, s.cancelled, s.paused, s.skipped
        );
        if !s.messages.is_empty() {
            let parts: Vec<String> = s.messages.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(text, " | outbox: {}", parts.join(", "));
        }
        if !s.reasons.is_empty() {
            let parts: Vec<String> = s.reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = write!(text, " | reasons: {}", parts.join(", "));
        }
        text.push('\n');
    }
    text
}

/// `careloop patient set-date`: sets a patient date and schedules the patient's steps in the
/// running campaigns that depend on it.
pub async fn set_date(
    settings: &Settings,
    patient: &str,
    field: &str,
    date: &str,
) -> anyhow::Result<()> {
    let patient: PatientId = patient
        .parse()
        .map_err(|e: careloop_core::ParseError| BadInput(format!("--patient: {}", e.reason)))?;
    let field: Slug = field
        .parse()
        .map_err(|e: careloop_core::ParseError| BadInput(format!("--field: {}", e.reason)))?;
    if field.as_str() == campaign::definition::ENROLLED {
        return Err(
            BadInput("--field: `enrolled` is the enrolment date; it cannot be set".into()).into(),
        );
    }
    let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| BadInput("--date: must be a date like 2026-12-01".into()))?;
    let (store, org) = open(settings).await?;
    store
        .patient_dates()
        .set(org, patient, &field, date, &Actor::System)
        .await
        .map_err(|e| match e {
            careloop_store::StoreError::NotFound { .. } => {
                BadInput("--patient: no such patient in this organization".into()).into()
            }
            e => anyhow::Error::new(e),
        })?;
    let done = campaign::enrol_patient(&store, org, patient, Utc::now())
        .await
        .map_err(classify)?;
    out(&format!(
        "{field} set; campaign steps planned: {}, planned again: {}\n",
        done.planned, done.replanned
    ))
}
