//! Email end to end: the real `careloop` process (embedded default, real SmolLM2) receiving mail
//! on its signed inbound webhook and answering through a real SMTP server (aiosmtpd), threaded
//! to the patient's mail; bounces and one-click unsubscribe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../shared/channels/tests/fixtures/email/servers.rs"]
mod servers;

use std::time::Duration;

use careloop_channels::email::{WEBHOOK_SIGNATURE_HEADER, sign_webhook};
use careloop_core::InboundStatus;
use careloop_core::{ChannelKind, EmailAddress, MessageDirection, MessageStatus};
use careloop_e2e::Careloop;
use careloop_store::ChannelAddress;
use mail_parser::MessageParser;

const SECRET: &str = "inbound-mail-secret-0123456789";
const KEY: &str = "unsubscribe-signing-key-0123456789abcdef";

fn email_env(smtp_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("CARELOOP_CHANNELS__EMAIL__ENABLED", "true".into()),
        ("CARELOOP_CHANNELS__EMAIL__WEBHOOK_SECRET", SECRET.into()),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__SMTP_HOST",
            "127.0.0.1".into(),
        ),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__SMTP_PORT",
            smtp_port.to_string(),
        ),
        ("CARELOOP_CHANNELS__EMAIL__SMTP__SMTP_TLS", "none".into()),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__FROM_ADDRESS",
            "care@care.example".into(),
        ),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__FROM_NAME",
            "Riverside Clinic".into(),
        ),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__MESSAGE_ID_DOMAIN",
            "care.example".into(),
        ),
        (
            "CARELOOP_CHANNELS__EMAIL__SMTP__UNSUBSCRIBE_BASE_URL",
            "https://care.example/channels/email/unsubscribe".into(),
        ),
        ("CARELOOP_CHANNELS__EMAIL__SMTP__SIGNING_KEY", KEY.into()),
    ]
}

