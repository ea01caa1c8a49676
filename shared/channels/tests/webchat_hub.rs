#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web chat hub: signed tokens, resumable event logs, the bounded buffer, idle eviction and
//! the `Channel` implementation.

use std::time::{Duration, Instant};

use careloop_channels::{
    Button, Channel, DeliveryMeta, OutboundMessage, Purpose, SendError,
    webchat::{
        ChatMessage, HubConfig, MessageSource, Preferences, SessionEvent, SessionId, SigningKey,
        TokenError, WebChatHub,
    },
};
use careloop_core::{ChannelKind, Language, MessageId, OrganizationId, PatientId, ReadingLevel};

fn hub(config: HubConfig) -> WebChatHub {
    WebChatHub::new(SigningKey::generate().unwrap(), config)
}

fn session(hub: &WebChatHub) -> SessionId {
    hub.issue(OrganizationId::new()).unwrap().session_id
}

fn message(text: &str) -> SessionEvent {
    SessionEvent::Message(ChatMessage {
        message_id: MessageId::new(),
        text: text.into(),
        language: Some(Language::English),
        source: MessageSource::Template,
        buttons: Vec::new(),
    })
}

fn text_of(event: &SessionEvent) -> String {
    match event {
        SessionEvent::Message(m) => m.text.clone(),
        SessionEvent::Draft { text } | SessionEvent::Error { text } => text.clone(),
        other => other.kind().to_owned(),
    }
}

/// Everything a subscription has ready now, backlog then live, as texts with their numbers.
fn drain(sub: &mut careloop_channels::webchat::Subscription) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = sub
        .backlog
        .drain(..)
        .map(|e| (e.seq, text_of(&e.event)))
        .collect();
    while let Ok(e) = sub.events.try_recv() {
        out.push((e.seq, text_of(&e.event)));
    }
    out
}

#[test]
fn tokens_verify_and_refuse_tampering_expiry_and_garbage() {
    let hub = hub(HubConfig {
        token_ttl: Duration::from_secs(3600),
        ..HubConfig::default()
    });
    let org = OrganizationId::new();
    let issued = hub.issue(org).unwrap();
    let token = issued.token.as_str();
    let claims = hub.verify(token).unwrap();
    assert_eq!(claims.session_id, issued.session_id);
    assert_eq!(claims.organization_id, org);
    assert_eq!(claims.expires_at, issued.expires_at);
    assert!(issued.session_id.to_string().len() >= 32, "128 bits in hex");
    assert!(
        issued
            .session_id
            .to_string()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()),
        "URL-safe"
    );

    // Any changed character of the payload or the signature is refused.
    for (i, c) in token.char_indices() {
        if c == '.' {
            continue;
        }
        let replacement = if c == '0' { '1' } else { '0' };
        let mut tampered = token.to_owned();
        tampered.replace_range(i..i + 1, &replacement.to_string());
        let err = hub.verify(&tampered).unwrap_err();
        assert!(
            matches!(err, TokenError::BadSignature | TokenError::Malformed),
            "position {i}: {err:?}"
        );
    }
    // Another session's signature does not fit this session.
    let other = hub.issue(org).unwrap();
    let (payload, _) = token.rsplit_once('.').unwrap();
    let (_, other_sig) = other.token.as_str().rsplit_once('.').unwrap();
    assert_eq!(
        hub.verify(&format!("{payload}.{other_sig}")),
        Err(TokenError::BadSignature)
    );
    // Another hub's key does not verify it.
    let stranger = WebChatHub::new(SigningKey::generate().unwrap(), HubConfig::default());
    assert_eq!(stranger.verify(token), Err(TokenError::BadSignature));

    // Expired: an hour later it is refused, a second before it is not.
    let expires = issued.expires_at;
    assert!(
        hub.verify_at(token, expires - chrono::Duration::seconds(1))
            .is_ok()
    );
    assert_eq!(hub.verify_at(token, expires), Err(TokenError::Expired));
    let old = hub
        .issue_at(org, chrono::Utc::now() - chrono::Duration::hours(2))
        .unwrap();
    assert_eq!(hub.verify(old.token.as_str()), Err(TokenError::Expired));

    for garbage in [
        "",
        "v1",
        "v1.a.b.c.d",
        "v2.x.y.z.w",
        &"x".repeat(5000),
        &format!("{token}.extra"),
        &token.replace("v1.", "v2."),
    ] {
        assert!(hub.verify(garbage).is_err(), "{garbage}");
    }
    assert!(!format!("{:?}", issued.token).contains(token));
}

