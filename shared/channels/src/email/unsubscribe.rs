//! Signed one-click unsubscribe tokens: the `List-Unsubscribe` URL carries the organization and
//! the patient, and a MAC so nobody can unsubscribe someone else by guessing ids.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use careloop_core::{OrganizationId, PatientId};
use hmac::Mac;
use uuid::Uuid;

use super::{HmacSha256, hmac_sha256};

/// Separates these MACs from any other use of the same key.
const CONTEXT: &[u8] = b"careloop/email-unsubscribe/v1";
const ID_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
const TOKEN_BYTES: usize = 2 * ID_BYTES + MAC_BYTES;

/// Why an unsubscribe token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not base64url or not the length of a token.
    #[error("the unsubscribe token is malformed")]
    Malformed,
    /// Well formed, but not signed with this key (forged, altered or from another deployment).
    #[error("the unsubscribe token's signature does not match")]
    BadSignature,
}

/// A URL-safe token naming `organization` and `patient`, signed with HMAC-SHA256 under `key`.
/// Deterministic: the same patient always gets the same token, so retries send identical mail.
pub fn unsubscribe_token(key: &[u8], organization: OrganizationId, patient: PatientId) -> String {
    let mut bytes = Vec::with_capacity(TOKEN_BYTES);
    bytes.extend_from_slice(organization.as_uuid().as_bytes());
    bytes.extend_from_slice(patient.as_uuid().as_bytes());
    let tag = mac(key, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a token made by [`unsubscribe_token`] (constant-time) and returns whom it names.
pub fn verify_unsubscribe_token(
    key: &[u8],
    token: &str,
) -> Result<(OrganizationId, PatientId), TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| TokenError::Malformed)?;
    if bytes.len() != TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let (ids, tag) = bytes.split_at(2 * ID_BYTES);
    mac(key, ids)
        .verify_slice(tag)
        .map_err(|_| TokenError::BadSignature)?;
    let (organization, patient) = ids.split_at(ID_BYTES);
    let organization = Uuid::from_slice(organization).map_err(|_| TokenError::Malformed)?;
    let patient = Uuid::from_slice(patient).map_err(|_| TokenError::Malformed)?;
    Ok((
        OrganizationId::from_uuid(organization),
        PatientId::from_uuid(patient),
    ))
}

fn mac(key: &[u8], ids: &[u8]) -> HmacSha256 {
    let mut mac = hmac_sha256(key);
    mac.update(CONTEXT);
    mac.update(ids);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"an unsubscribe key of thirty-two bytes!";

    #[test]
    fn a_token_names_its_patient_and_is_url_safe() {
        let (org, patient) = (OrganizationId::new(), PatientId::new());
        let token = unsubscribe_token(KEY, org, patient);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(token, unsubscribe_token(KEY, org, patient));
        assert_eq!(verify_unsubscribe_token(KEY, &token), Ok((org, patient)));
    }

    #[test]
    fn forged_altered_or_garbled_tokens_are_refused() {
        let token = unsubscribe_token(KEY, OrganizationId::new(), PatientId::new());
        assert_eq!(
            verify_unsubscribe_token(b"another key", &token),
            Err(TokenError::BadSignature)
        );
        // Swap the patient for another one, keeping the MAC.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        bytes[ID_BYTES..2 * ID_BYTES].copy_from_slice(PatientId::new().as_uuid().as_bytes());
        assert_eq!(
            verify_unsubscribe_token(KEY, &URL_SAFE_NO_PAD.encode(bytes)),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_unsubscribe_token(KEY, &token[..40]),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify_unsubscribe_token(KEY, "not*base64"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify_unsubscribe_token(KEY, ""),
            Err(TokenError::Malformed)
        );
    }
}
