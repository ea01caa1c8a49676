//! The email channel against a real SMTP server (aiosmtpd, installed by
//! `scripts/test-services/mail.sh`): what arrives is parsed back and checked header by header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/email/servers.rs"]
mod servers;

use careloop_channels::{
    Channel, DeliveryMeta, OutboundMessage, Purpose, SendError,
    email::{EmailChannel, EmailConfigError, EmailSettings, SmtpTls, verify_unsubscribe_token},
};
use careloop_core::{Language, MessageId, OrganizationId, PatientId, TelegramChatId};
use careloop_store::ChannelAddress;
use mail_parser::{Message, MessageParser, MimeHeaders as _};
use secrecy::SecretString;
use servers::{SmtpServer, free_port};

const KEY: &str = "a signing key that is long enough for the tests";

fn settings(port: u16) -> EmailSettings {
    serde_json::from_value(serde_json::json!({
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
        "from_address": "care@care.example",
        "from_name": "Riverside Clinic",
        "message_id_domain": "care.example",
        "unsubscribe_base_url": "https://care.example/email/unsubscribe",
        "signing_key": KEY,
        "command_timeout_secs": 5,
        "send_timeout_secs": 10,
    }))
    .unwrap()
}

fn channel(port: u16) -> EmailChannel {
    EmailChannel::new(settings(port)).unwrap()
}

fn message(
    to: &str,
    body: &str,
    language: Option<Language>,
    meta: DeliveryMeta,
) -> OutboundMessage {
    OutboundMessage {
        message_id: MessageId::new(),
        organization_id: OrganizationId::new(),
        patient_id: PatientId::new(),
        address: ChannelAddress::Email(to.parse().unwrap()),
        body: body.to_owned(),
        language,
        meta,
    }
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::default().parse(raw).unwrap()
}

fn header<'a>(message: &'a Message<'_>, name: &'static str) -> Option<&'a str> {
    message.header_raw(name).map(str::trim)
}

#[tokio::test]
async fn a_reply_arrives_as_text_and_html_threaded_with_one_click_unsubscribe() {
    let server = SmtpServer::start();
    let channel = channel(server.port);
    let outbound = message(
        "ana.perez@example.org",
        "Yes, take it with food.\nA glass of water helps.\n\nWrite back <any time> & we'll answer.",
        Some(Language::English),
        DeliveryMeta {
            purpose: Purpose::Reply,
            subject: Some("Re: My new tablets".to_owned()),
            in_reply_to: Some("CAB12345.abc@mail.gmail.com".to_owned()),
            ..DeliveryMeta::default()
        },
    );

    let sent = channel.send(&outbound).await.unwrap();

    let expected_id = format!("careloop.{}@care.example", outbound.message_id);
    assert_eq!(
        sent.provider_message_id.as_deref(),
        Some(expected_id.as_str())
    );
    assert!(!sent.delivered, "a relay's acceptance is not delivery");
    let received = server.received();
    assert_eq!(received.len(), 1);
    let mail = parse(&received[0]);

    assert_eq!(mail.message_id(), Some(expected_id.as_str()));
    assert_eq!(mail.subject(), Some("Re: My new tablets"));
    let from = mail.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("Riverside Clinic"));
    assert_eq!(from.address(), Some("care@care.example"));
    assert_eq!(
        mail.to().unwrap().first().unwrap().address(),
        Some("ana.perez@example.org")
    );
    assert_eq!(
        mail.in_reply_to().as_text(),
        Some("CAB12345.abc@mail.gmail.com")
    );
    assert_eq!(
        mail.references().as_text(),
        Some("CAB12345.abc@mail.gmail.com")
    );
    assert_eq!(header(&mail, "Content-Language"), Some("en"));
    // A reply is written by the care team, not generated.
    assert_eq!(header(&mail, "Auto-Submitted"), None);

    // multipart/alternative: plain text first, HTML second.
    let root_type = mail.content_type().unwrap();
    assert_eq!(
        (root_type.ctype(), root_type.subtype()),
        ("multipart", Some("alternative"))
    );
    let text = mail.body_text(0).unwrap();
    assert_eq!(
        text.replace("\r\n", "\n").trim_end(),
        "Yes, take it with food.\nA glass of water helps.\n\nWrite back <any time> & we'll answer."
    );
    let html = mail.body_html(0).unwrap().replace("\r\n", "\n");
    assert!(html.contains("<html lang=\"en\" dir=\"ltr\">"), "{html}");
    assert!(
        html.contains(
            "<p>Yes, take it with food.<br>\nA glass of water helps.</p>\n\
             <p>Write back &lt;any time&gt; &amp; we&#39;ll answer.</p>"
        ),
        "{html}"
    );
    // A reply offers no unsubscribe link in its text, only the header.
    assert!(!text.contains("unsubscribe") && !html.contains("unsubscribe"));

    let unsubscribe = header(&mail, "List-Unsubscribe").unwrap();
    let url = url::Url::parse(
        unsubscribe
            .strip_prefix('<')
            .and_then(|u| u.strip_suffix('>'))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        url.as_str().split('?').next(),
        Some("https://care.example/email/unsubscribe")
    );
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(
        verify_unsubscribe_token(KEY.as_bytes(), &token),
        Ok((outbound.organization_id, outbound.patient_id))
    );
    assert_eq!(
        header(&mail, "List-Unsubscribe-Post"),
        Some("List-Unsubscribe=One-Click")
    );
}

