#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
//! Memory of the web chat hub with 5,000 sessions: idle (nothing buffered), idle with a
//! message buffered, and with a browser connected. Measured as the growth of the process's
//! resident memory, so it includes the allocator's overhead. Its own test binary, so nothing else
//! allocates meanwhile. `cargo test -p careloop-channels --test webchat_memory -- --nocapture`
//! prints the numbers.

use careloop_channels::webchat::{
    ChatMessage, HubConfig, MessageSource, SessionEvent, SigningKey, WebChatHub,
};
use careloop_core::{Language, MessageId, OrganizationId};

const SESSIONS: usize = 5_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "current_thread")]
async fn memory_per_session_with_5000_sessions() {
    let hub = WebChatHub::new(
        SigningKey::generate().unwrap(),
        HubConfig {
            max_sessions: SESSIONS * 2,
            ..HubConfig::default()
        },
    );
    let org = OrganizationId::new();
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|_| hub.issue(org).unwrap().session_id)
        .collect();
    let text = "Keep taking your tablets every morning with breakfast. ".repeat(6);

    let before = resident_bytes();
    for s in &sessions {
        // A browser came and went: the session exists with an empty log.
        drop(hub.subscribe(*s, 0).unwrap());
    }
    let idle = resident_bytes();
    let mut last_seen = Vec::with_capacity(SESSIONS);
    for s in &sessions {
        let message = ChatMessage {
            message_id: MessageId::new(),
            text: text.clone(),
            language: Some(Language::English),
            source: MessageSource::Template,
            buttons: Vec::new(),
        };
        last_seen.push(hub.publish(*s, SessionEvent::Message(message)).unwrap().seq);
    }
    let with_message = resident_bytes();
    let browsers: Vec<_> = sessions
        .iter()
        .zip(&last_seen)
        .map(|(s, seq)| hub.subscribe(*s, *seq).unwrap())
        .collect();
    let connected = resident_bytes();
    assert_eq!(hub.stats().sessions, SESSIONS);
    assert_eq!(hub.stats().subscribers, SESSIONS);

    let per = |a: usize, b: usize| b.saturating_sub(a) / SESSIONS;
    let idle_per = per(before, idle);
    let message_per = per(idle, with_message);
    let browser_per = per(with_message, connected);
    println!(
        "web chat memory, {SESSIONS} sessions: idle {idle_per} B/session, \
         +{message_per} B per buffered {}-byte message, +{browser_per} B per connected browser",
        text.len()
    );
    assert!(idle_per < 1024, "idle session: {idle_per} bytes");
    assert!(
        message_per < text.len() + 512,
        "buffered message: {message_per} bytes"
    );
    assert!(
        browser_per < 8 * 1024,
        "connected browser: {browser_per} bytes"
    );
    drop(browsers);
}
