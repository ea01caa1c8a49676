//! Test 3: a query for organization A never returns organization B's rows, and A cannot write
//! into B's rows either.

use careloop_core::*;
use careloop_store::*;

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(organization_a_never_sees_organization_b);

struct Tenant {
    org: Organization,
    patient: Patient,
    conversation: Conversation,
    message: Message,
    schedule: MedicationSchedule,
    staff: StaffUser,
    identity: ChannelIdentity,
    occurrence: ReminderOccurrence,
    item: ContentItem,
}

async fn tenant(store: &Store, slug_text: &str, chat: i64) -> Tenant {
    let org = org(store, slug_text).await;
    let staff = staff(store, org.id, "same.name@example.org", Role::Admin).await;
    let patient = patient(store, org.id, &format!("Patient of {slug_text}")).await;
    let conversation = store
        .messages()
        .open_or_get_conversation(org.id, patient.id, ChannelKind::Telegram)
        .await
        .unwrap();
    let message = store
        .messages()
        .append_message(
            org.id,
            inbound(conversation.id, "hello", Some(&format!("{slug_text}:1"))),
        )
        .await
        .unwrap()
        .into_inner();
    let schedule = store
        .medication_schedules()
        .create(org.id, new_schedule(patient.id, Some(staff.id)))
        .await
        .unwrap();
    let identity = store
        .channel_identities()
        .link(
            org.id,
            patient.id,
            &ChannelAddress::Telegram(TelegramChatId::new(chat)),
            None,
        )
        .await
        .unwrap();
    let occurrence = store
        .reminder_occurrences()
        .insert_if_absent(
            org.id,
            NewReminderOccurrence {
                schedule_id: Some(schedule.id),
                campaign_id: None,
                patient_id: patient.id,
                due_at: at("2025-03-01T07:00:00Z"),
                idempotency_key: format!("{slug_text}:occ"),
            },
        )
        .await
        .unwrap()
        .into_inner();
    let item = store
        .content()
        .upsert_item(
            org.id,
            &NewContentItem {
                kind: ContentKind::Template,
                key: slug("dose-reminder"),
                condition: None,
                topic: None,
                language: Language::English,
                reading_level: ReadingLevel::Easy,
            },
        )
        .await
        .unwrap();
    store
        .audit()
        .append(NewAuditEntry {
            organization_id: Some(org.id),
            actor: Actor::Staff(staff.id),
            action: "patient.viewed".to_owned(),
            entity_type: "patient".to_owned(),
            entity_id: patient.id.to_string(),
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
    Tenant {
        org,
        patient,
        conversation,
        message,
        schedule,
        staff,
        identity,
        occurrence,
        item,
    }
}

async fn organization_a_never_sees_organization_b(store: &Store) {
    let a = tenant(store, "clinic-a", 1111).await;
    let b = tenant(store, "clinic-b", 2222).await;
    let (oa, ob) = (a.org.id, b.org.id);

    // Patients.
    let a_patients = store.patients().list(oa).await.unwrap();
    assert_eq!(
        a_patients.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![a.patient.id]
    );
    assert_eq!(store.patients().get(oa, b.patient.id).await.unwrap(), None);
    assert!(
        store
            .patients()
            .get(ob, b.patient.id)
            .await
            .unwrap()
            .is_some()
    );
    let prefs = PatientPreferences {
        language: Language::German,
        reading_level: ReadingLevel::Standard,
        timezone: TimeZone::UTC,
        quiet_hours: None,
    };
    assert!(matches!(
        store
            .patients()
            .update_preferences(oa, b.patient.id, &prefs)
            .await,
        Err(StoreError::NotFound { entity: "patient" })
    ));
    assert!(matches!(
        store
            .patients()
            .set_consent(oa, b.patient.id, ConsentState::Withdrawn, &Actor::System)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .patients()
            .set_channel_opt_out(oa, b.patient.id, ChannelKind::Email, true)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .patients()
            .list_conditions(oa, b.patient.id)
            .await
            .is_err()
    );
    let b_patient = store
        .patients()
        .get(ob, b.patient.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b_patient.language,
        Language::Spanish,
        "B's patient must be untouched"
    );
    assert_eq!(b_patient.consent, ConsentState::Granted);

    // Staff: same email in both organizations, each sees only its own.
    assert_eq!(
        store.staff_users().list(oa).await.unwrap(),
        vec![a.staff.clone()]
    );
    assert_eq!(store.staff_users().get(oa, b.staff.id).await.unwrap(), None);
    let a_login = store
        .staff_users()
        .verify_password(oa, &a.staff.email, "correct horse battery staple")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_login.id, a.staff.id);

    // Conversations and messages.
    assert_eq!(
        store
            .messages()
            .get_message(oa, b.message.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .messages()
            .get_message(oa, a.message.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .messages()
            .list_messages(oa, b.conversation.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .messages()
            .list_messages(oa, a.conversation.id, 10)
            .await
            .unwrap(),
        vec![a.message.clone()]
    );
    assert!(
        store
            .messages()
            .list_for_patient(oa, b.patient.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .messages()
            .get_conversation(oa, b.conversation.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .messages()
            .list_conversations(oa, b.patient.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .messages()
            .find_by_idempotency_key(oa, "clinic-b:1")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .messages()
            .append_message(oa, inbound(b.conversation.id, "sneaky", None))
            .await,
        Err(StoreError::NotFound {
            entity: "conversation"
        })
    ));
    assert!(matches!(
        store
            .messages()
            .open_or_get_conversation(oa, b.patient.id, ChannelKind::Email)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .messages()
            .update_message_status(oa, b.message.id, MessageStatus::Failed, None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .messages()
            .get_message(ob, b.message.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        MessageStatus::Received
    );
    assert!(matches!(
        store
            .delivery_attempts()
            .record(
                oa,
                NewDeliveryAttempt {
                    message_id: b.message.id,
                    outcome: DeliveryOutcome::Sent,
                    error: None,
                    provider_message_id: None,
                }
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Schedules and occurrences.
    assert_eq!(
        store
            .medication_schedules()
            .get(oa, b.schedule.id)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .medication_schedules()
            .list_for_patient(oa, b.patient.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.medication_schedules().list_active(oa).await.unwrap(),
        vec![a.schedule.clone()]
    );
    assert!(matches!(
        store
            .medication_schedules()
            .create(oa, new_schedule(b.patient.id, None))
            .await,
        Err(StoreError::NotFound { entity: "patient" })
    ));
    assert!(matches!(
        store
            .medication_schedules()
            .set_active(oa, b.schedule.id, false)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .reminder_occurrences()
            .get(oa, b.occurrence.id)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .reminder_occurrences()
            .set_state(oa, b.occurrence.id, OccurrenceState::Cancelled)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        !store
            .reminder_occurrences()
            .transition_state(
                oa,
                b.occurrence.id,
                OccurrenceState::Planned,
                OccurrenceState::Dispatching
            )
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .reminder_occurrences()
            .insert_if_absent(
                oa,
                NewReminderOccurrence {
                    schedule_id: Some(b.schedule.id),
                    campaign_id: None,
                    patient_id: a.patient.id,
                    due_at: at("2025-03-01T07:00:00Z"),
                    idempotency_key: "cross-tenant".to_owned(),
                }
            )
            .await,
        Err(StoreError::NotFound {
            entity: "medication schedule"
        })
    ));
    assert_eq!(
        store
            .reminder_occurrences()
            .get(ob, b.occurrence.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        OccurrenceState::Planned
    );
    assert!(
        store
            .adherence_events()
            .list_for_patient(oa, b.patient.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .adherence_events()
            .record(
                oa,
                NewAdherenceEvent {
                    patient_id: a.patient.id,
                    occurrence_id: Some(b.occurrence.id),
                    kind: AdherenceKind::Taken,
                    source_channel: None,
                    recorded_at: at("2025-03-01T07:00:00Z"),
                }
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Channel identities: scoped lookups stay in their organization; the cross-organization
    // lookup names the owner.
    let b_address = b.identity.address.clone();
    assert_eq!(
        store
            .channel_identities()
            .find_by_address(oa, &b_address)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .channel_identities()
            .list_for_patient(oa, b.patient.id)
            .await
            .unwrap()
            .is_empty()
    );
    let owners = store
        .channel_identities()
        .find_by_address_any_org(&b_address)
        .await
        .unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].organization_id, ob);
    assert_eq!(owners[0].patient_id, b.patient.id);

    // Content.
    assert_eq!(store.content().get_item(oa, b.item.id).await.unwrap(), None);
    assert_eq!(
        store.content().list_items(oa).await.unwrap(),
        vec![a.item.clone()]
    );
    assert!(matches!(
        store
            .content()
            .add_version(
                oa,
                b.item.id,
                NewContentVersion {
                    title: "x".to_owned(),
                    body: "y".to_owned(),
                    front_matter: serde_json::json!({}),
                    authored_by: None,
                }
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));

    // Audit.
    let a_audit = store.audit().list(oa, 100).await.unwrap();
    assert!(!a_audit.is_empty());
    assert!(
        a_audit.iter().all(|e| e.organization_id == Some(oa)),
        "{a_audit:?}"
    );
    assert!(
        !a_audit
            .iter()
            .any(|e| e.entity_id == b.patient.id.to_string())
    );
    let b_audit = store.audit().list(ob, 100).await.unwrap();
    assert!(b_audit.iter().all(|e| e.organization_id == Some(ob)));
    assert!(
        store
            .audit()
            .list_for_entity(oa, "patient", &b.patient.id.to_string())
            .await
            .unwrap()
            .is_empty()
    );
}