#[tokio::test]
async fn a_reconnect_resumes_exactly_after_the_last_event_seen() {
    let hub = hub(HubConfig::default());
    let s = session(&hub);
    let mut first = hub.subscribe(s, 0).unwrap();
    assert!(first.backlog.is_empty() && !first.missed);
    let a = hub.publish(s, message("a")).unwrap();
    let b = hub.publish(s, message("b")).unwrap();
    assert!(a.delivered && b.delivered && b.seq > a.seq);
    assert_eq!(
        drain(&mut first),
        vec![(a.seq, "a".to_owned()), (b.seq, "b".to_owned())]
    );
    drop(first);
    assert!(!hub.is_connected(s));

    // Published while disconnected: kept, not delivered.
    let c = hub.publish(s, message("c")).unwrap();
    assert!(!c.delivered);
    let d = hub.publish(s, message("d")).unwrap();

    // Resuming after `b` gets c and d, then live events, with no gap and no repeat.
    let mut resumed = hub.subscribe(s, b.seq).unwrap();
    assert!(!resumed.missed);
    let e = hub.publish(s, message("e")).unwrap();
    assert!(e.delivered);
    assert_eq!(
        drain(&mut resumed),
        vec![
            (c.seq, "c".to_owned()),
            (d.seq, "d".to_owned()),
            (e.seq, "e".to_owned())
        ]
    );
    // Resuming after the newest event gets nothing old.
    let mut current = hub.subscribe(s, e.seq).unwrap();
    assert!(drain(&mut current).is_empty());
    // A second tab from the start gets everything once.
    let mut all = hub.subscribe(s, 0).unwrap();
    let texts: Vec<String> = drain(&mut all).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["a", "b", "c", "d", "e"]);
}

#[tokio::test]
async fn the_same_message_is_published_once() {
    let hub = hub(HubConfig::default());
    let s = session(&hub);
    let mut sub = hub.subscribe(s, 0).unwrap();
    let event = message("once");
    let first = hub.publish(s, event.clone()).unwrap();
    let again = hub.publish(s, event).unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(drain(&mut sub), vec![(first.seq, "once".to_owned())]);
}

#[tokio::test]
async fn drafts_supersede_each_other_and_a_message_supersedes_them() {
    let hub = hub(HubConfig::default());
    let s = session(&hub);
    let mut live = hub.subscribe(s, 0).unwrap();
    let hello = hub.publish(s, message("hello")).unwrap();
    let typing = hub.publish(s, SessionEvent::Typing).unwrap();
    hub.publish(s, SessionEvent::Draft { text: "Dr".into() })
        .unwrap();
    let draft = hub
        .publish(
            s,
            SessionEvent::Draft {
                text: "Drink water".into(),
            },
        )
        .unwrap();
    // A live browser sees every event.
    assert_eq!(drain(&mut live).len(), 4);
    // A browser that saw only `hello` resumes with the newest draft only.
    let mut mid = hub.subscribe(s, hello.seq).unwrap();
    assert_eq!(drain(&mut mid), vec![(draft.seq, "Drink water".to_owned())]);
    // One that saw the typing notice: the same.
    let mut after_typing = hub.subscribe(s, typing.seq).unwrap();
    assert_eq!(
        drain(&mut after_typing),
        vec![(draft.seq, "Drink water".to_owned())]
    );
    let final_message = hub.publish(s, message("Drink water often.")).unwrap();
    // After the final message, the draft is gone from the log: the message replaces it.
    let mut late = hub.subscribe(s, hello.seq).unwrap();
    assert_eq!(
        drain(&mut late),
        vec![(final_message.seq, "Drink water often.".to_owned())]
    );
    assert!(!late.missed);
    assert_eq!(hub.stats().buffered_events, 2);
}

