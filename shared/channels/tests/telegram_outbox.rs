//! The outbox sending through the Telegram adapter to a fake Bot API server over real HTTP, on a
//! real SQLite database: escaping, splitting, buttons, drafts replaced by edits, 429 and 403,
//! opt-out, retries and claims by two senders at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use careloop_channels::{
    Button, Channel, DeliveryMeta, Outbox, OutboxSettings, Purpose,
    outbox::Settled,
    telegram::{
        TelegramChannel, TelegramConfig,
        fake::{Failure, FakeTelegram, Recorded},
    },
};
use careloop_core::{
    ChannelKind, ConsentState, DeliveryOutcome, Language, MessageDirection, MessageId,
    MessageStatus, OrganizationId, ReadingLevel, TelegramChatId,
};
use careloop_store::{ChannelAddress, NewMessage, NewPatient, Patient, Store};

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    org: OrganizationId,
    fake: FakeTelegram,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let org = store
        .organizations()
        .create("Clinic", &"clinic".parse().unwrap())
        .await
        .unwrap()
        .id;
    World {
        _dir: dir,
        store,
        org,
        fake: FakeTelegram::start(),
    }
}

impl World {
    fn channel(&self, per_chat: u32) -> TelegramChannel {
        TelegramChannel::new(&TelegramConfig {
            token: "123456:TEST-token".into(),
            api_url: Some(self.fake.api_url().parse().unwrap()),
            per_chat_per_second: per_chat,
            per_bot_per_second: 1000,
        })
        .unwrap()
    }

    fn outbox(&self, channel: &TelegramChannel) -> Outbox {
        let channels: Vec<Arc<dyn Channel>> = vec![Arc::new(channel.clone())];
        Outbox::new(
            self.store.clone(),
            OutboxSettings {
                backoff_base: Duration::from_millis(200),
                ..OutboxSettings::default()
            },
            channels,
        )
    }

    async fn patient(&self, chat: i64) -> Patient {
        let p = self
            .store
            .patients()
            .create(
                self.org,
                NewPatient {
                    display_name: "Pat".parse().unwrap(),
                    language: Language::English,
                    reading_level: ReadingLevel::Easy,
                    timezone: "Europe/Berlin".parse().unwrap(),
                    quiet_hours: None,
                    consent: ConsentState::Granted,
                    tags: Vec::new(),
                },
            )
            .await
            .unwrap();
        self.store
            .channel_identities()
            .link(
                self.org,
                p.id,
                &ChannelAddress::Telegram(TelegramChatId::new(chat)),
                None,
            )
            .await
            .unwrap();
        p
    }

    async fn queue(&self, patient: &Patient, body: &str, meta: DeliveryMeta) -> MessageId {
        let conversation = self
            .store
            .messages()
            .open_or_get_conversation(self.org, patient.id, ChannelKind::Telegram)
            .await
            .unwrap();
        self.store
            .messages()
            .append_message(
                self.org,
                NewMessage {
                    conversation_id: conversation.id,
                    direction: MessageDirection::Outbound,
                    status: MessageStatus::Queued,
                    body: body.to_owned(),
                    language: Some(Language::English),
                    idempotency_key: None,
                    provenance: None,
                    delivery_meta: Some(serde_json::to_value(meta).unwrap()),
                    hold_until: None,
                },
            )
            .await
            .unwrap()
            .into_inner()
            .id
    }

    async fn status(&self, id: MessageId) -> (MessageStatus, Option<String>, u32) {
        let m = self
            .store
            .messages()
            .get_message(self.org, id)
            .await
            .unwrap()
            .unwrap();
        (m.status, m.failure_reason, m.attempts)
    }
}

fn reminder() -> DeliveryMeta {
    DeliveryMeta {
        purpose: Purpose::Reminder,
        buttons: vec![
            Button {
                label: "Taken".into(),
                action: "reminder:x:taken".into(),
            },
            Button {
                label: "Skip".into(),
                action: "reminder:x:skip".into(),
            },
        ],
        ..DeliveryMeta::default()
    }
}

