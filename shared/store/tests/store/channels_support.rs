//! What the channels need from the store: the outbox (claims with leases, settling, holds and
//! release), inbound events (idempotent record, claims, payload dropped when done) and
//! one-time enrolment codes.

use careloop_core::*;
use careloop_store::*;
use chrono::{Duration, Utc};

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(
    the_outbox_claims_each_due_message_once_and_settles_it,
    held_messages_wait_until_released,
    inbound_events_are_recorded_once_and_processed_once,
    enrolment_codes_work_once_before_they_expire
);

async fn queued(
    store: &Store,
    org: OrganizationId,
    p: &Patient,
    body: &str,
    hold: Option<chrono::DateTime<Utc>>,
) -> Message {
    let conv = store
        .messages()
        .open_or_get_conversation(org, p.id, ChannelKind::Telegram)
        .await
        .unwrap();
    store
        .messages()
        .append_message(
            org,
            NewMessage {
                conversation_id: conv.id,
                direction: MessageDirection::Outbound,
                status: MessageStatus::Queued,
                body: body.to_owned(),
                language: Some(Language::English),
                idempotency_key: None,
                provenance: None,
                delivery_meta: Some(serde_json::json!({"purpose": "reminder"})),
                hold_until: hold,
            },
        )
        .await
        .unwrap()
        .into_inner()
}

async fn the_outbox_claims_each_due_message_once_and_settles_it(store: &Store) {
    let org = org(store, "clinic").await;
    let p = patient(store, org.id, "Ana").await;
    let address = ChannelAddress::Telegram(TelegramChatId::new(42));
    store
        .channel_identities()
        .link(org.id, p.id, &address, None)
        .await
        .unwrap();
    let a = queued(store, org.id, &p, "one", None).await;
    let b = queued(store, org.id, &p, "two", None).await;
    let now = Utc::now();
    let lease = Duration::seconds(60);
    let claimed = store
        .outbox()
        .claim_due(now, lease, 10, &[ChannelKind::Telegram])
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|i| i.message.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(claimed[0].identity.as_ref().unwrap().address, address);
    assert_eq!(
        claimed[0].message.delivery_meta,
        Some(serde_json::json!({"purpose": "reminder"}))
    );
    // Leased: neither a second sender nor another channel's sender gets them.
    assert!(
        store
            .outbox()
            .claim_due(now, lease, 10, &[ChannelKind::Telegram])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .outbox()
            .claim_due(
                now + Duration::seconds(120),
                lease,
                10,
                &[ChannelKind::Email]
            )
            .await
            .unwrap()
            .is_empty()
    );
    store
        .outbox()
        .mark_sent(org.id, a.id, Some("1001"), false)
        .await
        .unwrap();
    store
        .outbox()
        .mark_retry(org.id, b.id, now + Duration::seconds(5), "telegram: 429")
        .await
        .unwrap();
    let a2 = store
        .messages()
        .get_message(org.id, a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a2.status, a2.attempts, a2.provider_message_id.as_deref()),
        (MessageStatus::Sent, 1, Some("1001"))
    );
    assert_eq!(
        store
            .outbox()
            .find_by_provider_id(ChannelKind::Telegram, "1001")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(a.id)
    );
    // The retry is due after its backoff, and only then.
    assert!(
        store
            .outbox()
            .claim_due(
                now + Duration::seconds(4),
                lease,
                10,
                &[ChannelKind::Telegram]
            )
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .outbox()
        .claim_due(
            now + Duration::seconds(6),
            lease,
            10,
            &[ChannelKind::Telegram],
        )
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.attempts, 1);
    assert_eq!(
        again[0].message.failure_reason.as_deref(),
        Some("telegram: 429")
    );
    store
        .outbox()
        .mark_failed(org.id, b.id, "gave up", true)
        .await
        .unwrap();
    let b2 = store
        .messages()
        .get_message(org.id, b.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b2.status, b2.attempts), (MessageStatus::Failed, 2));
    assert_eq!(store.outbox().queued_count(None).await.unwrap(), 0);
    // A lease that ran out (the sender died) lets another sender take the message.
    let c = queued(store, org.id, &p, "three", None).await;
    store
        .outbox()
        .claim_due(now, lease, 10, &[ChannelKind::Telegram])
        .await
        .unwrap();
    let taken_over = store
        .outbox()
        .claim_due(
            now + Duration::seconds(61),
            lease,
            10,
            &[ChannelKind::Telegram],
        )
        .await
        .unwrap();
    assert_eq!(
        taken_over.iter().map(|i| i.message.id).collect::<Vec<_>>(),
        vec![c.id]
    );
}

