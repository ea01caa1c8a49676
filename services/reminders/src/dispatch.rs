//! Turning a due occurrence into a reminder message in the outbox.
//!
//! A dose is rendered from the organization's approved `reminder` template in the patient's
//! language (`{medicine}`, `{dose}` as the care team wrote them; never generated), with Taken /
//! Skip / Snooze buttons (Telegram, web chat; email and plain text take the reply keywords the
//! template names), and stored as a `queued` outbound message whose idempotency key is derived
//! from the occurrence's own key: however often a job is delivered, or however many workers take
//! it at once, one message exists for one dose, and the outbox sends it once.

use careloop_channels::{Button, DeliveryMeta, Purpose};
use careloop_core::{ChannelKind, ConsentState, Language, OccurrenceState, ReadingLevel};
use careloop_queue::ReminderDue;
use careloop_store::{Actor, NewAuditEntry, Store, StoreError};

/// What the handler did with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// The reminder message is in the outbox (now or by an earlier delivery of the same job
    /// that died before finishing).
    Queued,
    /// Already past dispatching (a redelivered or duplicate job): nothing to do.
    AlreadyHandled,
    /// The occurrence no longer exists: nothing to do.
    Gone,
    /// Not sent, on purpose: the patient withdrew consent, or the schedule was removed.
    Cancelled(&'static str),
    /// Cannot be sent: no reachable channel, no approved template in the patient's language.
    Failed(String),
}

/// Button labels in each supported language (interface text, not clinical content).
fn buttons(language: Language, occurrence: &str) -> Vec<Button> {
    let (taken, skip, snooze) = match language {
        Language::Spanish => ("Tomado", "Omitir", "Recordar en 30 min"),
        Language::French => ("Pris", "Sauter", "Rappel dans 30 min"),
        Language::German => ("Genommen", "Auslassen", "In 30 Min. erinnern"),
        Language::Portuguese => ("Tomei", "Pular", "Lembrar em 30 min"),
        Language::Arabic => ("أخذت", "تخطي", "ذكرني بعد 30 دقيقة"),
        Language::English => ("Taken", "Skip", "Snooze 30 min"),
    };
    [(taken, "taken"), (skip, "skip"), (snooze, "snooze")]
        .into_iter()
        .map(|(label, action)| Button {
            label: label.to_owned(),
            action: format!("reminder:{occurrence}:{action}"),
        })
        .collect()
}

/// Handles one due reminder job (see the module docs).
pub async fn dispatch(store: &Store, job: &ReminderDue) -> Result<Dispatch, StoreError> {
    let org = job.organization_id;
    let occurrences = store.reminder_occurrences();
    let Some(occurrence) = occurrences.get(org, job.occurrence_id).await? else {
        return Ok(Dispatch::Gone);
    };
    let from = occurrence.state;
    if !matches!(
        from,
        OccurrenceState::Planned | OccurrenceState::Dispatching
    ) {
        return Ok(Dispatch::AlreadyHandled);
    }
    if occurrence.campaign_id.is_some() {
        return crate::campaign::dispatch::dispatch_step(store, job, occurrence).await;
    }
    let schedule = match occurrence.schedule_id {
        Some(id) => store.medication_schedules().get(org, id).await?,
        None => None,
    };
    let Some(schedule) = schedule else {
        return settle(
            store,
            job,
            from,
            OccurrenceState::Cancelled,
            "no medication schedule",
        )
        .await
        .map(|_| Dispatch::Cancelled("no medication schedule"));
    };
    let patient = store
        .patients()
        .get(org, occurrence.patient_id)
        .await?
        .ok_or(StoreError::NotFound { entity: "patient" })?;
    if patient.consent != ConsentState::Granted {
        let why = "patient has not consented or opted out";
        settle(store, job, from, OccurrenceState::Cancelled, why).await?;
        return Ok(Dispatch::Cancelled(why));
    }
    let identities = store
        .channel_identities()
        .list_for_patient(org, patient.id)
        .await?;
    let channel: Option<ChannelKind> = schedule
        .channels
        .iter()
        .copied()
        .find(|c| !patient.is_opted_out(*c) && identities.iter().any(|i| i.channel() == *c));
    let Some(channel) = channel else {
        let why = "no reachable channel among the schedule's channels".to_owned();
        settle(store, job, from, OccurrenceState::Failed, &why).await?;
        return Ok(Dispatch::Failed(why));
    };
    let key = "reminder"
        .parse()
        .map_err(|_| StoreError::NotFound { entity: "template" })?;
    let template = store
        .content()
        .get_approved(org, &key, None, patient.language, ReadingLevel::Easy)
        .await?;
    let Some(template) = template else {
        let why = format!(
            "no approved reminder template in {}",
            patient.language.code()
        );
        settle(store, job, from, OccurrenceState::Failed, &why).await?;
        return Ok(Dispatch::Failed(why));
    };
    let body = template
        .version
        .body
        .trim()
        .replace("{medicine}", schedule.medicine_name.as_str())
        .replace("{dose}", schedule.dose_text.as_str());
    let meta = DeliveryMeta {
        purpose: Purpose::Reminder,
        buttons: buttons(patient.language, &occurrence.id.to_string()),
        ..DeliveryMeta::default()
    };
    let message = crate::outgoing::prepare(
        store,
        org,
        patient.id,
        crate::outgoing::Outgoing {
            channel,
            template: &template,
            body,
            language: patient.language,
            idempotency_key: format!("reminder:{}", occurrence.idempotency_key),
            meta,
            checks: vec![
                ("stage", serde_json::json!("reminder")),
                ("template", serde_json::json!("reminder")),
                (
                    "occurrence_id",
                    serde_json::json!(occurrence.id.to_string()),
                ),
            ],
        },
    )
    .await?;
    // The message (or the one an earlier attempt stored under the same key), the `sent` state
    // and its audit entry commit together.
    let (message, moved) = occurrences
        .send_as(
            org,
            occurrence.id,
            from,
            message,
            audit_entry(job, OccurrenceState::Sent, "queued"),
        )
        .await?;
    let message = message.into_inner();
    if moved {
        tracing::info!(occurrence_id = %occurrence.id, message_id = %message.id, channel = %channel, "reminder queued");
        Ok(Dispatch::Queued)
    } else {
        Ok(Dispatch::AlreadyHandled)
    }
}

/// The audit entry for moving the job's occurrence to `to`.
fn audit_entry(job: &ReminderDue, to: OccurrenceState, why: &str) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: Some(job.organization_id),
        actor: Actor::System,
        action: format!("reminder.{}", to.as_str()),
        entity_type: "reminder_occurrence".into(),
        entity_id: job.occurrence_id.to_string(),
        details: serde_json::json!({ "reason": why }),
    }
}

/// Moves the occurrence from the state it was read in to `to` and audits it (both commit
/// together); `false` when another worker moved it first.
async fn settle(
    store: &Store,
    job: &ReminderDue,
    from: OccurrenceState,
    to: OccurrenceState,
    why: &str,
) -> Result<bool, StoreError> {
    store
        .reminder_occurrences()
        .transition_audited(
            job.organization_id,
            job.occurrence_id,
            from,
            to,
            None,
            audit_entry(job, to, why),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_carry_the_occurrence_and_fit_telegram() {
        for &language in Language::ALL {
            let b = buttons(language, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
            assert_eq!(b.len(), 3);
            assert!(
                b.iter().all(|b| b.action.len() <= 64),
                "Telegram callback data limit"
            );
            assert!(b[0].action.ends_with(":taken") && b[2].action.ends_with(":snooze"));
        }
    }
}
