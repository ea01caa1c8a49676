//! The two signed values email accepts from outside: the inbound webhook's
//! `X-Careloop-Signature` header and the one-click unsubscribe token. Arbitrary input never
//! panics; what `sign_webhook` / `unsubscribe_token` make verifies, with the same ids.
#![no_main]

use arbitrary::Arbitrary;
use careloop_channels::email::{
    WEBHOOK_TOLERANCE_SECS, sign_webhook, unsubscribe_token, verify_unsubscribe_token,
    verify_webhook_signature,
};
use careloop_core::{OrganizationId, PatientId};
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    secret: &'a [u8],
    header: &'a str,
    body: &'a [u8],
    /// Seconds since 2001 (the gateway passes `Utc::now()`, never a date before 1970).
    now: u32,
    /// Added to `now` when signing: valid within ±`WEBHOOK_TOLERANCE_SECS`.
    skew: i16,
    token: &'a str,
    organization: [u8; 16],
    patient: [u8; 16],
}

fuzz_target!(|input: Input<'_>| {
    let now_secs = 978_307_200 + i64::from(input.now);
    let Some(now) = DateTime::from_timestamp(now_secs, 0) else {
        return;
    };

    // Whatever header a client sends.
    let _ = verify_webhook_signature(input.secret, input.header, input.body, now);

    // A header we signed verifies while fresh, and not under another secret or body.
    let Some(signed_at) = DateTime::from_timestamp(now_secs + i64::from(input.skew), 0) else {
        return;
    };
    let header = sign_webhook(input.secret, input.body, signed_at);
    let result = verify_webhook_signature(input.secret, &header, input.body, now);
    if i64::from(input.skew).abs() <= WEBHOOK_TOLERANCE_SECS {
        assert_eq!(result, Ok(()), "a fresh signature was refused");
        let mut other = input.body.to_vec();
        other.push(b'x');
        assert!(verify_webhook_signature(input.secret, &header, &other, now).is_err());
    } else {
        assert!(result.is_err(), "a stale signature was accepted");
    }

    // Whatever token a URL carries.
    let key = input.secret;
    if let Ok((organization, patient)) = verify_unsubscribe_token(key, input.token) {
        // Only possible for a token made with this key: it must name what it was made for.
        assert_eq!(
            verify_unsubscribe_token(key, &unsubscribe_token(key, organization, patient)),
            Ok((organization, patient))
        );
    }
    let organization = OrganizationId::from_uuid(Uuid::from_bytes(input.organization));
    let patient = PatientId::from_uuid(Uuid::from_bytes(input.patient));
    let token = unsubscribe_token(key, organization, patient);
    assert_eq!(
        verify_unsubscribe_token(key, &token),
        Ok((organization, patient)),
        "a token we made was refused"
    );
});