#[tokio::test]
async fn the_buffer_is_bounded_and_a_gap_is_reported() {
    let hub = hub(HubConfig {
        buffer_events: 3,
        ..HubConfig::default()
    });
    let s = session(&hub);
    let seqs: Vec<u64> = (0..5)
        .map(|i| hub.publish(s, message(&i.to_string())).unwrap().seq)
        .collect();
    hub.publish(s, SessionEvent::Typing).unwrap();
    assert_eq!(
        hub.stats().buffered_events,
        4,
        "3 messages and the typing notice"
    );

    let mut from_start = hub.subscribe(s, 0).unwrap();
    assert!(from_start.missed, "0 and 1 fell out of the buffer");
    let texts: Vec<String> = drain(&mut from_start).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["2", "3", "4", "typing"]);

    let mut just_in_time = hub.subscribe(s, seqs[1]).unwrap();
    assert!(!just_in_time.missed, "everything after 1 is still there");
    assert_eq!(drain(&mut just_in_time).len(), 4);

    let too_late = hub.subscribe(s, seqs[0]).unwrap();
    assert!(too_late.missed);

    // An id from before this log existed (the hub restarted): everything held, and a gap.
    let restarted = WebChatHub::new(SigningKey::generate().unwrap(), HubConfig::default());
    let new = restarted.publish(s, message("new")).unwrap();
    let mut old_browser = restarted.subscribe(s, seqs[4]).unwrap();
    assert!(old_browser.missed);
    assert_eq!(drain(&mut old_browser), vec![(new.seq, "new".to_owned())]);
}

#[tokio::test]
async fn a_browser_that_falls_behind_is_dropped_and_resumes_from_the_log() {
    let hub = hub(HubConfig {
        buffer_events: 500,
        ..HubConfig::default()
    });
    let s = session(&hub);
    let mut slow = hub.subscribe(s, 0).unwrap();
    let seqs: Vec<u64> = (0..200)
        .map(|i| hub.publish(s, message(&i.to_string())).unwrap().seq)
        .collect();
    // It got what fit in its queue, then its stream ended.
    let mut got = Vec::new();
    while let Some(e) = slow.events.recv().await {
        got.push(e.seq);
    }
    assert!(!got.is_empty() && got.len() < 200);
    assert_eq!(got, seqs[..got.len()]);
    let last = *got.last().unwrap();
    let mut resumed = hub.subscribe(s, last).unwrap();
    let rest: Vec<u64> = drain(&mut resumed)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(rest, seqs[got.len()..]);
}

#[tokio::test]
async fn idle_sessions_are_evicted_but_not_connected_or_busy_ones() {
    let hub = hub(HubConfig {
        idle_ttl: Duration::from_secs(60),
        ..HubConfig::default()
    });
    let idle = session(&hub);
    let connected = session(&hub);
    let busy = session(&hub);
    hub.publish(idle, message("x")).unwrap();
    let _browser = hub.subscribe(connected, 0).unwrap();
    let turn = hub.turn_lock(busy).unwrap();
    let _held = turn.lock().await;
    assert_eq!(hub.stats().sessions, 3);

    assert_eq!(hub.evict_idle(), 0, "nothing is idle yet");
    let later = Instant::now() + Duration::from_secs(61);
    assert_eq!(hub.evict_idle_at(later), 1);
    assert_eq!(hub.stats().sessions, 2);
    // The evicted session's token still works: it starts a fresh log.
    let mut back = hub.subscribe(idle, 0).unwrap();
    assert!(drain(&mut back).is_empty());
}