#[tokio::test]
async fn an_arabic_reminder_is_right_to_left_with_a_localized_subject_and_marked_automatic() {
    let server = SmtpServer::start();
    let channel = channel(server.port);
    let outbound = message(
        "patient@example.org",
        "حان وقت تناول دوائك.",
        Some(Language::Arabic),
        DeliveryMeta {
            purpose: Purpose::Reminder,
            ..DeliveryMeta::default()
        },
    );

    channel.send(&outbound).await.unwrap();

    let received = server.received();
    let mail = parse(&received[0]);
    assert_eq!(mail.subject(), Some("تذكير بالدواء"));
    assert_eq!(header(&mail, "Auto-Submitted"), Some("auto-generated"));
    assert_eq!(header(&mail, "Content-Language"), Some("ar"));
    assert_eq!(mail.in_reply_to().as_text(), None);
    let html = mail.body_html(0).unwrap().replace("\r\n", "\n");
    assert!(html.contains("<html lang=\"ar\" dir=\"rtl\">"), "{html}");
    assert!(html.contains("<p>حان وقت تناول دوائك.</p>"), "{html}");
    // Reminders need consent, so the text also offers the way out, in Arabic.
    let link = channel
        .unsubscribe_url(outbound.organization_id, outbound.patient_id)
        .to_string();
    assert!(
        html.contains(&format!("<a href=\"{link}\">إيقاف هذه الرسائل</a>")),
        "{html}"
    );
    let text = mail.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        text.contains(&format!("إيقاف هذه الرسائل: {link}")),
        "{text}"
    );
}

#[tokio::test]
async fn default_subjects_follow_the_patient_language() {
    let server = SmtpServer::start();
    let channel = channel(server.port);
    let cases = [
        (Some(Language::English), Purpose::Reply, "Your care team"),
        (None, Purpose::Reply, "Your care team"),
        (
            Some(Language::Spanish),
            Purpose::Reminder,
            "Recordatorio de medicación",
        ),
        (
            Some(Language::French),
            Purpose::Reply,
            "Votre équipe soignante",
        ),
        (
            Some(Language::German),
            Purpose::Campaign,
            "Ihr Behandlungsteam",
        ),
        (
            Some(Language::Portuguese),
            Purpose::Reminder,
            "Lembrete de medicação",
        ),
    ];
    for (language, purpose, _) in cases {
        let meta = DeliveryMeta {
            purpose,
            ..DeliveryMeta::default()
        };
        channel
            .send(&message("p@example.org", "Hola", language, meta))
            .await
            .unwrap();
    }

    let received = server.received();
    assert_eq!(received.len(), cases.len());
    for (raw, (language, purpose, subject)) in received.iter().zip(cases) {
        let mail = parse(raw);
        assert_eq!(mail.subject(), Some(subject), "{language:?}");
        let automatic = header(&mail, "Auto-Submitted");
        assert_eq!(
            automatic.is_some(),
            purpose != Purpose::Reply,
            "{purpose:?}"
        );
        let html = mail.body_html(0).unwrap().replace("\r\n", "\n");
        match language {
            Some(language) => assert!(
                html.contains(&format!("<html lang=\"{}\" dir=\"ltr\">", language.code())),
                "{html}"
            ),
            None => assert!(html.contains("<html>\n"), "{html}"),
        }
    }
}

