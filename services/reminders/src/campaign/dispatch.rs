//! Turning a due campaign occurrence into a message in the outbox.
//!
//! The step's approved template in the patient's language (at their reading level if there is
//! one) is queued as it is, with purpose `campaign` and no adherence buttons, on the first of the
//! campaign's channels that reaches the patient. The message's idempotency key is derived from
//! the occurrence's, like a dose's: however often the job is delivered, one message exists. A
//! paused campaign's occurrence is held back (planned again on resume), a cancelled campaign's
//! is cancelled; a patient whose consent is withdrawn is removed from every remaining step.

use careloop_channels::{DeliveryMeta, Purpose};
use careloop_core::{
    CampaignState, ConsentState, ContentKind, OccurrenceState, OrganizationId, ReadingLevel, Slug,
};
use careloop_queue::ReminderDue;
use careloop_store::{
    Actor, ApprovedContent, NewAuditEntry, PAUSED, Patient, ReminderOccurrence, Store, StoreError,
};

use super::definition::CampaignDefinition;
use super::plan::channel_for;
use crate::dispatch::Dispatch;

/// Handles one due campaign occurrence (`occurrence` as read, `planned` or `dispatching`).
pub(crate) async fn dispatch_step(
    store: &Store,
    job: &ReminderDue,
    occurrence: ReminderOccurrence,
) -> Result<Dispatch, StoreError> {
    let org = job.organization_id;
    let from = occurrence.state;
    let give_up = |to: OccurrenceState, reason: &'static str| {
        settle(store, job, &occurrence, from, to, reason)
    };
    let campaign = match occurrence.campaign_id {
        Some(id) => store.campaigns().get(org, id).await?,
        None => None,
    };
    let Some(campaign) = campaign else {
        give_up(OccurrenceState::Cancelled, "no_campaign").await?;
        return Ok(Dispatch::Cancelled("campaign removed"));
    };
    match campaign.state {
        CampaignState::Running => {}
        CampaignState::Paused => {
            give_up(OccurrenceState::Cancelled, PAUSED).await?;
            return Ok(Dispatch::Cancelled("campaign paused"));
        }
        _ => {
            give_up(OccurrenceState::Cancelled, super::CAMPAIGN_CANCELLED).await?;
            return Ok(Dispatch::Cancelled("campaign not running"));
        }
    }
    let step = CampaignDefinition::from_stored(&campaign)
        .ok()
        .and_then(|def| {
            let i = usize::try_from(occurrence.campaign_step?).ok()?;
            def.steps.get(i).cloned().map(|step| (def, step))
        });
    let Some((def, step)) = step else {
        give_up(OccurrenceState::Failed, "no_step").await?;
        return Ok(Dispatch::Failed("campaign step does not parse".into()));
    };

    let members = store
        .audience()
        .members(org, &[occurrence.patient_id])
        .await?;
    let member = members
        .first()
        .ok_or(StoreError::NotFound { entity: "patient" })?;
    let patient = &member.patient;
    if patient.consent != ConsentState::Granted {
        give_up(OccurrenceState::Cancelled, "no_consent").await?;
        super::remove_patient(store, org, patient.id).await?;
        return Ok(Dispatch::Cancelled(
            "patient has not consented or opted out",
        ));
    }
    let channel = match channel_for(&def.audience, member) {
        Ok(channel) => channel,
        Err(why) => {
            give_up(OccurrenceState::Failed, why.code()).await?;
            return Ok(Dispatch::Failed(why.to_string()));
        }
    };
    let template = approved_template(store, org, &step.template, patient).await?;
    let Some(template) = template.as_ref() else {
        give_up(OccurrenceState::Failed, "no_template").await?;
        return Ok(Dispatch::Failed(format!(
            "no approved {} template in {}",
            step.template,
            patient.language.code()
        )));
    };
    let step_index = occurrence.campaign_step.unwrap_or_default();
    let message = crate::outgoing::queue(
        store,
        org,
        patient.id,
        crate::outgoing::Outgoing {
            channel,
            template,
            body: template.version.body.trim().to_owned(),
            language: patient.language,
            idempotency_key: format!("reminder:{}", occurrence.idempotency_key),
            meta: DeliveryMeta {
                purpose: Purpose::Campaign,
                ..DeliveryMeta::default()
            },
            checks: vec![
                ("stage", serde_json::json!("campaign")),
                ("template", serde_json::json!(step.template.as_str())),
                ("campaign_id", serde_json::json!(campaign.id.to_string())),
                ("campaign_step", serde_json::json!(step_index)),
                (
                    "occurrence_id",
                    serde_json::json!(occurrence.id.to_string()),
                ),
            ],
        },
    )
    .await?;
    let sent = store
        .reminder_occurrences()
        .transition_audited(
            org,
            occurrence.id,
            from,
            OccurrenceState::Sent,
            Some(message.id),
            audit(job, &occurrence, OccurrenceState::Sent, None),
        )
        .await?;
    if !sent {
        return Ok(Dispatch::AlreadyHandled);
    }
    tracing::info!(occurrence_id = %occurrence.id, campaign_id = %campaign.id, step = step_index, message_id = %message.id, channel = %channel, "campaign step queued");
    super::complete_if_done(store, org, &campaign.id, &def, chrono::Utc::now()).await?;
    Ok(Dispatch::Queued)
}

/// The approved template `key` in the patient's language, at their reading level if there is
/// one (the rule of [`super::plan::Templates::choose`], read for one patient).
async fn approved_template(
    store: &Store,
    org: OrganizationId,
    key: &Slug,
    patient: &Patient,
) -> Result<Option<ApprovedContent>, StoreError> {
    let other = match patient.reading_level {
        ReadingLevel::Easy => ReadingLevel::Standard,
        ReadingLevel::Standard => ReadingLevel::Easy,
    };
    for level in [patient.reading_level, other] {
        let found = store
            .content()
            .get_approved(org, key, None, patient.language, level)
            .await?
            .filter(|c| c.item.kind == ContentKind::Template);
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn audit(
    job: &ReminderDue,
    occurrence: &ReminderOccurrence,
    to: OccurrenceState,
    reason: Option<&str>,
) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: Some(job.organization_id),
        actor: Actor::System,
        action: format!("campaign_step.{}", to.as_str()),
        entity_type: "reminder_occurrence".into(),
        entity_id: job.occurrence_id.to_string(),
        details: serde_json::json!({
            "campaign_id": occurrence.campaign_id.map(|c| c.to_string()),
            "step": occurrence.campaign_step,
            "reason": reason,
        }),
    }
}

/// Moves the occurrence from the state it was read in to `to` with `reason`, audited; `false`
/// when another worker moved it first.
async fn settle(
    store: &Store,
    job: &ReminderDue,
    occurrence: &ReminderOccurrence,
    from: OccurrenceState,
    to: OccurrenceState,
    reason: &'static str,
) -> Result<bool, StoreError> {
    store
        .campaign_occurrences()
        .transition_audited(
            job.organization_id,
            occurrence.id,
            from,
            to,
            Some(reason),
            audit(job, occurrence, to, Some(reason)),
        )
        .await
}
