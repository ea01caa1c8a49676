//! A patient's answer to a reminder (a pressed Taken / Skip / Snooze button) becomes an adherence
//! event; Snooze plans the dose again 30 minutes later; the patient gets the approved
//! confirmation template in their language through the outbox. Pressing the same button twice
//! records and confirms once.

use careloop_channels::{DeliveryMeta, Purpose};
use careloop_core::{
    AdherenceKind, ChannelKind, OrganizationId, PatientId, ReadingLevel, ReminderOccurrenceId,
};
use careloop_store::{NewAdherenceEvent, NewReminderOccurrence, Store, StoreError};
use chrono::Utc;

/// How long Snooze waits.
pub const SNOOZE: chrono::Duration = chrono::Duration::minutes(30);

/// The answer a button carries: `reminder:<occurrence>:<taken|skip|snooze>`.
pub fn parse_action(action: &str) -> Option<(ReminderOccurrenceId, AdherenceKind)> {
    let rest = action.strip_prefix("reminder:")?;
    let (id, kind) = rest.rsplit_once(':')?;
    let kind = match kind {
        "taken" => AdherenceKind::Taken,
        "skip" => AdherenceKind::Skipped,
        "snooze" => AdherenceKind::Snoozed,
        _ => return None,
    };
    Some((id.parse().ok()?, kind))
}

/// What [`respond`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Responded {
    Recorded,
    /// The same answer to the same dose was recorded before.
    Repeated,
    /// Not this patient's reminder (or no such reminder): nothing recorded.
    NotTheirs,
}

/// Records `kind` for the patient's `occurrence` answered on `channel` (see the module docs).
pub async fn respond(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    occurrence: ReminderOccurrenceId,
    kind: AdherenceKind,
    channel: ChannelKind,
) -> Result<Responded, StoreError> {
    let Some(occ) = store.reminder_occurrences().get(org, occurrence).await? else {
        return Ok(Responded::NotTheirs);
    };
    if occ.patient_id != patient {
        return Ok(Responded::NotTheirs);
    }
    let earlier = store
        .adherence_events()
        .list_for_patient(org, patient)
        .await?;
    if earlier
        .iter()
        .any(|e| e.occurrence_id == Some(occurrence) && e.kind == kind)
    {
        return Ok(Responded::Repeated);
    }
    store
        .adherence_events()
        .record(
            org,
            NewAdherenceEvent {
                patient_id: patient,
                occurrence_id: Some(occurrence),
                kind,
                source_channel: Some(channel),
                recorded_at: Utc::now(),
            },
        )
        .await?;
    if kind == AdherenceKind::Snoozed {
        store
            .reminder_occurrences()
            .insert_if_absent(
                org,
                NewReminderOccurrence {
                    schedule_id: occ.schedule_id,
                    campaign_id: occ.campaign_id,
                    patient_id: patient,
                    due_at: Utc::now() + SNOOZE,
                    idempotency_key: format!("{}:snooze", occ.idempotency_key),
                },
            )
            .await?;
    }
    confirm(store, org, patient, &occ, kind, channel).await?;
    tracing::info!(organization_id = %org, occurrence_id = %occurrence, kind = kind.as_str(), "reminder answered");
    Ok(Responded::Recorded)
}

/// Queues the approved `adherence-*` template (no template: no confirmation, the event stands).
async fn confirm(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    occ: &careloop_store::ReminderOccurrence,
    kind: AdherenceKind,
    channel: ChannelKind,
) -> Result<(), StoreError> {
    let Some(p) = store.patients().get(org, patient).await? else {
        return Ok(());
    };
    let key = match kind {
        AdherenceKind::Taken => "adherence-taken",
        AdherenceKind::Skipped => "adherence-skipped",
        AdherenceKind::Snoozed => "adherence-snoozed",
        AdherenceKind::Missed => return Ok(()),
    };
    let Ok(slug) = key.parse() else {
        return Ok(());
    };
    let Some(template) = store
        .content()
        .get_approved(org, &slug, None, p.language, ReadingLevel::Easy)
        .await?
    else {
        tracing::warn!(organization_id = %org, template = key, "no approved confirmation template");
        return Ok(());
    };
    let medicine = match occ.schedule_id {
        Some(id) => store
            .medication_schedules()
            .get(org, id)
            .await?
            .map(|s| s.medicine_name.as_str().to_owned()),
        None => None,
    }
    .unwrap_or_default();
    let body = template
        .version
        .body
        .trim()
        .replace("{medicine}", &medicine);
    crate::outgoing::queue(
        store,
        org,
        patient,
        crate::outgoing::Outgoing {
            channel,
            template: &template,
            body,
            language: p.language,
            idempotency_key: format!("adherence:{}:{}", occ.id, kind.as_str()),
            meta: DeliveryMeta {
                purpose: Purpose::Reply,
                ..DeliveryMeta::default()
            },
            checks: vec![
                ("stage", serde_json::json!("adherence")),
                ("template", serde_json::json!(key)),
            ],
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_and_garbage_does_not() {
        let id = ReminderOccurrenceId::new();
        assert_eq!(
            parse_action(&format!("reminder:{id}:taken")),
            Some((id, AdherenceKind::Taken))
        );
        assert_eq!(
            parse_action(&format!("reminder:{id}:snooze")),
            Some((id, AdherenceKind::Snoozed))
        );
        assert_eq!(parse_action(&format!("reminder:{id}:eaten")), None);
        assert_eq!(parse_action("reminder:nope:taken"), None);
        assert_eq!(parse_action("other:x"), None);
    }
}
