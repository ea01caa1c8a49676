//! Test 2: every entity reads back equal to what was written, domain types included, and a
//! stored value that no longer parses is `Corrupt`, not a panic.

use std::collections::BTreeMap;

use careloop_core::*;
use careloop_store::*;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    organizations_and_staff,
    patients_preferences_consent_opt_outs_conditions,
    channel_identities,
    content_items_and_versions,
    conversations_messages_and_deliveries,
    schedules_occurrences_campaigns_adherence,
    audit_entries,
    corrupt_rows_are_typed_errors,
);

async fn organizations_and_staff(store: &Store) {
    let org = org(store, "north-clinic").await;
    assert_eq!(org.name, "Clinic north-clinic");
    assert_eq!(org.slug.as_str(), "north-clinic");
    assert_eq!(
        store.organizations().get(org.id).await.unwrap(),
        Some(org.clone())
    );
    assert_eq!(
        store
            .organizations()
            .find_by_slug(&slug("north-clinic"))
            .await
            .unwrap(),
        Some(org.clone())
    );
    assert_eq!(
        store
            .organizations()
            .find_by_slug(&slug("nope"))
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .organizations()
            .create("Again", &slug("north-clinic"))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.organizations().list().await.unwrap(),
        vec![org.clone()]
    );

    let user = staff(store, org.id, "Ana.Perez@Example.ORG", Role::Reviewer).await;
    assert_eq!(
        user.email,
        "Ana.Perez@example.org".parse::<EmailAddress>().unwrap()
    );
    assert_eq!(user.display_name.as_str(), "Dr. Ana Pérez");
    assert_eq!(user.role, Role::Reviewer);
    assert!(user.active);
    assert_eq!(
        store.staff_users().get(org.id, user.id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        store
            .staff_users()
            .find_by_email(org.id, &user.email)
            .await
            .unwrap(),
        Some(user.clone())
    );
    let second = staff(store, org.id, "bob@example.org", Role::Admin).await;
    assert_eq!(
        store.staff_users().list(org.id).await.unwrap(),
        vec![user.clone(), second]
    );
    store
        .staff_users()
        .set_active(org.id, user.id, false)
        .await
        .unwrap();
    assert!(
        !store
            .staff_users()
            .get(org.id, user.id)
            .await
            .unwrap()
            .unwrap()
            .active
    );
}

async fn patients_preferences_consent_opt_outs_conditions(store: &Store) {
    let org = org(store, "clinic").await;
    let created = patient(store, org.id, "María López").await;
    assert_eq!(created.display_name.as_str(), "María López");
    assert_eq!(created.language, Language::Spanish);
    assert_eq!(created.reading_level, ReadingLevel::Easy);
    assert_eq!(
        created.timezone,
        "America/Mexico_City".parse::<TimeZone>().unwrap()
    );
    assert_eq!(
        created.quiet_hours,
        Some("22:00-07:00".parse::<QuietHours>().unwrap())
    );
    assert_eq!(created.consent, ConsentState::Granted);
    assert_eq!(
        created.tags,
        vec!["pilot".to_owned(), "cohort-a".to_owned()]
    );
    assert!(created.opt_outs.is_empty());
    assert_eq!(
        store.patients().get(org.id, created.id).await.unwrap(),
        Some(created.clone())
    );

    let prefs = PatientPreferences {
        language: Language::Arabic,
        reading_level: ReadingLevel::Standard,
        timezone: "Asia/Dubai".parse().unwrap(),
        quiet_hours: None,
    };
    let updated = store
        .patients()
        .update_preferences(org.id, created.id, &prefs)
        .await
        .unwrap();
    assert_eq!(updated.language, Language::Arabic);
    assert_eq!(updated.reading_level, ReadingLevel::Standard);
    assert_eq!(updated.timezone.name(), "Asia/Dubai");
    assert_eq!(updated.quiet_hours, None);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);

    let actor = Actor::Patient(created.id);
    let withdrawn = store
        .patients()
        .set_consent(org.id, created.id, ConsentState::Withdrawn, &actor)
        .await
        .unwrap();
    assert_eq!(withdrawn.consent, ConsentState::Withdrawn);
    assert!(!withdrawn.may_contact_on(ChannelKind::Telegram));
    let audit = store
        .audit()
        .list_for_entity(org.id, "patient", &created.id.to_string())
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, actor);
    assert_eq!(audit[0].details["from"], "granted");
    assert_eq!(audit[0].details["to"], "withdrawn");

    store
        .patients()
        .set_channel_opt_out(org.id, created.id, ChannelKind::Email, true)
        .await
        .unwrap();
    store
        .patients()
        .set_channel_opt_out(org.id, created.id, ChannelKind::Telegram, true)
        .await
        .unwrap();
    let first = store
        .patients()
        .get(org.id, created.id)
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_opted_out(ChannelKind::Email));
    assert!(first.is_opted_out(ChannelKind::Telegram));
    assert!(!first.is_opted_out(ChannelKind::WebChat));
    // Opting out again keeps the original time.
    store
        .patients()
        .set_channel_opt_out(org.id, created.id, ChannelKind::Email, true)
        .await
        .unwrap();
    store
        .patients()
        .set_channel_opt_out(org.id, created.id, ChannelKind::Telegram, false)
        .await
        .unwrap();
    let again = store
        .patients()
        .get(org.id, created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.opt_outs.len(), 1);
    assert_eq!(
        again.opt_outs[0],
        first
            .opt_outs
            .iter()
            .find(|o| o.channel == ChannelKind::Email)
            .copied()
            .unwrap()
    );
    assert_eq!(
        store
            .patients()
            .list_opted_out(org.id, ChannelKind::Email)
            .await
            .unwrap(),
        vec![created.id]
    );
    assert!(
        store
            .patients()
            .list_opted_out(org.id, ChannelKind::Telegram)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.patients().list(org.id).await.unwrap(),
        vec![again.clone()]
    );

    store
        .patients()
        .set_tags(
            org.id,
            created.id,
            &[
                " vip ".to_owned(),
                "vip".to_owned(),
                "diabetes-program".to_owned(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .patients()
            .get(org.id, created.id)
            .await
            .unwrap()
            .unwrap()
            .tags,
        vec!["vip".to_owned(), "diabetes-program".to_owned()]
    );

    let diabetes = store
        .conditions()
        .upsert(&slug("type2_diabetes"), "Type 2 diabetes")
        .await
        .unwrap();
    let hypertension = store
        .conditions()
        .upsert(&slug("hypertension"), "High blood pressure")
        .await
        .unwrap();
    let renamed = store
        .conditions()
        .upsert(&slug("type2_diabetes"), "Type 2 diabetes mellitus")
        .await
        .unwrap();
    assert_eq!(renamed.id, diabetes.id);
    assert_eq!(renamed.name, "Type 2 diabetes mellitus");
    assert_eq!(
        store
            .conditions()
            .find_by_code(&slug("hypertension"))
            .await
            .unwrap(),
        Some(hypertension.clone())
    );
    assert_eq!(
        store.conditions().list().await.unwrap(),
        vec![hypertension.clone(), renamed.clone()]
    );
    store
        .patients()
        .add_condition(org.id, created.id, diabetes.id)
        .await
        .unwrap();
    store
        .patients()
        .add_condition(org.id, created.id, diabetes.id)
        .await
        .unwrap();
    store
        .patients()
        .add_condition(org.id, created.id, hypertension.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .patients()
            .list_conditions(org.id, created.id)
            .await
            .unwrap(),
        vec![hypertension.clone(), renamed]
    );
    store
        .patients()
        .remove_condition(org.id, created.id, hypertension.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .patients()
            .list_conditions(org.id, created.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        store
            .patients()
            .add_condition(org.id, created.id, ConditionId::new())
            .await,
        Err(StoreError::NotFound {
            entity: "condition"
        })
    ));
}

async fn channel_identities(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let tg = ChannelAddress::Telegram("-100123456789".parse().unwrap());
    let email = ChannelAddress::Email("ana@example.org".parse().unwrap());
    let web = ChannelAddress::parse(ChannelKind::WebChat, "sess_9f8e7d").unwrap();
    let verified = at("2025-05-01T12:00:00Z");

    let tg_identity = store
        .channel_identities()
        .link(org.id, p.id, &tg, Some(verified))
        .await
        .unwrap();
    assert_eq!(tg_identity.address, tg);
    assert_eq!(tg_identity.channel(), ChannelKind::Telegram);
    assert_eq!(tg_identity.verified_at, Some(verified));
    let email_identity = store
        .channel_identities()
        .link(org.id, p.id, &email, None)
        .await
        .unwrap();
    let web_identity = store
        .channel_identities()
        .link(org.id, p.id, &web, None)
        .await
        .unwrap();
    assert_eq!(
        format!("{:?}", email_identity.address),
        "ChannelAddress::Email(<redacted>)"
    );

    // Linking again returns the same identity and records verification.
    let relinked = store
        .channel_identities()
        .link(org.id, p.id, &email, Some(verified))
        .await
        .unwrap();
    assert_eq!(relinked.id, email_identity.id);
    assert_eq!(relinked.verified_at, Some(verified));

    assert_eq!(
        store
            .channel_identities()
            .find_by_address(org.id, &tg)
            .await
            .unwrap(),
        Some(tg_identity.clone())
    );
    assert_eq!(
        store
            .channel_identities()
            .find_by_address_any_org(&web)
            .await
            .unwrap(),
        vec![web_identity.clone()]
    );
    let all = store
        .channel_identities()
        .list_for_patient(org.id, p.id)
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![relinked.clone(), tg_identity.clone(), web_identity.clone()]
    );

    // The same address cannot belong to two patients of one organization.
    let other = patient(store, org.id, "Other").await;
    assert!(matches!(
        store
            .channel_identities()
            .link(org.id, other.id, &tg, None)
            .await,
        Err(StoreError::Conflict { .. })
    ));

    store
        .channel_identities()
        .unlink(org.id, web_identity.id)
        .await
        .unwrap();
    assert_eq!(
        store
            .channel_identities()
            .find_by_address(org.id, &web)
            .await
            .unwrap(),
        None
    );
}