#[tokio::test]
async fn sends_escaped_text_with_buttons_and_records_the_attempt() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(42).await;
    let id = w
        .queue(&p, "Take *1.5* tablets (metformin) - now!", reminder())
        .await;
    let outcomes = w.outbox(&channel).drain_once().await.unwrap();
    assert_eq!(outcomes, vec![Settled::Sent]);
    let sent = w.fake.sent_to(42);
    assert_eq!(sent.len(), 1);
    let Recorded::Sent {
        text,
        parse_mode,
        buttons,
        message_id,
        ..
    } = &sent[0]
    else {
        panic!("not a send")
    };
    assert_eq!(text, r"Take \*1\.5\* tablets \(metformin\) \- now\!");
    assert_eq!(parse_mode.as_deref(), Some("MarkdownV2"));
    assert_eq!(
        buttons,
        &vec![
            ("Taken".to_owned(), "reminder:x:taken".to_owned()),
            ("Skip".to_owned(), "reminder:x:skip".to_owned())
        ]
    );
    let (status, reason, attempts) = w.status(id).await;
    assert_eq!((status, reason, attempts), (MessageStatus::Sent, None, 1));
    let m = w
        .store
        .messages()
        .get_message(w.org, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.provider_message_id, Some(message_id.to_string()));
    let tries = w
        .store
        .delivery_attempts()
        .list_for_message(w.org, id)
        .await
        .unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].outcome, DeliveryOutcome::Sent);
    // Nothing is left to send: a second round sends nothing more.
    assert!(w.outbox(&channel).drain_once().await.unwrap().is_empty());
    assert_eq!(w.fake.sent_to(42).len(), 1);
}

#[tokio::test]
async fn long_text_is_split_with_buttons_on_the_last_part() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(43).await;
    let paragraph = "Walking every day helps your heart. ".repeat(50);
    let body = [paragraph.as_str(); 5].join("\n\n");
    assert!(body.chars().count() > 8192);
    w.queue(&p, &body, reminder()).await;
    w.outbox(&channel).drain_once().await.unwrap();
    let sent = w.fake.sent_to(43);
    assert_eq!(
        sent.len(),
        3,
        "{} characters in 4096-character parts",
        body.len()
    );
    for (i, part) in sent.iter().enumerate() {
        let Recorded::Sent { buttons, .. } = part else {
            unreachable!()
        };
        assert_eq!(
            buttons.is_empty(),
            i < 2,
            "buttons only under the last part"
        );
    }
    let words: usize = sent
        .iter()
        .map(|r| r.text().split_whitespace().count())
        .sum();
    assert_eq!(words, body.split_whitespace().count());
}

#[tokio::test]
async fn a_429_waits_retry_after_then_sends_once() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(44).await;
    w.fake
        .fail_next(44, &[Failure::TooManyRequests { retry_after: 1 }]);
    let id = w.queue(&p, "Time for your inhaler.", reminder()).await;
    let outbox = w.outbox(&channel);
    assert_eq!(outbox.drain_once().await.unwrap(), vec![Settled::Retry]);
    let m = w
        .store
        .messages()
        .get_message(w.org, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(m.attempts, 1);
    let wait = m.next_attempt_at.unwrap() - m.updated_at;
    assert!(
        wait >= chrono::Duration::milliseconds(990),
        "waits retry_after: {wait}"
    );
    // Not due yet: nothing happens.
    assert!(outbox.drain_once().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(outbox.drain_once().await.unwrap(), vec![Settled::Sent]);
    assert_eq!(w.fake.sent_to(44).len(), 1);
    let tries = w
        .store
        .delivery_attempts()
        .list_for_message(w.org, id)
        .await
        .unwrap();
    let outcomes: Vec<_> = tries.iter().map(|t| t.outcome).collect();
    assert_eq!(
        outcomes,
        vec![DeliveryOutcome::TransientFailure, DeliveryOutcome::Sent]
    );
}

#[tokio::test]
async fn blocked_bot_opts_the_channel_out_and_stops_later_messages() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(45).await;
    w.fake.fail_next(45, &[Failure::Blocked]);
    let first = w.queue(&p, "Reminder one.", reminder()).await;
    let outbox = w.outbox(&channel);
    assert!(matches!(
        outbox.drain_once().await.unwrap().as_slice(),
        [Settled::Failed(_)]
    ));
    let (status, reason, _) = w.status(first).await;
    assert_eq!(status, MessageStatus::Failed);
    assert!(reason.unwrap().contains("blocked"));
    let patient = w.store.patients().get(w.org, p.id).await.unwrap().unwrap();
    assert!(patient.is_opted_out(ChannelKind::Telegram));
    // The next message is not even tried.
    let second = w.queue(&p, "Reminder two.", reminder()).await;
    outbox.drain_once().await.unwrap();
    let (status, reason, attempts) = w.status(second).await;
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(reason.as_deref(), Some("patient opted out of this channel"));
    assert_eq!(attempts, 0);
    assert_eq!(w.fake.calls("sendMessage"), 1);
}