#[test]
fn sessions_are_refused_past_the_limit() {
    let hub = hub(HubConfig {
        max_sessions: 2,
        ..HubConfig::default()
    });
    hub.publish(session(&hub), message("1")).unwrap();
    hub.publish(session(&hub), message("2")).unwrap();
    assert!(hub.publish(session(&hub), message("3")).is_err());
}

#[test]
fn preferences_are_remembered_until_taken() {
    let hub = hub(HubConfig::default());
    let s = session(&hub);
    assert_eq!(hub.take_preferences(s), None);
    hub.remember_preferences(
        s,
        Preferences {
            language: Some(Language::Arabic),
            level: None,
        },
    )
    .unwrap();
    hub.remember_preferences(
        s,
        Preferences {
            language: None,
            level: Some(ReadingLevel::Standard),
        },
    )
    .unwrap();
    assert_eq!(
        hub.take_preferences(s),
        Some(Preferences {
            language: Some(Language::Arabic),
            level: Some(ReadingLevel::Standard),
        })
    );
    assert_eq!(hub.take_preferences(s), None);
}

#[tokio::test]
async fn the_channel_appends_messages_with_buttons_and_reports_delivery() {
    let hub = hub(HubConfig::default());
    assert_eq!(hub.kind(), ChannelKind::WebChat);
    let s = session(&hub);
    let outbound = |id: MessageId| OutboundMessage {
        message_id: id,
        organization_id: OrganizationId::new(),
        patient_id: PatientId::new(),
        address: s.address(),
        body: "Time for your metformin".into(),
        language: Some(Language::English),
        meta: DeliveryMeta {
            purpose: Purpose::Reminder,
            buttons: ["Taken", "Skip", "Snooze"]
                .iter()
                .map(|l| Button {
                    label: (*l).into(),
                    action: format!("reminder:x:{}", l.to_lowercase()),
                })
                .collect(),
            ..DeliveryMeta::default()
        },
    };

    // A session the hub does not hold: try again later.
    let err = hub.send(&outbound(MessageId::new())).await.unwrap_err();
    assert!(matches!(err, SendError::Transient { .. }), "{err:?}");

    let mut browser = hub.subscribe(s, 0).unwrap();
    let id = MessageId::new();
    let sent = hub.send(&outbound(id)).await.unwrap();
    assert!(sent.delivered);
    let event = browser.events.try_recv().unwrap();
    assert_eq!(sent.provider_message_id, Some(event.seq.to_string()));
    let SessionEvent::Message(m) = &*event.event else {
        panic!("not a message: {:?}", event.event)
    };
    assert_eq!(m.message_id, id);
    assert_eq!(m.source, MessageSource::Reminder);
    assert_eq!(m.buttons.len(), 3);
    assert_eq!(m.buttons[0].label, "Taken");
    // The JSON the browser gets.
    let json = serde_json::to_value(&*event.event).unwrap();
    assert_eq!(json["type"], "message");
    assert_eq!(json["source"], "reminder");
    assert_eq!(json["language"], "en");
    assert_eq!(json["buttons"][2]["action"], "reminder:x:snooze");
    // Debug output carries no text.
    assert!(!format!("{:?}", event.event).contains("metformin"));

    // Sent again (an outbox retry): not shown twice.
    let again = hub.send(&outbound(id)).await.unwrap();
    assert_eq!(again.provider_message_id, sent.provider_message_id);
    assert!(browser.events.try_recv().is_err());

    drop(browser);
    let unseen = hub.send(&outbound(MessageId::new())).await.unwrap();
    assert!(!unseen.delivered, "no browser connected");

    let mut wrong = outbound(MessageId::new());
    wrong.address = careloop_store::ChannelAddress::WebChat("not-ours".into());
    assert!(matches!(
        hub.send(&wrong).await,
        Err(SendError::Permanent { .. })
    ));
}