async fn content_items_and_versions(store: &Store) {
    let org = org(store, "clinic").await;
    let author = staff(store, org.id, "author@example.org", Role::CareTeam).await;
    let new_item = NewContentItem {
        kind: ContentKind::Article,
        key: slug("foot-care"),
        condition: Some(slug("type2_diabetes")),
        topic: Some(slug("self-care")),
        language: Language::English,
        reading_level: ReadingLevel::Easy,
    };
    let item = store
        .content()
        .upsert_item(org.id, &new_item)
        .await
        .unwrap();
    assert_eq!(item.kind, ContentKind::Article);
    assert_eq!(item.key, slug("foot-care"));
    assert_eq!(item.condition, Some(slug("type2_diabetes")));
    assert_eq!(item.topic, Some(slug("self-care")));
    assert_eq!(
        store.content().get_item(org.id, item.id).await.unwrap(),
        Some(item.clone())
    );

    // Upserting the same slot keeps the id; no-condition is its own slot.
    let again = store
        .content()
        .upsert_item(
            org.id,
            &NewContentItem {
                topic: Some(slug("feet")),
                ..new_item.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.id, item.id);
    assert_eq!(again.topic, Some(slug("feet")));
    let general = NewContentItem {
        condition: None,
        ..new_item.clone()
    };
    let general_item = store.content().upsert_item(org.id, &general).await.unwrap();
    assert_ne!(general_item.id, item.id);
    assert_eq!(general_item.condition, None);
    let general_again = store.content().upsert_item(org.id, &general).await.unwrap();
    assert_eq!(
        general_again.id, general_item.id,
        "a NULL-ish condition must not duplicate the slot"
    );
    assert_eq!(store.content().list_items(org.id).await.unwrap().len(), 2);

    let front_matter = serde_json::json!({
        "sources": [{"title": "ADA Standards of Care", "url": "https://diabetesjournals.org"}],
        "reviewed": false,
    });
    let v1 = store
        .content()
        .add_version(
            org.id,
            item.id,
            NewContentVersion {
                title: "Caring for your feet".to_owned(),
                body: "Check your feet every day.\n\nWear comfortable shoes.".to_owned(),
                front_matter: front_matter.clone(),
                authored_by: Some(author.id),
            },
        )
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.review_state, ReviewState::Draft);
    assert_eq!(v1.front_matter, front_matter);
    assert_eq!(v1.authored_by, Some(author.id));
    assert_eq!(
        v1.body,
        "Check your feet every day.\n\nWear comfortable shoes."
    );
    assert_eq!(
        store.content().get_version(org.id, v1.id).await.unwrap(),
        Some(v1.clone())
    );
    let v2 = store
        .content()
        .add_version(
            org.id,
            item.id,
            NewContentVersion {
                title: "Caring for your feet (2)".to_owned(),
                body: "Look at your feet every day.".to_owned(),
                front_matter: serde_json::json!({}),
                authored_by: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store
            .content()
            .list_versions(org.id, item.id)
            .await
            .unwrap(),
        vec![v1, v2]
    );
}

async fn conversations_messages_and_deliveries(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let conv = store
        .messages()
        .open_or_get_conversation(org.id, p.id, ChannelKind::Telegram)
        .await
        .unwrap();
    assert_eq!(conv.patient_id, p.id);
    assert_eq!(conv.channel, ChannelKind::Telegram);
    let same = store
        .messages()
        .open_or_get_conversation(org.id, p.id, ChannelKind::Telegram)
        .await
        .unwrap();
    assert_eq!(same, conv);
    let email_conv = store
        .messages()
        .open_or_get_conversation(org.id, p.id, ChannelKind::Email)
        .await
        .unwrap();
    assert_ne!(email_conv.id, conv.id);

    let inbound_msg = store
        .messages()
        .append_message(
            org.id,
            inbound(
                conv.id,
                "¿Puedo tomar la pastilla con café?",
                Some("tg:1:1001"),
            ),
        )
        .await
        .unwrap();
    let Inserted::New(inbound_msg) = inbound_msg else {
        panic!("first insert must be new")
    };
    assert_eq!(inbound_msg.body, "¿Puedo tomar la pastilla con café?");
    assert_eq!(inbound_msg.direction, MessageDirection::Inbound);
    assert_eq!(inbound_msg.status, MessageStatus::Received);
    assert_eq!(inbound_msg.channel, ChannelKind::Telegram);
    assert_eq!(inbound_msg.patient_id, p.id);
    assert_eq!(inbound_msg.language, Some(Language::Spanish));
    assert!(
        !format!("{inbound_msg:?}").contains("pastilla"),
        "Debug must redact the body"
    );

    let provenance = Provenance {
        content_version_ids: vec![ContentVersionId::new(), ContentVersionId::new()],
        model_id: Some("qwen2.5-1.5b-instruct-q4".to_owned()),
        prompt_version: Some("reply-v3".to_owned()),
        checks: BTreeMap::from([
            (
                "readability".to_owned(),
                serde_json::json!({"grade": 5.2, "ok": true}),
            ),
            ("triage".to_owned(), serde_json::json!("none")),
        ]),
    };
    let outbound = store
        .messages()
        .append_message(
            org.id,
            NewMessage {
                conversation_id: conv.id,
                direction: MessageDirection::Outbound,
                status: MessageStatus::Queued,
                body: "Sí, puede tomarla con café.".to_owned(),
                language: Some(Language::Spanish),
                idempotency_key: None,
                provenance: Some(provenance.clone()),
                delivery_meta: None,
                hold_until: None,
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outbound.provenance, Some(provenance));
    assert_eq!(outbound.idempotency_key, None);
    assert_eq!(
        store
            .messages()
            .get_message(org.id, outbound.id)
            .await
            .unwrap(),
        Some(outbound.clone())
    );
    assert_eq!(
        store
            .messages()
            .find_by_idempotency_key(org.id, "tg:1:1001")
            .await
            .unwrap(),
        Some(inbound_msg.clone())
    );

    store
        .messages()
        .update_message_status(
            org.id,
            outbound.id,
            MessageStatus::Failed,
            Some("chat not found"),
        )
        .await
        .unwrap();
    let failed = store
        .messages()
        .get_message(org.id, outbound.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.failure_reason.as_deref(), Some("chat not found"));
    assert!(failed.updated_at >= outbound.updated_at);

    let listed = store
        .messages()
        .list_messages(org.id, conv.id, 10)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![inbound_msg.id, outbound.id]
    );
    let last_one = store
        .messages()
        .list_messages(org.id, conv.id, 1)
        .await
        .unwrap();
    assert_eq!(last_one.len(), 1);
    assert_eq!(last_one[0].id, outbound.id);
    assert_eq!(
        store
            .messages()
            .list_for_patient(org.id, p.id, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let bumped = store
        .messages()
        .get_conversation(org.id, conv.id)
        .await
        .unwrap()
        .unwrap();
    assert!(bumped.last_message_at >= conv.last_message_at);
    assert_eq!(bumped.last_message_at, outbound.created_at);
    assert_eq!(
        store
            .messages()
            .list_conversations(org.id, p.id)
            .await
            .unwrap()
            .len(),
        2
    );

    let first = store
        .delivery_attempts()
        .record(
            org.id,
            NewDeliveryAttempt {
                message_id: outbound.id,
                outcome: DeliveryOutcome::TransientFailure,
                error: Some("HTTP 502".to_owned()),
                provider_message_id: None,
            },
        )
        .await
        .unwrap();
    let second = store
        .delivery_attempts()
        .record(
            org.id,
            NewDeliveryAttempt {
                message_id: outbound.id,
                outcome: DeliveryOutcome::Sent,
                error: None,
                provider_message_id: Some("4711".to_owned()),
            },
        )
        .await
        .unwrap();
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_eq!(second.outcome, DeliveryOutcome::Sent);
    assert_eq!(second.provider_message_id.as_deref(), Some("4711"));
    assert_eq!(
        store
            .delivery_attempts()
            .list_for_message(org.id, outbound.id)
            .await
            .unwrap(),
        vec![first, second]
    );
}

async fn schedules_occurrences_campaigns_adherence(store: &Store) {
    let org = org(store, "clinic").await;
    let nurse = staff(store, org.id, "nurse@example.org", Role::CareTeam).await;
    let p = patient(store, org.id, "Ana").await;

    let schedule = store
        .medication_schedules()
        .create(org.id, new_schedule(p.id, Some(nurse.id)))
        .await
        .unwrap();
    let expected = new_schedule(p.id, Some(nurse.id));
    assert_eq!(schedule.medicine_name, expected.medicine_name);
    assert_eq!(schedule.dose_text, expected.dose_text);
    assert_eq!(schedule.rrule, expected.rrule);
    assert_eq!(
        schedule.timezone,
        "Europe/Berlin".parse::<TimeZone>().unwrap()
    );
    assert_eq!(schedule.starts_on, expected.starts_on);
    assert_eq!(schedule.ends_on, expected.ends_on);
    assert_eq!(schedule.quiet_hours_policy, QuietHoursPolicy::Delay);
    assert_eq!(
        schedule.channels,
        vec![ChannelKind::Telegram, ChannelKind::Email]
    );
    assert!(schedule.active);
    assert_eq!(schedule.created_by, Some(nurse.id));
    assert_eq!(
        store
            .medication_schedules()
            .get(org.id, schedule.id)
            .await
            .unwrap(),
        Some(schedule.clone())
    );
    assert_eq!(
        store
            .medication_schedules()
            .list_for_patient(org.id, p.id)
            .await
            .unwrap(),
        vec![schedule.clone()]
    );
    assert_eq!(
        store
            .medication_schedules()
            .list_all_active()
            .await
            .unwrap(),
        vec![schedule.clone()]
    );
    let bad = NewMedicationSchedule {
        ends_on: Some(chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap()),
        ..new_schedule(p.id, None)
    };
    assert!(matches!(
        store.medication_schedules().create(org.id, bad).await,
        Err(StoreError::Invalid(_))
    ));

    let campaign = store
        .campaigns()
        .create(
            org.id,
            NewCampaign {
                name: "Flu shot reminder".to_owned(),
                audience: serde_json::json!({"tags": ["pilot"]}),
                steps: serde_json::json!([{"after_days": 0, "template": "flu-shot"}]),
                created_by: nurse.id,
            },
        )
        .await
        .unwrap();
    assert_eq!(campaign.state, CampaignState::Draft);
    assert_eq!(
        store.campaigns().get(org.id, campaign.id).await.unwrap(),
        Some(campaign.clone())
    );
    let running = store
        .campaigns()
        .set_state(org.id, campaign.id, CampaignState::Running)
        .await
        .unwrap();
    assert_eq!(running.state, CampaignState::Running);
    assert_eq!(running.audience, campaign.audience);
    assert_eq!(store.campaigns().list(org.id).await.unwrap(), vec![running]);

    let due_at = at("2025-03-01T07:00:00Z");
    let occ = store
        .reminder_occurrences()
        .insert_if_absent(
            org.id,
            NewReminderOccurrence {
                schedule_id: Some(schedule.id),
                campaign_id: None,
                patient_id: p.id,
                due_at,
                idempotency_key: format!("schedule:{}:{}", schedule.id, due_at.to_rfc3339()),
            },
        )
        .await
        .unwrap();
    assert!(occ.is_new());
    let occ = occ.into_inner();
    assert_eq!(occ.due_at, due_at);
    assert_eq!(occ.state, OccurrenceState::Planned);
    assert_eq!(occ.schedule_id, Some(schedule.id));
    let campaign_occ = store
        .reminder_occurrences()
        .insert_if_absent(
            org.id,
            NewReminderOccurrence {
                schedule_id: None,
                campaign_id: Some(campaign.id),
                patient_id: p.id,
                due_at: at("2025-03-01T09:30:00.123456789Z"),
                idempotency_key: format!("campaign:{}:0:{}", campaign.id, p.id),
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        campaign_occ.due_at,
        at("2025-03-01T09:30:00.123456Z"),
        "stored at microseconds"
    );
    assert_eq!(
        store
            .reminder_occurrences()
            .get(org.id, occ.id)
            .await
            .unwrap(),
        Some(occ.clone())
    );

    let due = store
        .reminder_occurrences()
        .due(at("2025-03-01T08:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(due, vec![occ.clone()]);
    let due_later = store
        .reminder_occurrences()
        .due(at("2025-03-02T00:00:00Z"), 10)
        .await
        .unwrap();
    assert_eq!(
        due_later.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![occ.id, campaign_occ.id]
    );
    assert_eq!(
        store
            .reminder_occurrences()
            .due(at("2025-03-02T00:00:00Z"), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let occurrences = store.reminder_occurrences();
    assert!(
        occurrences
            .transition_state(
                org.id,
                occ.id,
                OccurrenceState::Planned,
                OccurrenceState::Dispatching
            )
            .await
            .unwrap()
    );
    assert!(
        !occurrences
            .transition_state(
                org.id,
                occ.id,
                OccurrenceState::Planned,
                OccurrenceState::Dispatching
            )
            .await
            .unwrap()
    );
    let conv = store
        .messages()
        .open_or_get_conversation(org.id, p.id, ChannelKind::Telegram)
        .await
        .unwrap();
    let batch = occurrences
        .send_many(vec![BatchSend {
            organization_id: org.id,
            occurrence_id: occ.id,
            from: OccurrenceState::Dispatching,
            message: NewMessage {
                conversation_id: conv.id,
                direction: MessageDirection::Outbound,
                status: MessageStatus::Queued,
                body: "Time for Metformin 500 mg".to_owned(),
                language: Some(Language::English),
                idempotency_key: Some(format!("occurrence:{}", occ.id)),
                provenance: None,
                delivery_meta: None,
                hold_until: None,
            },
            audit: NewAuditEntry {
                organization_id: Some(org.id),
                actor: Actor::System,
                action: "reminder.sent".into(),
                entity_type: "reminder_occurrence".into(),
                entity_id: occ.id.to_string(),
                details: serde_json::json!({}),
            },
        }])
        .await
        .unwrap();
    assert!(batch[0].moved);
    let reminder_id = batch[0].message_id.unwrap();
    let sent = occurrences.get(org.id, occ.id).await.unwrap().unwrap();
    assert_eq!(sent.state, OccurrenceState::Sent);
    assert_eq!(sent.message_id, Some(reminder_id));
    assert_eq!(
        occurrences
            .due(at("2025-03-02T00:00:00Z"), 10)
            .await
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        vec![campaign_occ.id],
        "only planned occurrences are due"
    );
    assert_eq!(
        occurrences
            .list_for_patient(
                org.id,
                p.id,
                at("2025-03-01T00:00:00Z"),
                at("2025-03-01T08:00:00Z")
            )
            .await
            .unwrap(),
        vec![sent.clone()]
    );

    let recorded_at = at("2025-03-01T07:05:00Z");
    let taken = store
        .adherence_events()
        .record(
            org.id,
            NewAdherenceEvent {
                patient_id: p.id,
                occurrence_id: Some(occ.id),
                kind: AdherenceKind::Taken,
                source_channel: Some(ChannelKind::Telegram),
                recorded_at,
            },
        )
        .await
        .unwrap();
    assert_eq!(taken.kind, AdherenceKind::Taken);
    assert_eq!(taken.occurrence_id, Some(occ.id));
    assert_eq!(taken.source_channel, Some(ChannelKind::Telegram));
    assert_eq!(taken.recorded_at, recorded_at);
    let missed = store
        .adherence_events()
        .record(
            org.id,
            NewAdherenceEvent {
                patient_id: p.id,
                occurrence_id: None,
                kind: AdherenceKind::Missed,
                source_channel: None,
                recorded_at: at("2025-03-02T07:05:00Z"),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .adherence_events()
            .list_for_patient(org.id, p.id)
            .await
            .unwrap(),
        vec![taken, missed]
    );

    store
        .medication_schedules()
        .set_active(org.id, schedule.id, false)
        .await
        .unwrap();
    assert!(
        store
            .medication_schedules()
            .list_active(org.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn audit_entries(store: &Store) {
    let org = org(store, "clinic").await;
    let staff_id = StaffUserId::new();
    let first = store
        .audit()
        .append(NewAuditEntry {
            organization_id: Some(org.id),
            actor: Actor::Staff(staff_id),
            action: "patient.exported".to_owned(),
            entity_type: "patient".to_owned(),
            entity_id: "p-1".to_owned(),
            details: serde_json::json!({"format": "csv"}),
        })
        .await
        .unwrap();
    let second = store
        .audit()
        .append(NewAuditEntry {
            organization_id: Some(org.id),
            actor: Actor::System,
            action: "schedule.planned".to_owned(),
            entity_type: "medication_schedule".to_owned(),
            entity_id: "s-1".to_owned(),
            details: serde_json::json!({"occurrences": 14}),
        })
        .await
        .unwrap();
    assert_eq!(first.actor, Actor::Staff(staff_id));
    assert_eq!(first.actor.to_string(), format!("staff:{staff_id}"));
    assert_eq!("system".parse::<Actor>().unwrap(), Actor::System);
    assert!("root".parse::<Actor>().is_err());
    assert_eq!(
        store.audit().list(org.id, 10).await.unwrap(),
        vec![second.clone(), first.clone()]
    );
    assert_eq!(store.audit().list(org.id, 1).await.unwrap(), vec![second]);
    assert_eq!(
        store
            .audit()
            .list_for_entity(org.id, "patient", "p-1")
            .await
            .unwrap(),
        vec![first]
    );
}

async fn corrupt_rows_are_typed_errors(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let stmt = Query::update()
        .table(Alias::new("patients"))
        .value(Alias::new("timezone"), "Mars/Olympus_Mons")
        .and_where(Expr::col(Alias::new("id")).eq(p.id.as_uuid()))
        .to_owned();
    let res = store.connection().execute(&stmt).await.unwrap();
    assert_eq!(res.rows_affected(), 1);
    match store.patients().get(org.id, p.id).await {
        Err(StoreError::Corrupt { table, column }) => {
            assert_eq!((table, column), ("patients", "timezone"));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.patients().list(org.id).await,
        Err(StoreError::Corrupt { .. })
    ));
}