#[tokio::test]
async fn withdrawn_consent_stops_reminders_but_not_replies() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(46).await;
    w.store
        .patients()
        .set_consent(
            w.org,
            p.id,
            ConsentState::Withdrawn,
            &careloop_store::Actor::System,
        )
        .await
        .unwrap();
    let reminder_id = w.queue(&p, "Take your tablet.", reminder()).await;
    let reply_id = w
        .queue(
            &p,
            "You will get no more messages.",
            DeliveryMeta::default(),
        )
        .await;
    w.outbox(&channel).drain_once().await.unwrap();
    assert_eq!(w.status(reminder_id).await.0, MessageStatus::Failed);
    assert_eq!(w.status(reply_id).await.0, MessageStatus::Sent);
    let texts: Vec<_> = w
        .fake
        .sent_to(46)
        .iter()
        .map(|r| r.text().to_owned())
        .collect();
    assert_eq!(texts, vec![r"You will get no more messages\."]);
}

#[tokio::test]
async fn a_draft_is_edited_into_the_final_reply() {
    let w = world().await;
    let channel = w.channel(100);
    let p = w.patient(47).await;
    let draft = channel
        .send_draft(TelegramChatId::new(47), "Metformin lowers …")
        .await
        .unwrap();
    channel
        .edit_draft(TelegramChatId::new(47), draft, "Metformin lowers blood …")
        .await
        .unwrap();
    let meta = DeliveryMeta {
        replaces_draft: Some(draft.to_string()),
        ..DeliveryMeta::default()
    };
    w.queue(&p, "Metformin lowers blood sugar.", meta).await;
    w.outbox(&channel).drain_once().await.unwrap();
    assert_eq!(w.fake.sent_to(47).len(), 1, "no second message");
    assert_eq!(w.fake.visible(47), vec![r"Metformin lowers blood sugar\."]);
}

#[tokio::test]
async fn per_chat_rate_limit_spaces_messages() {
    let w = world().await;
    let channel = w.channel(2);
    let p = w.patient(48).await;
    for i in 0..4 {
        w.queue(&p, &format!("Message {i}."), DeliveryMeta::default())
            .await;
    }
    let started = std::time::Instant::now();
    w.outbox(&channel).drain_once().await.unwrap();
    // 2 a second, bursts of 1: four messages take at least 1.5 s.
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.fake.sent_to(48).len(), 4);
}

#[tokio::test]
async fn two_senders_never_send_a_message_twice() {
    let w = world().await;
    let channel = w.channel(1000);
    let mut ids = Vec::new();
    for chat in 0..10 {
        let p = w.patient(100 + chat).await;
        for i in 0..5 {
            ids.push(
                w.queue(&p, &format!("Dose {i}."), DeliveryMeta::default())
                    .await,
            );
        }
    }
    let a = w.outbox(&channel);
    let b = w.outbox(&channel);
    let (ra, rb) = tokio::join!(
        async {
            let mut n = 0;
            for _ in 0..5 {
                n += a.drain_once().await.unwrap().len();
            }
            n
        },
        async {
            let mut n = 0;
            for _ in 0..5 {
                n += b.drain_once().await.unwrap().len();
            }
            n
        }
    );
    assert_eq!(ra + rb, 50);
    assert_eq!(w.fake.calls("sendMessage"), 50);
    for id in ids {
        assert_eq!(w.status(id).await.0, MessageStatus::Sent);
    }
}
