//! Signatures on inbound-mail webhook posts (`X-Careloop-Signature: t=…,v1=…`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use careloop_channels::email::{
    SignatureError, WEBHOOK_TOLERANCE_SECS, parse_inbound, sign_webhook, verify_webhook_signature,
};
use chrono::{DateTime, Duration, Utc};

const SECRET: &[u8] = b"webhook secret shared with the mail provider";
const BODY: &[u8] =
    b"From: ana@example.org\r\nMessage-ID: <w1@example.org>\r\nSubject: Re: hi\r\n\r\nDone.\r\n";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_717_405_200, 0).unwrap()
}

#[test]
fn a_signed_post_verifies_and_its_body_parses() {
    let header = sign_webhook(SECRET, BODY, now());

    assert_eq!(
        verify_webhook_signature(SECRET, &header, BODY, now()),
        Ok(())
    );
    assert_eq!(parse_inbound(BODY).unwrap().text, "Done.");
}

#[test]
fn timestamps_within_the_tolerance_pass_either_way() {
    let header = sign_webhook(SECRET, BODY, now());
    let tolerance = Duration::seconds(WEBHOOK_TOLERANCE_SECS);

    assert_eq!(
        verify_webhook_signature(SECRET, &header, BODY, now() + tolerance),
        Ok(())
    );
    assert_eq!(
        verify_webhook_signature(SECRET, &header, BODY, now() - tolerance),
        Ok(())
    );
}

#[test]
fn a_wrong_secret_or_an_altered_body_is_a_mismatch() {
    let header = sign_webhook(SECRET, BODY, now());

    assert_eq!(
        verify_webhook_signature(b"another secret", &header, BODY, now()),
        Err(SignatureError::Mismatch)
    );
    let mut altered = BODY.to_vec();
    altered.extend_from_slice(b"P.S. injected\r\n");
    assert_eq!(
        verify_webhook_signature(SECRET, &header, &altered, now()),
        Err(SignatureError::Mismatch)
    );
    // The timestamp is inside the MAC: moving it breaks the signature.
    let moved = header.replace("t=1717405200", "t=1717405201");
    assert_eq!(
        verify_webhook_signature(SECRET, &moved, BODY, now()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn a_stale_or_future_timestamp_is_refused() {
    let header = sign_webhook(SECRET, BODY, now());
    let late = now() + Duration::seconds(WEBHOOK_TOLERANCE_SECS + 1);
    let early = now() - Duration::seconds(WEBHOOK_TOLERANCE_SECS + 60);

    assert_eq!(
        verify_webhook_signature(SECRET, &header, BODY, late),
        Err(SignatureError::Stale {
            age_secs: WEBHOOK_TOLERANCE_SECS + 1
        })
    );
    assert_eq!(
        verify_webhook_signature(SECRET, &header, BODY, early),
        Err(SignatureError::Stale {
            age_secs: -(WEBHOOK_TOLERANCE_SECS + 60)
        })
    );
}

#[test]
fn any_matching_v1_passes_while_a_secret_is_rotated() {
    let old = sign_webhook(b"old secret", BODY, now());
    let new = sign_webhook(SECRET, BODY, now());
    let v1 = |header: &str| header.split_once(',').unwrap().1.to_owned();
    let both = format!(
        "t={},{},{},v2=ignored",
        now().timestamp(),
        v1(&old),
        v1(&new)
    );

    assert_eq!(verify_webhook_signature(SECRET, &both, BODY, now()), Ok(()));
    assert_eq!(
        verify_webhook_signature(b"old secret", &both, BODY, now()),
        Ok(())
    );
}

#[test]
fn malformed_headers_say_what_is_wrong() {
    let good_v1 = sign_webhook(SECRET, BODY, now())
        .split_once(',')
        .unwrap()
        .1
        .to_owned();
    let cases = [
        ("", SignatureError::Malformed("expected key=value pairs")),
        (
            "garbage",
            SignatureError::Malformed("expected key=value pairs"),
        ),
        (good_v1.as_str(), SignatureError::Malformed("no t")),
        ("t=1717405200", SignatureError::Malformed("no v1")),
        (
            "t=yesterday,v1=00",
            SignatureError::Malformed("t is not a unix timestamp"),
        ),
        (
            "t=1717405200,v1=zz",
            SignatureError::Malformed("v1 is not hex"),
        ),
        (
            "t=1717405200,t=1717405200,v1=00",
            SignatureError::Malformed("t appears twice"),
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(
            verify_webhook_signature(SECRET, header, BODY, now()),
            Err(expected),
            "{header:?}"
        );
    }
    // Well formed but a truncated MAC is simply wrong.
    assert_eq!(
        verify_webhook_signature(SECRET, "t=1717405200,v1=00", BODY, now()),
        Err(SignatureError::Mismatch)
    );
}