async fn held_messages_wait_until_released(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let p = patient(store, org.id, "Ana").await;
    let now = Utc::now();
    let m = queued(store, org.id, &p, "held", Some(now + Duration::seconds(90))).await;
    let kinds = [ChannelKind::Telegram];
    assert!(
        store
            .outbox()
            .claim_due(now, Duration::seconds(60), 10, &kinds)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store.outbox().release(other, m.id, None).await.unwrap(),
        "scoped by organization"
    );
    let meta = serde_json::json!({"replaces_draft": "77"});
    assert!(
        store
            .outbox()
            .release(org.id, m.id, Some(meta.clone()))
            .await
            .unwrap()
    );
    let claimed = store
        .outbox()
        .claim_due(Utc::now(), Duration::seconds(60), 10, &kinds)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.delivery_meta, Some(meta));
    assert!(claimed[0].identity.is_none(), "no Telegram address linked");
}

async fn inbound_events_are_recorded_once_and_processed_once(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let payload = serde_json::json!({"update_id": 5, "message": {"text": "hi"}});
    let first = store
        .inbound_events()
        .record(
            org.id,
            ChannelKind::Telegram,
            "telegram:1:5",
            payload.clone(),
        )
        .await
        .unwrap();
    let Inserted::New(event) = first else {
        panic!("new")
    };
    assert_eq!(event.payload, Some(payload.clone()));
    let again = store
        .inbound_events()
        .record(
            org.id,
            ChannelKind::Telegram,
            "telegram:1:5",
            payload.clone(),
        )
        .await
        .unwrap();
    assert!(matches!(again, Inserted::Duplicate(e) if e.id == event.id));
    assert!(matches!(
        store
            .inbound_events()
            .record(
                other,
                ChannelKind::Telegram,
                "telegram:1:5",
                payload.clone()
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .inbound_events()
            .record(org.id, ChannelKind::Telegram, "", payload)
            .await
            .is_err()
    );
    let now = Utc::now();
    let claimed = store
        .inbound_events()
        .claim_pending(now, Duration::seconds(300), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store
            .inbound_events()
            .claim_pending(now, Duration::seconds(300), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .inbound_events()
        .mark_failed(event.id, "database busy", Some(now + Duration::seconds(2)))
        .await
        .unwrap();
    let retried = store
        .inbound_events()
        .claim_pending(now + Duration::seconds(3), Duration::seconds(300), 10)
        .await
        .unwrap();
    assert_eq!(retried[0].attempts, 2);
    store
        .inbound_events()
        .mark_processed(event.id)
        .await
        .unwrap();
    let done = store
        .inbound_events()
        .find_by_key("telegram:1:5")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, InboundStatus::Processed);
    assert_eq!(done.payload, None, "message text is not kept twice");
    assert!(done.processed_at.is_some());
    assert_eq!(
        store
            .inbound_events()
            .count(ChannelKind::Telegram, InboundStatus::Processed)
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .inbound_events()
            .claim_pending(now + Duration::seconds(600), Duration::seconds(300), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn enrolment_codes_work_once_before_they_expire(store: &Store) {
    let org = org(store, "clinic").await;
    let other = org_other(store).await;
    let p = patient(store, org.id, "Ana").await;
    let now = Utc::now();
    let (_, code) = store
        .enrolment_codes()
        .create(org.id, p.id, now + Duration::days(7))
        .await
        .unwrap();
    assert_eq!(code.as_str().len(), 32);
    assert!(!format!("{code:?}").contains(code.as_str()));
    assert!(matches!(
        store.enrolment_codes().create(other, p.id, now).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .enrolment_codes()
            .redeem("nonsense!", now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .enrolment_codes()
            .redeem(&code.as_str().to_uppercase(), now)
            .await
            .unwrap(),
        Some((org.id, p.id)),
        "codes are not case-sensitive"
    );
    assert_eq!(
        store
            .enrolment_codes()
            .redeem(code.as_str(), now)
            .await
            .unwrap(),
        None,
        "once"
    );
    let (_, expired) = store
        .enrolment_codes()
        .create(org.id, p.id, now + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .enrolment_codes()
            .redeem(expired.as_str(), now + Duration::seconds(2))
            .await
            .unwrap(),
        None
    );
}
