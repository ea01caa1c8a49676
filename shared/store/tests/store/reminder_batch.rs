//! Dispatching reminders by the batch: the reads scoped to each occurrence's organization, and
//! one transaction that moves each occurrence only from the state it was read in, with its one
//! message and audit entry, and fails whole (nothing written) on another organization's
//! conversation or key.

use careloop_core::*;
use careloop_store::*;

use crate::common::{count, on_both_backends};
use crate::fixtures::*;

on_both_backends!(
    batch_reads_are_scoped_to_each_organization,
    a_batch_stores_each_message_once_and_moves_each_occurrence_once,
    a_batch_with_another_organizations_conversation_writes_nothing,
    conversations_are_opened_together_once_and_only_in_the_patients_organization
);

struct Dose {
    org: OrganizationId,
    patient: PatientId,
    occurrence: ReminderOccurrence,
    conversation: ConversationId,
}

async fn dose(store: &Store, org: OrganizationId, patient: PatientId, n: usize) -> Dose {
    let schedule = store
        .medication_schedules()
        .create(org, new_schedule(patient, None))
        .await
        .unwrap();
    let occurrence = store
        .reminder_occurrences()
        .insert_if_absent(
            org,
            NewReminderOccurrence {
                schedule_id: Some(schedule.id),
                campaign_id: None,
                patient_id: patient,
                due_at: at("2025-03-01T07:00:00Z"),
                idempotency_key: format!("schedule:{}:batch-{n}", schedule.id),
            },
        )
        .await
        .unwrap()
        .into_inner();
    let conversation = store
        .messages()
        .open_or_get_conversation(org, patient, ChannelKind::Telegram)
        .await
        .unwrap()
        .id;
    Dose {
        org,
        patient,
        occurrence,
        conversation,
    }
}

fn send(d: &Dose, from: OccurrenceState) -> BatchSend {
    BatchSend {
        organization_id: d.org,
        occurrence_id: d.occurrence.id,
        from,
        message: NewMessage {
            conversation_id: d.conversation,
            direction: MessageDirection::Outbound,
            status: MessageStatus::Queued,
            body: "Time for Metformin".to_owned(),
            language: Some(Language::English),
            idempotency_key: Some(format!("reminder:{}", d.occurrence.idempotency_key)),
            provenance: None,
            delivery_meta: None,
            hold_until: None,
        },
        audit: NewAuditEntry {
            organization_id: Some(d.org),
            actor: Actor::System,
            action: "reminder.sent".into(),
            entity_type: "reminder_occurrence".into(),
            entity_id: d.occurrence.id.to_string(),
            details: serde_json::json!({}),
        },
    }
}

async fn batch_reads_are_scoped_to_each_organization(store: &Store) {
    let a = org(store, "clinic-a").await.id;
    let b = org_other(store).await;
    let ana = patient(store, a, "Ana").await;
    let bo = patient(store, b, "Bo").await;
    store
        .channel_identities()
        .link(
            a,
            ana.id,
            &ChannelAddress::Telegram(TelegramChatId::new(41)),
            None,
        )
        .await
        .unwrap();
    store
        .patients()
        .set_channel_opt_out(a, ana.id, ChannelKind::Email, true)
        .await
        .unwrap();
    let da = dose(store, a, ana.id, 1).await;
    let db = dose(store, b, bo.id, 2).await;
    let contexts = store
        .reminder_occurrences()
        .dispatch_contexts(&[
            (a, da.occurrence.id),
            (b, db.occurrence.id),
            // Asked for under the wrong organization: not found.
            (b, da.occurrence.id),
            (a, ReminderOccurrenceId::new()),
        ])
        .await
        .unwrap();
    assert_eq!(contexts.len(), 4);
    let first = contexts[0].as_ref().unwrap();
    assert_eq!(first.occurrence, da.occurrence);
    assert_eq!(first.patient.as_ref().unwrap().id, ana.id);
    assert!(
        first
            .patient
            .as_ref()
            .unwrap()
            .is_opted_out(ChannelKind::Email)
    );
    assert_eq!(
        first.schedule.as_ref().unwrap().id,
        da.occurrence.schedule_id.unwrap()
    );
    assert_eq!(first.identities.len(), 1);
    let second = contexts[1].as_ref().unwrap();
    assert_eq!(second.patient.as_ref().unwrap().id, bo.id);
    assert!(second.identities.is_empty());
    assert!(contexts[2].is_none());
    assert!(contexts[3].is_none());
}

