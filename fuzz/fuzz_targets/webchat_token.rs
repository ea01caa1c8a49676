//! Web chat session tokens as the browser presents them (`WebChatHub::verify_at`), and session
//! ids (`SessionId::from_str`). Arbitrary strings never panic; the only token that verifies is
//! the one the hub issued (nobody forges an HMAC by fuzzing), and it says what was issued.
#![no_main]

use std::sync::LazyLock;

use careloop_channels::webchat::{
    HubConfig, IssuedSession, SessionId, SigningKey, TokenError, WebChatHub,
};
use careloop_core::OrganizationId;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "a web chat signing secret of 32+ characters";

struct Fixture {
    hub: WebChatHub,
    issued: IssuedSession,
    organization: OrganizationId,
    issued_at: DateTime<Utc>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::from_secret(SECRET).expect("secret is long enough");
    let hub = WebChatHub::new(key, HubConfig::default());
    let organization = OrganizationId::new();
    let issued_at = DateTime::from_timestamp(1_750_000_000, 0).expect("valid timestamp");
    let issued = hub
        .issue_at(organization, issued_at)
        .expect("issue a session");
    Fixture {
        hub,
        issued,
        organization,
        issued_at,
    }
});

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = token.parse::<SessionId>();

    match fixture.hub.verify_at(token, fixture.issued_at) {
        Ok(claims) => {
            assert_eq!(
                claims.session_id, fixture.issued.session_id,
                "forged session id"
            );
            assert_eq!(
                claims.organization_id, fixture.organization,
                "forged organization"
            );
            assert_eq!(
                claims.expires_at, fixture.issued.expires_at,
                "forged expiry"
            );
        }
        Err(_) => {}
    }

    // The issued token with the input spliced in at a position the input picks: it verifies only
    // when it is still the issued token (the signature's hex may change case, nothing else).
    let issued = fixture.issued.token.as_str();
    let Some((&at, insert)) = data.split_first() else {
        return;
    };
    let at = usize::from(at) % (issued.len() + 1);
    let Ok(insert) = std::str::from_utf8(insert) else {
        return;
    };
    let mut spliced = String::with_capacity(issued.len() + insert.len());
    spliced.push_str(&issued[..at]);
    spliced.push_str(insert);
    spliced.push_str(&issued[(at + insert.len()).min(issued.len())..]);
    if fixture.hub.verify_at(&spliced, fixture.issued_at).is_ok() {
        let (payload, signature) = spliced.rsplit_once('.').expect("a verified token has dots");
        let (issued_payload, issued_signature) = issued.rsplit_once('.').expect("dots");
        assert_eq!(payload, issued_payload, "a changed payload verified");
        assert!(
            signature.eq_ignore_ascii_case(issued_signature),
            "a changed signature verified"
        );
    }
    assert!(matches!(
        fixture
            .hub
            .verify_at(issued, fixture.issued_at + chrono::Duration::days(2)),
        Err(TokenError::Expired)
    ));
});
