//! Campaign support on both backends: patient dates, the audience a page at a time, and campaign
//! occurrences in bulk (insert, hold and release, cancel, counts), all scoped by organization.

use careloop_core::*;
use careloop_store::*;
use chrono::NaiveDate;

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    patient_dates_set_replace_list_remove_scoped,
    audience_pages_carry_conditions_dates_and_channels,
    campaign_occurrences_in_bulk,
);

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn patient_dates_set_replace_list_remove_scoped(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let p = patient(store, org.id, "Ana").await;
    let dates = store.patient_dates();
    let discharge = slug("discharge_date");

    assert_eq!(dates.get(org.id, p.id, &discharge).await.unwrap(), None);
    dates
        .set(org.id, p.id, &discharge, date("2026-12-01"), &Actor::System)
        .await
        .unwrap();
    dates
        .set(org.id, p.id, &discharge, date("2026-12-03"), &Actor::System)
        .await
        .unwrap();
    dates
        .set(
            org.id,
            p.id,
            &slug("surgery_date"),
            date("2026-11-20"),
            &Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(
        dates.get(org.id, p.id, &discharge).await.unwrap(),
        Some(date("2026-12-03")),
        "setting again replaces"
    );
    let all = dates.list(org.id, p.id).await.unwrap();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        vec![
            (discharge.clone(), date("2026-12-03")),
            (slug("surgery_date"), date("2026-11-20"))
        ]
    );
    let audit = store.audit().list(org.id, 10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "patient.date_set")
            .count(),
        3
    );

    // Another organization sees nothing and cannot write.
    assert_eq!(dates.get(other, p.id, &discharge).await.unwrap(), None);
    assert!(dates.list(other, p.id).await.unwrap().is_empty());
    assert!(matches!(
        dates
            .set(other, p.id, &discharge, date("2026-01-01"), &Actor::System)
            .await,
        Err(StoreError::NotFound { entity: "patient" })
    ));
    assert!(!dates.remove(other, p.id, &discharge).await.unwrap());

    assert!(dates.remove(org.id, p.id, &discharge).await.unwrap());
    assert!(!dates.remove(org.id, p.id, &discharge).await.unwrap());
    assert_eq!(dates.get(org.id, p.id, &discharge).await.unwrap(), None);
}

async fn audience_pages_carry_conditions_dates_and_channels(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let hf = store
        .conditions()
        .upsert(&slug("heart_failure"), "Heart failure")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for name in ["Ana", "Bea", "Carla"] {
        ids.push(patient(store, org.id, name).await.id);
    }
    patient(store, other, "Dora").await;
    store
        .patients()
        .add_condition(org.id, ids[1], hf.id)
        .await
        .unwrap();
    store
        .patient_dates()
        .set(
            org.id,
            ids[1],
            &slug("discharge_date"),
            date("2026-12-01"),
            &Actor::System,
        )
        .await
        .unwrap();
    store
        .channel_identities()
        .link(
            org.id,
            ids[1],
            &ChannelAddress::Telegram(TelegramChatId::new(77)),
            None,
        )
        .await
        .unwrap();
    store
        .patients()
        .set_channel_opt_out(org.id, ids[1], ChannelKind::Email, true)
        .await
        .unwrap();

    let audience = store.audience();
    let first = audience.page(org.id, None, 2).await.unwrap();
    let rest = audience
        .page(org.id, Some(first[1].patient.id), 2)
        .await
        .unwrap();
    let mut seen: Vec<PatientId> = first.iter().chain(&rest).map(|m| m.patient.id).collect();
    assert_eq!(
        first.len() + rest.len(),
        3,
        "the other organization's patient is not listed"
    );
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(
        audience
            .page(org.id, Some(rest[0].patient.id), 2)
            .await
            .unwrap()
            .is_empty()
    );

    let bea = audience.members(org.id, &[ids[1]]).await.unwrap();
    assert_eq!(bea.len(), 1);
    let bea = &bea[0];
    assert_eq!(bea.conditions, vec![slug("heart_failure")]);
    assert_eq!(
        bea.dates.get(&slug("discharge_date")),
        Some(&date("2026-12-01"))
    );
    assert_eq!(bea.channels, vec![ChannelKind::Telegram]);
    assert!(bea.patient.is_opted_out(ChannelKind::Email));
    let ana = audience.members(org.id, &[ids[0]]).await.unwrap();
    assert!(ana[0].conditions.is_empty() && ana[0].dates.is_empty() && ana[0].channels.is_empty());
    assert!(audience.members(other, &ids).await.unwrap().is_empty());
}