#[tokio::test]
async fn a_retried_message_carries_the_same_message_id() {
    let server = SmtpServer::start();
    let channel = channel(server.port);
    let outbound = message("p@example.org", "Hello", None, DeliveryMeta::default());

    let first = channel.send(&outbound).await.unwrap();
    let second = channel.send(&outbound).await.unwrap();

    assert_eq!(first, second);
    let ids: Vec<String> = server
        .received()
        .iter()
        .map(|raw| parse(raw).message_id().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn an_unknown_mailbox_is_unreachable() {
    let server = SmtpServer::start();
    let error = channel(server.port)
        .send(&message(
            "gone@example.org",
            "Hi",
            None,
            DeliveryMeta::default(),
        ))
        .await
        .unwrap_err();

    let SendError::Unreachable { reason } = &error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert_eq!(reason, "SMTP 550 5.1.1");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_temporary_refusal_is_transient() {
    let server = SmtpServer::start();
    let error = channel(server.port)
        .send(&message(
            "busy@example.org",
            "Hi",
            None,
            DeliveryMeta::default(),
        ))
        .await
        .unwrap_err();

    assert_eq!(
        error,
        SendError::Transient {
            reason: "SMTP 451 4.3.0".to_owned(),
            retry_after: None
        }
    );
}

#[tokio::test]
async fn a_policy_rejection_is_permanent_not_unreachable() {
    let server = SmtpServer::start();
    let error = channel(server.port)
        .send(&message(
            "refuse@example.org",
            "Hi",
            None,
            DeliveryMeta::default(),
        ))
        .await
        .unwrap_err();

    assert_eq!(
        error,
        SendError::Permanent {
            reason: "SMTP 554 5.7.1".to_owned()
        }
    );
}

#[tokio::test]
async fn a_relay_that_is_down_is_transient() {
    let port = free_port();
    let error = channel(port)
        .send(&message(
            "p@example.org",
            "Hi",
            None,
            DeliveryMeta::default(),
        ))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, SendError::Transient { reason, retry_after: None } if reason == "SMTP relay: connection failure"),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_address_on_another_channel_is_refused_without_connecting() {
    let mut outbound = message("p@example.org", "Hi", None, DeliveryMeta::default());
    outbound.address = ChannelAddress::Telegram(TelegramChatId::new(42));

    let error = channel(free_port()).send(&outbound).await.unwrap_err();

    assert!(matches!(error, SendError::Permanent { .. }), "{error:?}");
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let mut short_key = settings(25);
    short_key.signing_key = SecretString::from("short".to_owned());
    assert!(matches!(
        EmailChannel::new(short_key),
        Err(EmailConfigError::SigningKeyTooShort)
    ));

    let mut relative_url = settings(25);
    relative_url.unsubscribe_base_url = "/email/unsubscribe".to_owned();
    assert!(matches!(
        EmailChannel::new(relative_url),
        Err(EmailConfigError::UnsubscribeUrl)
    ));

    let mut bad_domain = settings(25);
    bad_domain.message_id_domain = "care example>".to_owned();
    assert!(matches!(
        EmailChannel::new(bad_domain),
        Err(EmailConfigError::MessageIdDomain)
    ));

    let mut half_credentials = settings(25);
    half_credentials.smtp_username = Some("careloop".to_owned());
    assert!(matches!(
        EmailChannel::new(half_credentials),
        Err(EmailConfigError::PartialCredentials)
    ));

    let mut tls = settings(465);
    tls.smtp_tls = SmtpTls::Tls;
    assert!(EmailChannel::new(tls).is_ok());
}
