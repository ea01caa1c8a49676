//! A patient's answer to a reminder (a pressed Taken / Skip / Snooze button) becomes an adherence
//! event; Snooze plans the dose again 30 minutes later; the patient gets the approved
//! confirmation template in their language through the outbox. Pressing the same button twice
//! records and confirms once. The adherence rules themselves are `careloop_adherence`'s; a typed
//! answer ("taken", "tomé") is handled by the conversation engine with the same rules.

use careloop_adherence::{AdherencePolicy, Answer, Answered};
use careloop_channels::{DeliveryMeta, Purpose};
use careloop_core::{
    AdherenceKind, ChannelKind, OrganizationId, PatientId, ReadingLevel, ReminderOccurrenceId,
};
use careloop_store::{Store, StoreError};
use chrono::Utc;

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

/// Records `kind` for the patient's `occurrence` answered on `channel` and queues the
/// confirmation (see the module docs).
pub async fn respond(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    occurrence: ReminderOccurrenceId,
    kind: AdherenceKind,
    channel: ChannelKind,
    policy: &AdherencePolicy,
) -> Result<Responded, StoreError> {
    let answered = careloop_adherence::answer(
        store,
        org,
        patient,
        Answer {
            occurrence,
            kind,
            channel: Some(channel),
            at: Utc::now(),
        },
        policy,
    )
    .await?;
    let occ = match answered {
        Answered::Recorded(occ) => occ,
        Answered::Repeated(_) => return Ok(Responded::Repeated),
        Answered::NotTheirs => return Ok(Responded::NotTheirs),
    };
    confirm(store, org, patient, &occ, kind, channel).await?;
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
