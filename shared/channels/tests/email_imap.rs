//! The IMAP poller against a real dovecot (installed by `scripts/test-services/mail.sh`),
//! started per test on a free port with its own Maildir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/email/servers.rs"]
mod servers;

use careloop_channels::email::{
    EmailParseError, ImapError, ImapPoller, ImapSettings, MAX_INBOUND_BYTES, parse_inbound,
};
use servers::{ImapServer, free_port};

fn settings(port: u16, user: &str, password: &str) -> ImapSettings {
    serde_json::from_value(serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "user": user,
        "password": password,
        "timeout_secs": 10,
    }))
    .unwrap()
}

fn poller(server: &ImapServer) -> ImapPoller {
    ImapPoller::new(settings(server.port, server.user, server.password)).unwrap()
}

fn mail(n: u32) -> Vec<u8> {
    format!(
        "From: Ana <ana@example.org>\r\nTo: care@care.example\r\nSubject: Reply {n}\r\n\
         Message-ID: <reply-{n}@example.org>\r\nDate: Mon, 3 Jun 2024 10:0{n}:00 +0000\r\n\
         \r\nAnswer number {n}.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn unseen_mail_is_fetched_without_marking_then_marked_seen() {
    let server = ImapServer::start();
    server.deliver_seen("1717400000.M1P1.test", &mail(0));
    server.deliver("1717400001.M2P1.test", &mail(1));
    server.deliver("1717400002.M3P1.test", &mail(2));
    let poller = poller(&server);

    let fetched = poller.fetch_unseen().await.unwrap();

    let ids: Vec<String> = fetched
        .iter()
        .map(|m| parse_inbound(&m.raw).unwrap().message_id)
        .collect();
    assert_eq!(ids, ["reply-1@example.org", "reply-2@example.org"]);
    let parsed = parse_inbound(&fetched[0].raw).unwrap();
    assert_eq!(parsed.text, "Answer number 1.");
    assert!(fetched[0].uid < fetched[1].uid);

    // Fetching marks nothing: until the caller has persisted them and says so, they stay unseen.
    let again = poller.fetch_unseen().await.unwrap();
    assert_eq!(again, fetched);

    let uids: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
    poller.mark_seen(&uids).await.unwrap();
    assert!(poller.fetch_unseen().await.unwrap().is_empty());

    // A new delivery is picked up by the next poll.
    server.deliver("1717400003.M4P1.test", &mail(3));
    let next = poller.fetch_unseen().await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        parse_inbound(&next[0].raw).unwrap().message_id,
        "reply-3@example.org"
    );
    // Nothing to mark is not an error and needs no connection.
    poller.mark_seen(&[]).await.unwrap();
}

#[tokio::test]
async fn a_poll_returns_at_most_max_batch_messages_oldest_first() {
    let server = ImapServer::start();
    for n in 1..=3 {
        server.deliver(&format!("171740000{n}.M{n}P1.test"), &mail(n));
    }
    let mut settings = settings(server.port, server.user, server.password);
    settings.max_batch = 2;
    let poller = ImapPoller::new(settings).unwrap();

    let first = poller.fetch_unseen().await.unwrap();
    assert_eq!(first.len(), 2);
    poller
        .mark_seen(&first.iter().map(|m| m.uid).collect::<Vec<_>>())
        .await
        .unwrap();
    let rest = poller.fetch_unseen().await.unwrap();

    assert_eq!(rest.len(), 1);
    assert_eq!(
        parse_inbound(&rest[0].raw).unwrap().message_id,
        "reply-3@example.org"
    );
}

#[tokio::test]
async fn an_oversized_message_is_cut_just_past_the_limit() {
    let server = ImapServer::start();
    let mut big = mail(1);
    big.extend(std::iter::repeat_n(b'x', MAX_INBOUND_BYTES + 4096));
    big.extend_from_slice(b"\r\n");
    server.deliver("1717400001.M1P1.test", &big);

    let fetched = poller(&server).fetch_unseen().await.unwrap();

    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].raw.len(), MAX_INBOUND_BYTES + 1);
    assert_eq!(
        parse_inbound(&fetched[0].raw),
        Err(EmailParseError::TooLarge {
            size: MAX_INBOUND_BYTES + 1,
            limit: MAX_INBOUND_BYTES
        })
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error() {
    let server = ImapServer::start();
    let poller = ImapPoller::new(settings(server.port, server.user, "wrong")).unwrap();

    let error = poller.fetch_unseen().await.unwrap_err();

    assert!(matches!(error, ImapError::Login(_)), "{error:?}");
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connect_error() {
    let poller = ImapPoller::new(settings(free_port(), "u", "p")).unwrap();

    let error = poller.fetch_unseen().await.unwrap_err();

    assert!(matches!(error, ImapError::Connect(_)), "{error:?}");
}
