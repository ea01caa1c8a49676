//! Signed session tokens.
//!
//! A token is `v1.<session>.<organization>.<expires>.<signature>`: the session id (32 hex
//! characters, 128 random bits), the organization (a UUID without dashes), the expiry in Unix
//! seconds, and HMAC-SHA256 over everything before the last dot, in hex. The server keeps nothing
//! per token: any gateway holding the same [`SigningKey`] verifies it.

use std::{fmt, io::Write, path::Path, str::FromStr};

use careloop_core::OrganizationId;
use careloop_store::ChannelAddress;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Longer than any token this module issues; anything longer is malformed without parsing.
const MAX_TOKEN_LEN: usize = 200;
/// A configured secret shorter than this is refused: HMAC-SHA256 wants 256 bits of key.
pub const MIN_SECRET_LEN: usize = 32;

/// The key that signs and verifies session tokens (kept as a keyed HMAC). `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(HmacSha256);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("webchat.signing_secret must be at least {MIN_SECRET_LEN} characters")]
    TooShort,
    #[error("web chat key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("web chat key file {path} is not 64 hex characters")]
    Corrupt { path: String },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

impl SigningKey {
    /// A configured secret (at least [`MIN_SECRET_LEN`] bytes).
    pub fn from_secret(secret: &str) -> Result<SigningKey, KeyError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort);
        }
        Self::from_bytes(secret.as_bytes())
    }

    fn from_bytes(bytes: &[u8]) -> Result<SigningKey, KeyError> {
        // HMAC accepts keys of any length; the error exists for fixed-size MACs only.
        HmacSha256::new_from_slice(bytes)
            .map(SigningKey)
            .map_err(|_| KeyError::TooShort)
    }

    /// 256 fresh random bits (tests, single-process deployments that accept losing sessions on
    /// restart).
    pub fn generate() -> Result<SigningKey, KeyError> {
        Self::from_bytes(&random_bytes::<32>()?)
    }

    /// The key kept in `path` (64 hex characters), created with fresh random bits and mode 0600
    /// when missing, so tokens stay valid across restarts of the embedded default. Two processes
    /// starting at once agree: the file is created exclusively and the loser reads the winner's.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
        let file_error = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse_file(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        let key = random_bytes::<32>()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(hex::encode(key).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(file_error)?;
                Self::from_bytes(&key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(file_error)?;
                Self::parse_file(path, &text)
            }
            Err(e) => Err(file_error(e)),
        }
    }

    fn parse_file(path: &Path, text: &str) -> Result<SigningKey, KeyError> {
        let text = text.trim();
        match hex::decode(text) {
            Ok(bytes) if bytes.len() == 32 => Self::from_bytes(&bytes),
            _ => Err(KeyError::Corrupt {
                path: path.display().to_string(),
            }),
        }
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A web chat session: 128 random bits, written as 32 lowercase hex characters (URL-safe). It is
/// the session's [`ChannelAddress::WebChat`]. `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh random session id.
    pub fn random() -> Result<SessionId, KeyError> {
        random_bytes::<16>().map(SessionId)
    }

    /// The address the conversation engine and the store know this session by.
    pub fn address(&self) -> ChannelAddress {
        ChannelAddress::WebChat(self.to_string())
    }

    /// The session behind a web chat address, if it is one this module issued.
    pub fn from_address(address: &ChannelAddress) -> Option<SessionId> {
        match address {
            ChannelAddress::WebChat(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

impl FromStr for SessionId {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let mut bytes = [0u8; 16];
        if s.len() != 32 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(TokenError::Malformed);
        }
        hex::decode_to_slice(s, &mut bytes).map_err(|_| TokenError::Malformed)?;
        Ok(SessionId(bytes))
    }
}

/// A signed session token, as the browser keeps it. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A new session: its id, its token and when the token stops being accepted.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    pub session_id: SessionId,
    pub token: SessionToken,
    pub expires_at: DateTime<Utc>,
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionClaims {
    pub session_id: SessionId,
    pub organization_id: OrganizationId,
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused. The messages say nothing about the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the session token is malformed")]
    Malformed,
    #[error("the session token's signature does not match")]
    BadSignature,
    #[error("the session token has expired")]
    Expired,
}

/// Signs a new token for `session` in `organization`, valid until `expires_at`.
pub(crate) fn sign(
    key: &SigningKey,
    session: SessionId,
    organization: OrganizationId,
    expires_at: DateTime<Utc>,
) -> SessionToken {
    let payload = format!(
        "{VERSION}.{session}.{}.{}",
        organization.as_uuid().simple(),
        expires_at.timestamp()
    );
    let mut mac = key.mac();
    mac.update(payload.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    SessionToken(format!("{payload}.{signature}"))
}

/// Checks a token's shape, then its signature (in constant time), then its expiry.
pub(crate) fn verify(
    key: &SigningKey,
    token: &str,
    now: DateTime<Utc>,
) -> Result<SessionClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
        return Err(TokenError::Malformed);
    }
    let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let mut parts = payload.split('.');
    let (Some(version), Some(session), Some(org), Some(expires), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if version != VERSION
        || org.len() != 32
        || expires.is_empty()
        || expires.len() > 12
        || !expires.bytes().all(|b| b.is_ascii_digit())
        || signature.len() != 64
    {
        return Err(TokenError::Malformed);
    }
    let session_id: SessionId = session.parse()?;
    let organization_id =
        OrganizationId::from_uuid(uuid::Uuid::try_parse(org).map_err(|_| TokenError::Malformed)?);
    let signature = hex::decode(signature).map_err(|_| TokenError::Malformed)?;
    let mut mac = key.mac();
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let expires_at = expires
        .parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or(TokenError::Malformed)?;
    if expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(SessionClaims {
        session_id,
        organization_id,
        expires_at,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_says_whose_it_is() {
        let key = SigningKey::generate().unwrap();
        let session = SessionId::random().unwrap();
        let org = OrganizationId::new();
        let expires = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let token = sign(&key, session, org, expires);
        let claims = verify(&key, token.as_str(), expires - chrono::Duration::seconds(1)).unwrap();
        assert_eq!(claims.session_id, session);
        assert_eq!(claims.organization_id, org);
        assert_eq!(claims.expires_at, expires);
    }

    #[test]
    fn session_ids_round_trip_and_reject_other_shapes() {
        let id = SessionId::random().unwrap();
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        assert_eq!(SessionId::from_address(&id.address()), Some(id));
        assert!("xyz".parse::<SessionId>().is_err());
        assert!(id.to_string().to_uppercase().parse::<SessionId>().is_err());
        assert!(!format!("{id:?}").contains(&id.to_string()));
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/webchat.key");
        let first = SigningKey::load_or_create(&path).unwrap();
        let second = SigningKey::load_or_create(&path).unwrap();
        let (session, org) = (SessionId::random().unwrap(), OrganizationId::new());
        let expires = DateTime::from_timestamp(2_000_000_000, 0).unwrap();
        let token = sign(&first, session, org, expires);
        assert!(verify(&second, token.as_str(), expires - chrono::Duration::days(1)).is_ok());
        assert_eq!(
            verify(
                &SigningKey::generate().unwrap(),
                token.as_str(),
                expires - chrono::Duration::days(1)
            ),
            Err(TokenError::BadSignature)
        );
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&path),
            Err(KeyError::Corrupt { .. })
        ));
        assert!(matches!(
            SigningKey::from_secret("short"),
            Err(KeyError::TooShort)
        ));
    }
}