async fn a_batch_stores_each_message_once_and_moves_each_occurrence_once(store: &Store) {
    let a = org(store, "clinic").await.id;
    let ana = patient(store, a, "Ana").await;
    let doses = [
        dose(store, a, ana.id, 1).await,
        dose(store, a, ana.id, 2).await,
        dose(store, a, ana.id, 3).await,
    ];
    let occurrences = store.reminder_occurrences();
    // The third was cancelled after it was read: it must not move.
    occurrences
        .set_state(a, doses[2].occurrence.id, OccurrenceState::Cancelled)
        .await
        .unwrap();
    let sent = occurrences
        .send_many(
            doses
                .iter()
                .map(|d| send(d, OccurrenceState::Planned))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(
        sent.iter().map(|s| s.moved).collect::<Vec<_>>(),
        [true, true, false]
    );
    for (d, s) in doses.iter().zip(&sent).take(2) {
        let now = occurrences.get(a, d.occurrence.id).await.unwrap().unwrap();
        assert_eq!(now.state, OccurrenceState::Sent);
        assert_eq!(now.message_id, s.message_id);
        let m = store
            .messages()
            .get_message(a, s.message_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.patient_id, d.patient);
        assert_eq!(m.status, MessageStatus::Queued);
    }
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'reminder.sent'"
        )
        .await,
        2
    );
    // The same batch again (a redelivered job): the same messages, nothing moves or is added.
    let again = occurrences
        .send_many(
            doses
                .iter()
                .map(|d| send(d, OccurrenceState::Planned))
                .collect(),
        )
        .await
        .unwrap();
    assert!(again.iter().all(|s| !s.moved && s.message_id.is_none()));
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) AS n FROM messages WHERE direction = 'outbound'"
        )
        .await,
        2,
        "one message per dose sent; none for the cancelled one"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'reminder.sent'"
        )
        .await,
        2
    );
    assert!(occurrences.send_many(Vec::new()).await.unwrap().is_empty());
}

async fn a_batch_with_another_organizations_conversation_writes_nothing(store: &Store) {
    let a = org(store, "clinic-a").await.id;
    let b = org_other(store).await;
    let ana = patient(store, a, "Ana").await;
    let bo = patient(store, b, "Bo").await;
    let good = dose(store, a, ana.id, 1).await;
    let mut bad = dose(store, a, ana.id, 2).await;
    bad.conversation = dose(store, b, bo.id, 3).await.conversation;
    let err = store
        .reminder_occurrences()
        .send_many(vec![
            send(&good, OccurrenceState::Planned),
            send(&bad, OccurrenceState::Planned),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                entity: "conversation"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM messages").await,
        0,
        "nothing of the batch was written"
    );
    let unchanged = store
        .reminder_occurrences()
        .get(a, good.occurrence.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.state, OccurrenceState::Planned);
}

async fn conversations_are_opened_together_once_and_only_in_the_patients_organization(
    store: &Store,
) {
    let a = org(store, "clinic-a").await.id;
    let b = org_other(store).await;
    let ana = patient(store, a, "Ana").await;
    let ali = patient(store, a, "Ali").await;
    let bo = patient(store, b, "Bo").await;
    let existing = store
        .messages()
        .open_or_get_conversation(a, ana.id, ChannelKind::Telegram)
        .await
        .unwrap();
    let wanted = [
        (a, ana.id, ChannelKind::Telegram),
        (a, ana.id, ChannelKind::Email),
        (a, ali.id, ChannelKind::Telegram),
        (b, bo.id, ChannelKind::Telegram),
        // Asked twice: opened once.
        (a, ali.id, ChannelKind::Telegram),
    ];
    let opened = store.messages().open_conversations(&wanted).await.unwrap();
    assert_eq!(opened.len(), 4);
    assert_eq!(opened[&(a, ana.id, ChannelKind::Telegram)].id, existing.id);
    for (org, patient, channel) in wanted {
        let c = &opened[&(org, patient, channel)];
        assert_eq!(
            (c.organization_id, c.patient_id, c.channel),
            (org, patient, channel)
        );
    }
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM conversations").await,
        4
    );
    // Asked again: the same ones, nothing new.
    let again = store.messages().open_conversations(&wanted).await.unwrap();
    assert_eq!(again, opened);
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM conversations").await,
        4
    );
    // A patient under another organization's name fails the lot, nothing opened.
    let err = store
        .messages()
        .open_conversations(&[
            (a, ali.id, ChannelKind::Email),
            (a, bo.id, ChannelKind::Telegram),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { entity: "patient" }),
        "{err:?}"
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) AS n FROM conversations").await,
        4
    );
}
