//! Telegram end to end: the real `careloop` process (embedded default, real SmolLM2) talking to
//! a fake Telegram Bot API server over real HTTP, in webhook mode and in long-polling mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use careloop_channels::telegram::fake::{Failure, FakeTelegram, sticker_update, text_update};
use careloop_core::InboundStatus;
use careloop_core::{ChannelKind, MessageDirection, MessageStatus, TelegramChatId};
use careloop_e2e::Careloop;
use careloop_store::ChannelAddress;
use serde_json::json;

const TOKEN: &str = "123456:TEST-token";
const SECRET: &str = "webhook-secret-0123456789";

fn telegram_env(fake: &FakeTelegram, mode: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CARELOOP_CHANNELS__TELEGRAM__ENABLED", "true".into()),
        ("CARELOOP_CHANNELS__TELEGRAM__TOKEN", TOKEN.into()),
        ("CARELOOP_CHANNELS__TELEGRAM__API_URL", fake.api_url()),
        ("CARELOOP_CHANNELS__TELEGRAM__MODE", mode.into()),
        ("CARELOOP_CHANNELS__TELEGRAM__WEBHOOK_SECRET", SECRET.into()),
        (
            "CARELOOP_CHANNELS__TELEGRAM__WEBHOOK_URL",
            "https://careloop.example/channels/telegram/webhook".into(),
        ),
        (
            "CARELOOP_CHANNELS__TELEGRAM__PER_CHAT_PER_SECOND",
            "20".into(),
        ),
        ("CARELOOP_CHANNELS__TELEGRAM__POLL_TIMEOUT_SECS", "1".into()),
        (
            "CARELOOP_CHANNELS__TELEGRAM__DRAFT_EDIT_INTERVAL_MS",
            "300".into(),
        ),
    ]
}

async fn post_update(
    client: &reqwest::Client,
    app: &Careloop,
    secret: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{}/channels/telegram/webhook", app.base_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        req = req.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    req.send().await.unwrap()
}

/// Posts a text update and waits until the chat shows `before + 1` messages, returning the
/// newest one's text once it stops changing (a streamed draft becomes the final reply).
async fn say(
    client: &reqwest::Client,
    app: &Careloop,
    fake: &FakeTelegram,
    update: serde_json::Value,
    chat: i64,
    timeout: Duration,
) -> String {
    let before = fake.sent_to(chat).len();
    let body = serde_json::to_vec(&update).unwrap();
    let resp = post_update(client, app, Some(SECRET), body).await;
    assert_eq!(resp.status(), 200);
    // Processed (the engine has answered), then sent (the outbox has nothing queued).
    let update_id = update["update_id"].as_u64().unwrap();
    let key = format!("telegram:123456:{update_id}");
    let store = app.store().await.unwrap();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let processed = store
            .inbound_events()
            .find_by_key(&key)
            .await
            .unwrap()
            .is_some_and(|e| e.status != InboundStatus::Pending);
        let pending = store
            .outbox()
            .queued_count(Some(ChannelKind::Telegram))
            .await
            .unwrap();
        if processed && pending == 0 && fake.sent_to(chat).len() > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "update {update_id} not answered; logs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.visible(chat).last().cloned().unwrap()
}

