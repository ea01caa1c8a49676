//! Signatures on inbound-mail webhooks. A mail provider (or careloop's own relay) posts the raw
//! MIME message as the body with
//! `X-Careloop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`,
//! the scheme Stripe and Mailgun use: the timestamp inside the MAC stops replays of old posts.

use chrono::{DateTime, Utc};
use hmac::Mac;

use super::{HmacSha256, hmac_sha256};

/// The header carrying the signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Careloop-Signature";

/// How far a signature's timestamp may be from now, either way.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Why a webhook post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error("the signature header is malformed: {0}")]
    Malformed(&'static str),
    /// The timestamp is further than [`WEBHOOK_TOLERANCE_SECS`] from now (a replay, or a clock off).
    #[error("the signature timestamp is {age_secs} s away from now")]
    Stale {
        /// Now minus the timestamp: negative when it lies in the future.
        age_secs: i64,
    },
    /// No `v1` signature matches the body under this secret.
    #[error("the signature does not match")]
    Mismatch,
}

/// The header value signing `body` at `now` under `secret`.
pub fn sign_webhook(secret: &[u8], body: &[u8], now: DateTime<Utc>) -> String {
    let t = now.timestamp();
    let tag = signed_payload_mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks a signature header against `body`: the timestamp must be within
/// [`WEBHOOK_TOLERANCE_SECS`] of `now` and one of its `v1` values (several are allowed while a
/// secret is rotated) must match, compared in constant time.
pub fn verify_webhook_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected key=value pairs"))?;
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed("t appears twice"));
                }
            }
            "v1" => signatures
                .push(hex::decode(value).map_err(|_| SignatureError::Malformed("v1 is not hex"))?),
            // Other schemes (a future v2) are ignored, as Stripe does.
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed("no t"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1"));
    }
    let age_secs = now.timestamp().saturating_sub(t);
    if age_secs.abs() > WEBHOOK_TOLERANCE_SECS {
        return Err(SignatureError::Stale { age_secs });
    }
    let expected = signed_payload_mac(secret, t, body);
    if signatures
        .iter()
        .any(|signature| expected.clone().verify_slice(signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn signed_payload_mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = hmac_sha256(secret);
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_has_the_documented_shape() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let header = sign_webhook(b"secret", b"body", now);
        let (t, v1) = header.split_once(',').unwrap();
        assert_eq!(t, "t=1700000000");
        assert_eq!(v1.len(), "v1=".len() + 64);
        // The MAC covers "<t>." + body, nothing else.
        let mut mac = hmac_sha256(b"secret");
        mac.update(b"1700000000.body");
        assert_eq!(&v1[3..], hex::encode(mac.finalize().into_bytes()));
    }
}