fn row(
    p: PatientId,
    campaign: CampaignId,
    step: u32,
    state: OccurrenceState,
) -> NewCampaignOccurrence {
    NewCampaignOccurrence {
        patient_id: p,
        step,
        state,
        due_at: at("2026-12-01T10:00:00Z"),
        slot_at: Some(at("2026-12-01T10:00:00Z")),
        reason: (state == OccurrenceState::Skipped).then(|| "no_template".to_owned()),
        idempotency_key: format!("campaign:{campaign}:step{step}:patient:{p}"),
    }
}

async fn campaign_occurrences_in_bulk(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let nurse = staff(store, org.id, "nurse@example.org", Role::CareTeam).await;
    let a = patient(store, org.id, "Ana").await.id;
    let b = patient(store, org.id, "Bea").await.id;
    let stranger = patient(store, other, "Dora").await.id;
    let campaign = store
        .campaigns()
        .create(
            org.id,
            NewCampaign {
                name: "Follow-up".into(),
                audience: serde_json::json!({}),
                steps: serde_json::json!([]),
                created_by: nurse.id,
            },
        )
        .await
        .unwrap()
        .id;
    let occ = store.campaign_occurrences();

    let rows = vec![
        row(a, campaign, 0, OccurrenceState::Planned),
        row(a, campaign, 1, OccurrenceState::Planned),
        row(b, campaign, 0, OccurrenceState::Planned),
        row(b, campaign, 1, OccurrenceState::Skipped),
    ];
    assert_eq!(occ.insert_many(org.id, campaign, &rows).await.unwrap(), 4);
    assert_eq!(
        occ.insert_many(org.id, campaign, &rows).await.unwrap(),
        0,
        "the same keys again write nothing"
    );
    // Scoped: a patient or campaign of another organization is refused, nothing written.
    assert!(matches!(
        occ.insert_many(
            org.id,
            campaign,
            &[row(stranger, campaign, 0, OccurrenceState::Planned)]
        )
        .await,
        Err(StoreError::NotFound { entity: "patient" })
    ));
    assert!(matches!(
        occ.insert_many(
            other,
            campaign,
            &[row(stranger, campaign, 0, OccurrenceState::Planned)]
        )
        .await,
        Err(StoreError::NotFound { entity: "campaign" })
    ));
    assert!(
        occ.for_patients(other, campaign, &[a, b])
            .await
            .unwrap()
            .is_empty()
    );

    let stored = occ.for_patients(org.id, campaign, &[a, b]).await.unwrap();
    assert_eq!(stored.len(), 4);
    let a0 = stored
        .iter()
        .find(|o| o.patient_id == a && o.campaign_step == Some(0))
        .unwrap()
        .clone();
    assert_eq!(a0.campaign_id, Some(campaign));
    assert_eq!(a0.slot_at, Some(at("2026-12-01T10:00:00Z")));
    assert_eq!(a0.reason, None);

    // A conditional change: only from the state it was read in, and a planned one only before
    // it is due.
    let moved = CampaignOccurrenceChange {
        state: OccurrenceState::Planned,
        due_at: at("2026-12-02T10:00:00Z"),
        slot_at: Some(at("2026-12-02T10:00:00Z")),
        reason: None,
    };
    let before = at("2026-11-01T00:00:00Z");
    assert!(
        !occ.update(
            org.id,
            a0.id,
            OccurrenceState::Planned,
            at("2026-12-01T11:00:00Z"),
            &moved
        )
        .await
        .unwrap(),
        "already due: the dispatcher's"
    );
    assert!(
        !occ.update(org.id, a0.id, OccurrenceState::Skipped, before, &moved)
            .await
            .unwrap()
    );
    assert!(
        occ.update(org.id, a0.id, OccurrenceState::Planned, before, &moved)
            .await
            .unwrap()
    );

    // Pause holds the planned ones; a page of them; release one; cancel the rest.
    assert_eq!(occ.hold(org.id, campaign).await.unwrap(), 3);
    assert!(
        occ.has_open(org.id, campaign).await.unwrap(),
        "held ones are still to come"
    );
    let held = occ.held_page(org.id, campaign, None, 2).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(held[0].due_at <= held[1].due_at);
    let last = held.last().unwrap();
    let next = occ
        .held_page(org.id, campaign, Some((last.due_at, last.id)), 2)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(
        occ.release(org.id, held[0].id, at("2026-12-05T10:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        !occ.release(org.id, held[0].id, at("2026-12-05T10:00:00Z"))
            .await
            .unwrap()
    );

    let counts = occ.counts(org.id, campaign).await.unwrap();
    let n = |step: u32, state: OccurrenceState, reason: Option<&str>| {
        counts
            .iter()
            .find(|c| c.step == step && c.state == state && c.reason.as_deref() == reason)
            .map_or(0, |c| c.count)
    };
    assert_eq!(
        n(0, OccurrenceState::Planned, None) + n(1, OccurrenceState::Planned, None),
        1
    );
    assert_eq!(
        n(0, OccurrenceState::Cancelled, Some(PAUSED))
            + n(1, OccurrenceState::Cancelled, Some(PAUSED)),
        2
    );
    assert_eq!(n(1, OccurrenceState::Skipped, Some("no_template")), 1);
    assert!(occ.counts(other, campaign).await.unwrap().is_empty());

    // Opt-out of one patient: their planned and held occurrences, not the skipped one.
    let b_open = occ
        .for_patients(org.id, campaign, &[b])
        .await
        .unwrap()
        .iter()
        .filter(|o| o.state != OccurrenceState::Skipped)
        .count() as u64;
    let all = store.reminder_occurrences();
    assert_eq!(all.cancel_planned_for_patient(other, b).await.unwrap(), 0);
    assert_eq!(
        all.cancel_planned_for_patient(org.id, b).await.unwrap(),
        b_open
    );
    assert!(
        occ.for_patients(org.id, campaign, &[b])
            .await
            .unwrap()
            .iter()
            .filter(|o| o.state == OccurrenceState::Cancelled)
            .all(|o| o.reason.as_deref() == Some("opted_out"))
    );
    assert_eq!(
        occ.cancel_open(org.id, campaign, "campaign_cancelled")
            .await
            .unwrap(),
        3 - b_open
    );
    assert!(!occ.has_open(org.id, campaign).await.unwrap());

    // A settled step with its message and audit entry; message counts by status.
    let conv = store
        .messages()
        .open_or_get_conversation(org.id, a, ChannelKind::Telegram)
        .await
        .unwrap();
    let msg = store
        .messages()
        .append_message(
            org.id,
            NewMessage {
                conversation_id: conv.id,
                direction: MessageDirection::Outbound,
                status: MessageStatus::Queued,
                body: "hello".into(),
                language: Some(Language::English),
                idempotency_key: Some("m1".into()),
                provenance: None,
                delivery_meta: None,
                hold_until: None,
            },
        )
        .await
        .unwrap()
        .into_inner();
    let audit = |to: &str| NewAuditEntry {
        organization_id: Some(org.id),
        actor: Actor::System,
        action: format!("campaign_step.{to}"),
        entity_type: "reminder_occurrence".into(),
        entity_id: a0.id.to_string(),
        details: serde_json::json!({}),
    };
    assert!(
        occ.transition_audited(
            org.id,
            a0.id,
            OccurrenceState::Cancelled,
            OccurrenceState::Failed,
            Some("no_channel"),
            audit("failed"),
        )
        .await
        .unwrap()
    );
    assert!(
        !occ.transition_audited(
            org.id,
            a0.id,
            OccurrenceState::Cancelled,
            OccurrenceState::Failed,
            Some("no_channel"),
            audit("failed"),
        )
        .await
        .unwrap()
    );
    assert!(
        store
            .reminder_occurrences()
            .transition_audited(
                org.id,
                a0.id,
                OccurrenceState::Failed,
                OccurrenceState::Sent,
                Some(msg.id),
                audit("sent"),
            )
            .await
            .unwrap()
    );
    assert_eq!(
        occ.message_counts(org.id, campaign).await.unwrap(),
        vec![StepMessageCount {
            step: 0,
            status: MessageStatus::Queued,
            count: 1
        }]
    );
    let entries = store.audit().list(org.id, 20).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action.starts_with("campaign_step."))
            .count(),
        2,
        "an audit entry only for a change that happened"
    );
}
