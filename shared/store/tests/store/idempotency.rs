//! Test 4: idempotency keys turn retries into typed duplicates, never errors or second rows.

use careloop_core::*;
use careloop_store::*;

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    duplicate_inbound_message_is_reported_not_stored,
    duplicate_occurrence_is_not_planned_twice
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
