//! What the conversation engine needs from the store: alerts, dialog state, the approved library
//! in one read, content import, and cancelling a patient's planned reminders after STOP.

use careloop_content::ContentDocument;
use careloop_core::*;
use careloop_store::*;

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    alerts_are_raised_listed_and_audited,
    dialog_state_round_trips_per_patient,
    import_approves_seed_in_demo_mode_and_lists_the_approved_library,
    stop_cancels_only_planned_reminders
);

async fn alerts_are_raised_listed_and_audited(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let p = patient(store, org.id, "Ana").await;
    let alert = store
        .alerts()
        .raise(
            org.id,
            NewAlert {
                patient_id: p.id,
                kind: AlertKind::Urgent,
                category: Some("chest_pain".into()),
                message_id: None,
                details: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.alerts().list_open(org.id, 10).await.unwrap(),
        vec![alert.clone()]
    );
    assert!(
        store
            .alerts()
            .list_open(other, 10)
            .await
            .unwrap()
            .is_empty(),
        "scoped by organization"
    );
    let audit = store
        .audit()
        .list_for_entity(org.id, "alert", &alert.id.to_string())
        .await
        .unwrap();
    assert_eq!(audit[0].action, "alert.raised");
    // Another organization's patient cannot be alerted about from here.
    let err = store
        .alerts()
        .raise(
            other,
            NewAlert {
                patient_id: p.id,
                kind: AlertKind::Dosing,
                category: None,
                message_id: None,
                details: serde_json::json!({}),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
}

async fn dialog_state_round_trips_per_patient(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let none: Option<serde_json::Value> = store.dialogs().get(org.id, p.id).await.unwrap();
    assert!(none.is_none());
    store
        .dialogs()
        .put(org.id, p.id, &serde_json::json!({"asked": "language"}))
        .await
        .unwrap();
    store
        .dialogs()
        .put(org.id, p.id, &serde_json::json!({"asked": "level"}))
        .await
        .unwrap();
    let got: serde_json::Value = store.dialogs().get(org.id, p.id).await.unwrap().unwrap();
    assert_eq!(got["asked"], "level");
    let other = org_other(store).await;
    let hidden: Option<serde_json::Value> = store.dialogs().get(other, p.id).await.unwrap();
    assert!(hidden.is_none(), "scoped by organization");
}

fn doc(key: &str, body: &str, seed: bool) -> ContentDocument {
    let text = format!(
        "+++\nkind = \"article\"\nkey = \"{key}\"\ncondition = \"asthma\"\nlanguage = \"en\"\nreading_level = \"easy\"\nversion = 1\nreview_state = \"draft\"\ntitle = \"T {key}\"\nseed = {seed}\n+++\n{body}\n"
    );
    ContentDocument::parse(std::path::Path::new("x.md"), &text).unwrap()
}

async fn import_approves_seed_in_demo_mode_and_lists_the_approved_library(store: &Store) {
    let org = org(store, "clinic").await;
    let docs = vec![
        doc("what-it-is", "Asthma is a lung condition.", true),
        doc("medicines", "Use your inhaler.", false),
    ];
    let report = store
        .content()
        .import_documents(org.id, &docs, true)
        .await
        .unwrap();
    assert_eq!(
        (report.new_versions, report.approved),
        (2, 1),
        "only seed content is approved"
    );
    let again = store
        .content()
        .import_documents(org.id, &docs, true)
        .await
        .unwrap();
    assert_eq!(
        (again.new_versions, again.unchanged),
        (0, 2),
        "importing twice changes nothing"
    );

    let approved = store.content().list_approved(org.id).await.unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(
        approved[0].item.topic.as_ref().map(Slug::as_str),
        Some("what-it-is")
    );

    // A new text becomes version 2; once approved, the library shows version 2 only.
    let changed = vec![doc("what-it-is", "Asthma makes the airways narrow.", true)];
    store
        .content()
        .import_documents(org.id, &changed, true)
        .await
        .unwrap();
    let approved = store.content().list_approved(org.id).await.unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].version.version, 2);
    assert!(
        store
            .content()
            .list_approved(org_other(store).await)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn stop_cancels_only_planned_reminders(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let occurrences = store.reminder_occurrences();
    let mut ids = Vec::new();
    for i in 0..3 {
        let o = occurrences
            .insert_if_absent(
                org.id,
                NewReminderOccurrence {
                    schedule_id: None,
                    campaign_id: None,
                    patient_id: p.id,
                    due_at: at("2030-01-01T08:00:00Z") + chrono::Duration::hours(i),
                    idempotency_key: format!("stop-test:{i}"),
                },
            )
            .await
            .unwrap()
            .into_inner();
        ids.push(o.id);
    }
    occurrences
        .set_state(org.id, ids[0], OccurrenceState::Sent)
        .await
        .unwrap();
    assert_eq!(
        occurrences
            .cancel_planned_for_patient(org.id, p.id)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        occurrences
            .get(org.id, ids[0])
            .await
            .unwrap()
            .unwrap()
            .state,
        OccurrenceState::Sent
    );
    assert_eq!(
        occurrences
            .get(org.id, ids[1])
            .await
            .unwrap()
            .unwrap()
            .state,
        OccurrenceState::Cancelled
    );
}