#[tokio::test]
async fn a_patient_talks_to_careloop_on_telegram() {
    let fake = FakeTelegram::start();
    let mut app = Careloop::start(&["serve"], &telegram_env(&fake, "webhook")).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let chat = 777_001;
    let quick = Duration::from_secs(20);

    // setWebhook was called on start with the public URL and the secret.
    assert_eq!(
        fake.webhook(),
        Some((
            "https://careloop.example/channels/telegram/webhook".to_owned(),
            Some(SECRET.to_owned())
        ))
    );

    // Requests that are not Telegram's are refused and change nothing.
    let update = serde_json::to_vec(&text_update(1, chat, "Hello")).unwrap();
    let resp = post_update(&client, &app, None, update.clone()).await;
    assert_eq!(resp.status(), 401);
    let resp = post_update(
        &client,
        &app,
        Some("wrong-secret-0123456789"),
        update.clone(),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = post_update(&client, &app, Some(SECRET), b"{not json".to_vec()).await;
    assert_eq!(resp.status(), 400);
    let resp = post_update(&client, &app, Some(SECRET), br#"{"message":{}}"#.to_vec()).await;
    assert_eq!(resp.status(), 400);
    let big = serde_json::to_vec(&text_update(2, chat, &"x".repeat(100_000))).unwrap();
    let resp = post_update(&client, &app, Some(SECRET), big).await;
    assert_eq!(resp.status(), 413);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.sent_to(chat).is_empty());

    // Onboarding: welcome and language question, then answers by number.
    let welcome = say(
        &client,
        &app,
        &fake,
        text_update(10, chat, "Hello"),
        chat,
        quick,
    )
    .await;
    assert!(welcome.contains("1"), "{welcome}");
    for (i, answer) in ["1", "1", "1", "yes"].iter().enumerate() {
        say(
            &client,
            &app,
            &fake,
            text_update(11 + i as u64, chat, answer),
            chat,
            quick,
        )
        .await;
    }

    // The same update delivered again is processed once.
    let sent_before = fake.sent_to(chat).len();
    let again = serde_json::to_vec(&text_update(14, chat, "yes")).unwrap();
    assert_eq!(
        post_update(&client, &app, Some(SECRET), again)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.sent_to(chat).len(),
        sent_before,
        "a redelivered update was answered again"
    );

    // A question is answered (model or approved article), streamed by edits where the model ran.
    let answer = say(
        &client,
        &app,
        &fake,
        text_update(
            20,
            chat,
            "What should I eat to keep my blood sugar under control?",
        ),
        chat,
        Duration::from_secs(150),
    )
    .await;
    assert!(answer.len() > 40, "{answer}");

    // Stickers get a polite reply; red flags the urgent template, never the model.
    say(&client, &app, &fake, sticker_update(21, chat), chat, quick).await;
    let urgent = say(
        &client,
        &app,
        &fake,
        text_update(22, chat, "I have chest pain and I can't breathe"),
        chat,
        quick,
    )
    .await;
    assert!(urgent.contains("112") || urgent.contains("911"), "{urgent}");

    // What was sent, and why, is recorded.
    let store = app.store().await.unwrap();
    let identity = store
        .channel_identities()
        .find_by_address_any_org(&ChannelAddress::Telegram(TelegramChatId::new(chat)))
        .await
        .unwrap()
        .remove(0);
    let org = identity.organization_id;
    let messages = store
        .messages()
        .list_for_patient(org, identity.patient_id, 100)
        .await
        .unwrap();
    let outbound: Vec<_> = messages
        .iter()
        .filter(|m| m.direction == MessageDirection::Outbound)
        .collect();
    let inbound = messages.len() - outbound.len();
    assert_eq!(inbound, 8, "one inbound message per distinct update");
    assert_eq!(outbound.len(), 8);
    for m in &outbound {
        assert_eq!(m.status, MessageStatus::Sent, "{m:?}");
        assert!(m.provider_message_id.is_some());
        assert!(m.provenance.is_some());
    }
    let answer_row = outbound
        .iter()
        .find(|m| {
            m.provenance
                .as_ref()
                .is_some_and(|p| p.checks.get("stage") == Some(&json!("answer")))
        })
        .expect("the answer is recorded");
    assert!(
        !answer_row
            .provenance
            .as_ref()
            .unwrap()
            .content_version_ids
            .is_empty()
    );

    // Telegram's 429 is waited out; the reply arrives once.
    fake.fail_next(chat, &[Failure::TooManyRequests { retry_after: 1 }]);
    say(
        &client,
        &app,
        &fake,
        text_update(30, chat, "help"),
        chat,
        quick,
    )
    .await;

    // The patient blocks the bot: the reply fails and the channel is opted out.
    fake.fail_next(chat, &[Failure::Blocked]);
    let body = serde_json::to_vec(&text_update(31, chat, "help")).unwrap();
    assert_eq!(
        post_update(&client, &app, Some(SECRET), body)
            .await
            .status(),
        200
    );
    let opted_out = async {
        for _ in 0..100 {
            let p = store
                .patients()
                .get(org, identity.patient_id)
                .await
                .unwrap()
                .unwrap();
            if p.is_opted_out(ChannelKind::Telegram) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
    .await;
    assert!(
        opted_out,
        "blocked bot did not opt out; logs:\n{}",
        app.logs()
    );

    // Opening the chat again (/start) undoes the blocked opt-out.
    say(
        &client,
        &app,
        &fake,
        text_update(40, chat, "/start"),
        chat,
        quick,
    )
    .await;
    let p = store
        .patients()
        .get(org, identity.patient_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!p.is_opted_out(ChannelKind::Telegram));

    // A care team enrols a known patient: the CLI prints a one-time code, the patient opens the
    // deep link (/start <code>), the chat is linked to that patient and asked for consent in
    // the patient's language.
    let enrolled = store
        .patients()
        .create(
            org,
            careloop_store::NewPatient {
                display_name: "Enrolled".parse().unwrap(),
                language: careloop_core::Language::Spanish,
                reading_level: careloop_core::ReadingLevel::Easy,
                timezone: "America/New_York".parse().unwrap(),
                quiet_hours: None,
                consent: careloop_core::ConsentState::Pending,
                tags: Vec::new(),
            },
        )
        .await
        .unwrap();
    let output = std::process::Command::new(careloop_e2e::careloop_bin().unwrap())
        .args([
            "patient",
            "enrol-code",
            "--patient",
            &enrolled.id.to_string(),
            "--bot",
            "careloop_bot",
        ])
        .current_dir(app.dir.path())
        .env("HOME", app.dir.path())
        .env("CARELOOP_LOG__FILTER", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let code = printed
        .lines()
        .find_map(|l| l.strip_prefix("code: "))
        .unwrap()
        .to_owned();
    assert!(printed.contains(&format!("https://t.me/careloop_bot?start={code}")));
    let enrolled_chat = 777_003;
    let welcome = say(
        &client,
        &app,
        &fake,
        text_update(60, enrolled_chat, &format!("/start {code}")),
        enrolled_chat,
        quick,
    )
    .await;
    let linked = store
        .channel_identities()
        .find_by_address(
            org,
            &ChannelAddress::Telegram(TelegramChatId::new(enrolled_chat)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(linked.patient_id, enrolled.id);
    assert!(linked.verified_at.is_some());
    assert!(!welcome.is_empty());
    // The code works once: another chat presenting it becomes a new, separate sender.
    say(
        &client,
        &app,
        &fake,
        text_update(61, 777_004, &format!("/start {code}")),
        777_004,
        quick,
    )
    .await;
    let other = store
        .channel_identities()
        .find_by_address(org, &ChannelAddress::Telegram(TelegramChatId::new(777_004)))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(other.patient_id, enrolled.id);

    // A pressed reminder button is acknowledged (the spinner stops).
    let callback = json!({"update_id": 62, "callback_query": {
        "id": "cb-62", "from": {"id": enrolled_chat, "is_bot": false, "first_name": "P"},
        "chat_instance": "x", "data": "reminder:abc:taken",
        "message": {"message_id": 9, "date": 1_700_000_000,
            "chat": {"id": enrolled_chat, "type": "private", "first_name": "P"}, "text": "Take it"}}});
    let body = serde_json::to_vec(&callback).unwrap();
    assert_eq!(
        post_update(&client, &app, Some(SECRET), body)
            .await
            .status(),
        200
    );
    assert!(
        fake.wait_until(quick, |f| f.callback_answers() == vec!["cb-62".to_owned()])
            .await
    );

    // A medication reminder for the enrolled patient: planned now, the reminders role (running in
    // this process) sweeps it, renders the approved Spanish template with the buttons, and the
    // outbox sends it; pressing "Tomado" records adherence and confirms once.
    store
        .patients()
        .set_consent(
            org,
            enrolled.id,
            careloop_core::ConsentState::Granted,
            &careloop_store::Actor::System,
        )
        .await
        .unwrap();
    let schedule = store
        .medication_schedules()
        .create(
            org,
            careloop_store::NewMedicationSchedule {
                patient_id: enrolled.id,
                medicine_name: "Metformina".parse().unwrap(),
                dose_text: "500 mg con la cena".parse().unwrap(),
                rrule: "FREQ=DAILY;BYHOUR=20;BYMINUTE=0".parse().unwrap(),
                timezone: enrolled.timezone,
                starts_on: chrono::Utc::now().date_naive(),
                ends_on: None,
                quiet_hours_policy: careloop_core::QuietHoursPolicy::Delay,
                channels: vec![ChannelKind::Telegram],
                created_by: None,
            },
        )
        .await
        .unwrap();
    let occurrence = store
        .reminder_occurrences()
        .insert_if_absent(
            org,
            careloop_store::NewReminderOccurrence {
                schedule_id: Some(schedule.id),
                campaign_id: None,
                patient_id: enrolled.id,
                due_at: chrono::Utc::now(),
                idempotency_key: format!("schedule:{}:e2e", schedule.id),
            },
        )
        .await
        .unwrap()
        .into_inner();
    let before = fake.sent_to(enrolled_chat).len();
    let reminded = fake
        .wait_until(Duration::from_secs(30), |f| {
            f.sent_to(enrolled_chat).len() > before
        })
        .await;
    assert!(reminded, "no reminder; logs:\n{}", app.logs());
    let careloop_channels::telegram::fake::Recorded::Sent { text, buttons, .. } =
        fake.sent_to(enrolled_chat).last().cloned().unwrap()
    else {
        unreachable!()
    };
    assert!(
        text.contains("Metformina") && text.contains("500 mg con la cena"),
        "{text}"
    );
    assert_eq!(buttons.len(), 3);
    assert_eq!(buttons[0].0, "Tomado");
    let press = |update_id: u64, data: &str| {
        json!({"update_id": update_id, "callback_query": {
            "id": format!("cb-{update_id}"), "from": {"id": enrolled_chat, "is_bot": false, "first_name": "P"},
            "chat_instance": "x", "data": data,
            "message": {"message_id": 9, "date": 1_700_000_000,
                "chat": {"id": enrolled_chat, "type": "private", "first_name": "P"}, "text": "…"}}})
    };
    let before = fake.sent_to(enrolled_chat).len();
    for update_id in [70, 71] {
        // Pressed twice: recorded and confirmed once.
        let body = serde_json::to_vec(&press(update_id, &buttons[0].1)).unwrap();
        assert_eq!(
            post_update(&client, &app, Some(SECRET), body)
                .await
                .status(),
            200
        );
    }
    let confirmed = fake
        .wait_until(quick, |f| {
            f.sent_to(enrolled_chat).len() > before
                && f.callback_answers().contains(&"cb-71".to_owned())
        })
        .await;
    assert!(confirmed, "no confirmation; logs:\n{}", app.logs());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fake.sent_to(enrolled_chat).len(),
        before + 1,
        "confirmed once"
    );
    let events = store
        .adherence_events()
        .list_for_patient(org, enrolled.id)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, careloop_core::AdherenceKind::Taken);
    assert_eq!(events[0].occurrence_id, Some(occurrence.id));
    assert_eq!(events[0].source_channel, Some(ChannelKind::Telegram));

    // No message text in the logs.
    let logs = app.logs();
    assert!(!logs.contains("blood sugar under control"));
    assert!(!logs.contains("chest pain"));
    assert!(!logs.contains(TOKEN));
}

#[tokio::test]
async fn long_polling_receives_updates_without_a_webhook() {
    let fake = FakeTelegram::start();
    let mut app = Careloop::start(&["serve"], &telegram_env(&fake, "polling")).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    let chat = 777_002;
    fake.push_update(text_update(500, chat, "Hello"));
    let arrived = fake
        .wait_until(Duration::from_secs(20), |f| !f.sent_to(chat).is_empty())
        .await;
    assert!(arrived, "no reply; logs:\n{}", app.logs());
    assert!(fake.calls("deleteWebhook") >= 1);
    // The update is not fetched and answered again on later polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.sent_to(chat).len(), 1);
    // The webhook route is not served in polling mode.
    let resp = reqwest::Client::new()
        .post(format!("{}/channels/telegram/webhook", app.base_url))
        .header("X-Telegram-Bot-Api-Secret-Token", SECRET)
        .body(serde_json::to_vec(&text_update(501, chat, "Hi")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
