//! Test 4: idempotency keys turn retries into typed duplicates, never errors or second rows.

use careloop_core::*;
use careloop_store::*;

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    duplicate_inbound_message_is_reported_not_stored,
    duplicate_occurrence_is_not_planned_twice,
    replanning_moves_only_occurrences_not_yet_due_or_sent
);

async fn duplicate_inbound_message_is_reported_not_stored(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let conv = store
        .messages()
        .open_or_get_conversation(org.id, p.id, ChannelKind::Telegram)
        .await
        .unwrap();

    let first = store
        .messages()
        .append_message(
            org.id,
            inbound(conv.id, "I took it", Some("telegram:bot1:update:42")),
        )
        .await
        .unwrap();
    assert!(first.is_new());
    let second = store
        .messages()
        .append_message(
            org.id,
            inbound(
                conv.id,
                "I took it (retry)",
                Some("telegram:bot1:update:42"),
            ),
        )
        .await
        .unwrap();
    let Inserted::Duplicate(existing) = second else {
        panic!("a repeated key must be Inserted::Duplicate, got {second:?}");
    };
    assert_eq!(existing.id, first.get().id);
    assert_eq!(
        existing.body, "I took it",
        "the stored message is the first one"
    );

    let messages = store
        .messages()
        .list_messages(org.id, conv.id, 100)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1, "only one row for one key");

    // Messages without a key are never deduplicated.
    for _ in 0..2 {
        assert!(
            store
                .messages()
                .append_message(org.id, inbound(conv.id, "hi", None))
                .await
                .unwrap()
                .is_new()
        );
    }
    assert_eq!(
        store
            .messages()
            .list_messages(org.id, conv.id, 100)
            .await
            .unwrap()
            .len(),
        3
    );

    // The same key from another organization is a conflict, and leaks nothing.
    let other = crate::fixtures::org(store, "other").await;
    let q = patient(store, other.id, "Bo").await;
    let other_conv = store
        .messages()
        .open_or_get_conversation(other.id, q.id, ChannelKind::Telegram)
        .await
        .unwrap();
    assert!(matches!(
        store
            .messages()
            .append_message(
                other.id,
                inbound(other_conv.id, "x", Some("telegram:bot1:update:42"))
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .messages()
            .list_messages(other.id, other_conv.id, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn duplicate_occurrence_is_not_planned_twice(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let schedule = store
        .medication_schedules()
        .create(org.id, new_schedule(p.id, None))
        .await
        .unwrap();
    let new = NewReminderOccurrence {
        schedule_id: Some(schedule.id),
        campaign_id: None,
        patient_id: p.id,
        due_at: at("2025-03-01T07:00:00Z"),
        idempotency_key: format!("schedule:{}:2025-03-01T07:00:00Z", schedule.id),
    };
    let first = store
        .reminder_occurrences()
        .insert_if_absent(org.id, new.clone())
        .await
        .unwrap();
    assert!(first.is_new());
    let again = store
        .reminder_occurrences()
        .insert_if_absent(
            org.id,
            NewReminderOccurrence {
                due_at: at("2025-03-01T08:00:00Z"),
                ..new.clone()
            },
        )
        .await
        .unwrap();
    assert!(!again.is_new());
    assert_eq!(again.get().id, first.get().id);
    assert_eq!(
        again.get().due_at,
        at("2025-03-01T07:00:00Z"),
        "the first plan wins"
    );

    let due = store
        .reminder_occurrences()
        .due(at("2025-03-02T00:00:00Z"), 100)
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let listed = store
        .reminder_occurrences()
        .list_for_patient(
            org.id,
            p.id,
            at("2025-01-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

async fn replanning_moves_only_occurrences_not_yet_due_or_sent(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let schedule = store
        .medication_schedules()
        .create(org.id, new_schedule(p.id, None))
        .await
        .unwrap();
    let occurrences = store.reminder_occurrences();
    let mut ids = Vec::new();
    for due in [
        "2025-03-01T07:00:00Z",
        "2025-03-01T19:00:00Z",
        "2025-03-02T07:00:00Z",
        "2025-03-02T19:00:00Z",
    ] {
        let o = occurrences
            .insert_if_absent(
                org.id,
                NewReminderOccurrence {
                    schedule_id: Some(schedule.id),
                    campaign_id: None,
                    patient_id: p.id,
                    due_at: at(due),
                    idempotency_key: format!("schedule:{}:{due}", schedule.id),
                },
            )
            .await
            .unwrap()
            .into_inner();
        ids.push(o.id);
    }
    let now = at("2025-03-01T12:00:00Z");
    occurrences
        .set_state(org.id, ids[2], OccurrenceState::Sent)
        .await
        .unwrap();
    occurrences
        .set_state(org.id, ids[3], OccurrenceState::Cancelled)
        .await
        .unwrap();

    let planned = occurrences
        .list_planned_for_schedule(org.id, schedule.id, now)
        .await
        .unwrap();
    assert_eq!(
        planned.iter().map(|o| o.id).collect::<Vec<_>>(),
        [ids[1]],
        "planned, of this schedule, not before `now`"
    );
    let other = org_other(store).await;
    assert!(
        occurrences
            .list_planned_for_schedule(other, schedule.id, now)
            .await
            .unwrap()
            .is_empty()
    );

    let later = at("2025-03-01T20:00:00Z");
    assert!(
        !occurrences
            .replan(org.id, ids[0], later, now)
            .await
            .unwrap(),
        "already due"
    );
    assert!(
        occurrences
            .replan(org.id, ids[1], later, now)
            .await
            .unwrap(),
        "planned, ahead"
    );
    assert!(
        !occurrences
            .replan(org.id, ids[2], later, now)
            .await
            .unwrap(),
        "sent"
    );
    assert!(
        occurrences
            .replan(org.id, ids[3], later, now)
            .await
            .unwrap(),
        "cancelled"
    );
    assert!(
        !occurrences.replan(other, ids[1], later, now).await.unwrap(),
        "other org"
    );

    let get = |i: usize| occurrences.get(org.id, ids[i]);
    assert_eq!(
        get(0).await.unwrap().unwrap().due_at,
        at("2025-03-01T07:00:00Z")
    );
    let moved = get(1).await.unwrap().unwrap();
    assert_eq!(
        (moved.due_at, moved.state),
        (later, OccurrenceState::Planned)
    );
    assert_eq!(get(2).await.unwrap().unwrap().state, OccurrenceState::Sent);
    let revived = get(3).await.unwrap().unwrap();
    assert_eq!(
        (revived.due_at, revived.state),
        (later, OccurrenceState::Planned)
    );
}

async fn org_other(store: &Store) -> OrganizationId {
    org(store, "other").await.id
}