fn mail(message_id: &str, from: &str, subject: &str, text: &str) -> Vec<u8> {
    format!(
        "From: Pat <{from}>\r\nTo: care@care.example\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

async fn post(client: &reqwest::Client, app: &Careloop, body: Vec<u8>, sign: bool) -> u16 {
    let mut req = client
        .post(format!("{}/channels/email/inbound", app.base_url))
        .header("content-type", "message/rfc822");
    if sign {
        req = req.header(
            WEBHOOK_SIGNATURE_HEADER,
            sign_webhook(SECRET.as_bytes(), &body, chrono::Utc::now()),
        );
    }
    req.body(body).send().await.unwrap().status().as_u16()
}

/// Waits until the mail with this id was processed and the SMTP server holds `count` messages.
async fn wait_answered(
    app: &Careloop,
    smtp: &servers::SmtpServer,
    message_id: &str,
    count: usize,
    timeout: Duration,
) {
    let store = app.store().await.unwrap();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let processed = store
            .inbound_events()
            .find_by_key(&format!("email:{message_id}"))
            .await
            .unwrap()
            .is_some_and(|e| e.status != InboundStatus::Pending);
        let queued = store
            .outbox()
            .queued_count(Some(ChannelKind::Email))
            .await
            .unwrap();
        if processed && queued == 0 && smtp.received().len() >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mail {message_id} not answered; logs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_patient_writes_an_email_and_gets_a_threaded_answer() {
    let smtp = servers::SmtpServer::start();
    let mut app = Careloop::start(&["serve"], &email_env(smtp.port)).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let from = "pat.e2e@example.org";
    let quick = Duration::from_secs(30);

    // Unsigned, forged and malformed posts are refused and store nothing.
    let hello = mail("m1@example.org", from, "Hello", "Hello");
    assert_eq!(post(&client, &app, hello.clone(), false).await, 401);
    let forged = client
        .post(format!("{}/channels/email/inbound", app.base_url))
        .header(
            WEBHOOK_SIGNATURE_HEADER,
            sign_webhook(b"not-the-secret-000000", &hello, chrono::Utc::now()),
        )
        .body(hello.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        post(&client, &app, b"not a mail at all".to_vec(), true).await,
        422
    );
    let no_from =
        b"To: care@care.example\r\nMessage-ID: <x@y>\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
    assert_eq!(post(&client, &app, no_from, true).await, 422);
    let huge = mail("big@example.org", from, "Big", &"a".repeat(1_100_000));
    assert_eq!(post(&client, &app, huge, true).await, 413);

    // A new sender is welcomed; the reply threads to their mail.
    assert_eq!(post(&client, &app, hello.clone(), true).await, 200);
    wait_answered(&app, &smtp, "m1@example.org", 1, quick).await;
    let received = smtp.received();
    let reply = MessageParser::default().parse(&received[0]).unwrap();
    assert_eq!(reply.in_reply_to().as_text(), Some("m1@example.org"));
    assert_eq!(reply.subject(), Some("Re: Hello"));
    assert_eq!(
        reply.from().unwrap().first().unwrap().address(),
        Some("care@care.example")
    );
    assert!(
        reply.body_text(0).unwrap().contains('1'),
        "a numbered language question"
    );
    let unsubscribe = reply
        .header_raw("List-Unsubscribe")
        .unwrap()
        .trim()
        .trim_matches(['<', '>'])
        .to_owned();

    // The same mail posted again (a provider retry) is answered once.
    assert_eq!(post(&client, &app, hello, true).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.received().len(), 1);

    // Onboarding by email, then a question answered from approved content (or the model).
    for (i, answer) in ["1", "1", "1", "yes"].iter().enumerate() {
        let id = format!("m{}@example.org", i + 2);
        let body = mail(&id, from, "Re: Hello", answer);
        assert_eq!(post(&client, &app, body, true).await, 200);
        wait_answered(&app, &smtp, &id, i + 2, quick).await;
    }
    let question = mail(
        "q1@example.org",
        from,
        "Food",
        "What should I eat to keep my blood sugar under control?\r\n\r\nOn Mon, Jun 3, 2024 Riverside Clinic wrote:\r\n> Earlier message",
    );
    assert_eq!(post(&client, &app, question, true).await, 200);
    wait_answered(&app, &smtp, "q1@example.org", 6, Duration::from_secs(150)).await;
    let store = app.store().await.unwrap();
    let identity = store
        .channel_identities()
        .find_by_address_any_org(&ChannelAddress::Email(
            from.parse::<EmailAddress>().unwrap(),
        ))
        .await
        .unwrap()
        .remove(0);
    let org = identity.organization_id;
    let messages = store
        .messages()
        .list_for_patient(org, identity.patient_id, 100)
        .await
        .unwrap();
    let inbound_question = messages
        .iter()
        .find(|m| m.direction == MessageDirection::Inbound && m.body.contains("blood sugar"))
        .unwrap();
    assert!(
        !inbound_question.body.contains("Earlier message"),
        "quoted history is stripped"
    );
    let sent: Vec<_> = messages
        .iter()
        .filter(|m| m.direction == MessageDirection::Outbound)
        .collect();
    assert_eq!(sent.len(), 6);
    assert!(
        sent.iter()
            .all(|m| m.status == MessageStatus::Sent && m.provenance.is_some())
    );

    // An out-of-office is not answered.
    let ooo = format!(
        "From: <{from}>\r\nTo: care@care.example\r\nSubject: Out of office\r\nMessage-ID: <ooo@example.org>\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n"
    );
    assert_eq!(post(&client, &app, ooo.into_bytes(), true).await, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.received().len(), 6);

    // A bounce of our last reply marks it failed and opts the address out of email.
    let last = sent.iter().max_by_key(|m| m.created_at).unwrap();
    let original = last.provider_message_id.clone().unwrap();
    let dsn = format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: care@care.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Message-ID: <dsn1@mx.example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; {from}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original}>\r\nFrom: care@care.example\r\nTo: {from}\r\n\r\n--B--\r\n"
    );
    assert_eq!(post(&client, &app, dsn.into_bytes(), true).await, 200);
    let deadline = std::time::Instant::now() + quick;
    loop {
        let m = store
            .messages()
            .get_message(org, last.id)
            .await
            .unwrap()
            .unwrap();
        if m.status == MessageStatus::Failed {
            assert_eq!(m.failure_reason.as_deref(), Some("bounced"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bounce not applied; logs:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let patient = store
        .patients()
        .get(org, identity.patient_id)
        .await
        .unwrap()
        .unwrap();
    assert!(patient.is_opted_out(ChannelKind::Email));

    // One-click unsubscribe (RFC 8058) works with the link from the mail's header.
    store
        .patients()
        .set_channel_opt_out(org, identity.patient_id, ChannelKind::Email, false)
        .await
        .unwrap();
    let path = unsubscribe
        .strip_prefix("https://care.example")
        .expect("the configured unsubscribe URL");
    let page = client
        .get(format!("{}{path}", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let after_get = store
        .patients()
        .get(org, identity.patient_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !after_get.is_opted_out(ChannelKind::Email),
        "GET does not unsubscribe"
    );
    let one_click = client
        .post(format!("{}{path}", app.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(one_click.status(), 200);
    let patient = store
        .patients()
        .get(org, identity.patient_id)
        .await
        .unwrap()
        .unwrap();
    assert!(patient.is_opted_out(ChannelKind::Email));
    let tampered = client
        .post(format!(
            "{}/channels/email/unsubscribe?token=abc",
            app.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 400);

    let logs = app.logs();
    assert!(!logs.contains(from), "no addresses in the logs");
    assert!(!logs.contains("blood sugar under control"));
}

#[tokio::test]
async fn mail_in_an_imap_mailbox_is_answered_once_and_marked_seen() {
    let smtp = servers::SmtpServer::start();
    let imap = servers::ImapServer::start();
    let mut env = email_env(smtp.port);
    env.extend([
        (
            "CARELOOP_CHANNELS__EMAIL__IMAP__HOST",
            "127.0.0.1".to_owned(),
        ),
        (
            "CARELOOP_CHANNELS__EMAIL__IMAP__PORT",
            imap.port.to_string(),
        ),
        ("CARELOOP_CHANNELS__EMAIL__IMAP__TLS", "none".to_owned()),
        ("CARELOOP_CHANNELS__EMAIL__IMAP__USER", imap.user.to_owned()),
        (
            "CARELOOP_CHANNELS__EMAIL__IMAP__PASSWORD",
            imap.password.to_owned(),
        ),
        ("CARELOOP_CHANNELS__EMAIL__IMAP_POLL_SECS", "1".to_owned()),
    ]);
    let mut app = Careloop::start(&["serve"], &env).unwrap();
    app.wait_for("/readyz", 200, Duration::from_secs(180))
        .await
        .unwrap();
    imap.deliver(
        "1.mail",
        &mail(
            "imap1@example.org",
            "imap.pat@example.org",
            "Hello",
            "Hello",
        ),
    );
    wait_answered(&app, &smtp, "imap1@example.org", 1, Duration::from_secs(30)).await;
    let received = smtp.received();
    let reply = MessageParser::default().parse(&received[0]).unwrap();
    assert_eq!(reply.in_reply_to().as_text(), Some("imap1@example.org"));
    // Seen in the mailbox: later polls do not fetch it again, and nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.received().len(), 1);
    let poller = careloop_channels::email::ImapPoller::new(
        serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1", "port": imap.port, "tls": "none",
            "user": imap.user, "password": imap.password,
        }))
        .unwrap(),
    )
    .unwrap();
    assert!(poller.fetch_unseen().await.unwrap().is_empty());
}
