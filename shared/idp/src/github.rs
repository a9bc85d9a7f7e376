//! Secret scanning: the signatures GitHub's secret scanning partner program
//! puts on the matches it reports (ECDSA P-256 with SHA-256 over the raw
//! body, DER-encoded and base64'd in `Github-Public-Key-Signature`, by the
//! key `Github-Public-Key-Identifier` names), checked against the public
//! keys GitHub publishes (fetched from a configurable URL, kept by the
//! instance, fetched again for an unknown identifier at most once a
//! minute), and the report's matches as read from its body.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;

use crate::keyset::{KeySet, KeySetRules};
use apikeys_platform::https::FetchError;

/// Where GitHub publishes its secret scanning keys.
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// Secret scanning's settings, read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanningSettings {
    /// Where GitHub's secret scanning public keys are fetched from
    /// (`GITHUB_SCANNING_KEYS_URL`, default GitHub's own; tests serve
    /// theirs).
    pub github_keys_url: String,
    /// The SHA-256 (hex) of the pre-shared token GitLab's secret detection
    /// sends to the token revocation API (`GITLAB_TOKEN_SHA256`, resolved
    /// from SSM at deployment; unset: that entrance is closed). Only the
    /// hash is configured, so the environment never holds the token.
    pub gitlab_token_sha256: Option<String>,
}

impl ScanningSettings {
    pub fn from_env(env: &apikeys_platform::Env) -> Self {
        Self {
            github_keys_url: env
                .get("GITHUB_SCANNING_KEYS_URL")
                .unwrap_or(GITHUB_KEYS_URL)
                .to_string(),
            gitlab_token_sha256: match env.get("GITLAB_TOKEN_SHA256") {
                None => None,
                Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Some(hex.to_ascii_lowercase())
                }
                // A value of the wrong form closes that entrance alone (said
                // in the log), never the whole function.
                Some(_) => {
                    tracing::error!(
                        "GITLAB_TOKEN_SHA256 is not 64 hex digits (the SHA-256 of the token): \
                         the GitLab token revocation entrance stays closed"
                    );
                    None
                }
            },
        }
    }
}
/// How GitHub's key set is kept: trusted for an hour (a key GitHub
/// withdraws stops being accepted within it); an unknown identifier
/// fetches it again at most once every five minutes (forged reports with
/// made-up identifiers cost at most 12 fetches an hour per instance;
/// GitHub's anonymous API allows 60); a failed fetch is tried again after
/// 5 s, and answered as retryable until then.
const GITHUB_KEY_SET: KeySetRules = KeySetRules {
    max_age: Duration::from_secs(3600),
    refetch_after: Duration::from_secs(300),
    retry_after: Duration::from_secs(5),
    fetch_limit: Duration::from_secs(3),
    max_bytes: 256 * 1024,
};

/// The DER prefix of a P-256 public key in SubjectPublicKeyInfo form
/// (id-ecPublicKey, prime256v1, then a 66-byte BIT STRING); the 65 bytes
/// after it are the uncompressed point ring verifies with.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The point of a PEM-encoded P-256 public key (`None`: not one).
pub fn p256_point(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point.first() == Some(&0x04)).then(|| point.to_vec())
}

/// A PEM P-256 public key of `point` (what a test's key set publishes).
pub fn p256_pem(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// The P-256 keys of a key set document, by identifier: entries of
/// another form (another curve, a compressed point, a missing field) are
/// left out, never the whole set.
fn keys_of(document: &[u8]) -> Result<HashMap<String, Vec<u8>>, FetchError> {
    let set: serde_json::Value = serde_json::from_slice(document)
        .map_err(|e| FetchError::Failed(format!("the key set is not JSON: {e}")))?;
    let entries = set
        .get("public_keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| FetchError::Failed("the key set has no public_keys array".into()))?;
    Ok(entries
        .iter()
        .filter_map(|k| {
            let id = k.get("key_identifier")?.as_str()?;
            let point = p256_point(k.get("key")?.as_str()?)?;
            Some((id.to_string(), point))
        })
        .collect())
}

/// Why a report's signature was not accepted (said to the sender; no
/// database request was made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadSignature {
    Missing,
    Malformed,
    UnknownKey,
    Wrong,
}

impl BadSignature {
    pub fn message(self) -> &'static str {
        match self {
            BadSignature::Missing => {
                "a report needs the Github-Public-Key-Identifier and Github-Public-Key-Signature headers"
            }
            BadSignature::Malformed => "the signature or key identifier is not of the expected form",
            BadSignature::UnknownKey => "the key identifier names no published key",
            BadSignature::Wrong => "the signature does not match the body",
        }
    }
}

/// GitHub's published keys, as this instance last fetched them.
pub struct GithubKeys {
    keys: KeySet<Vec<u8>>,
}

impl GithubKeys {
    pub fn new(url: impl Into<String>) -> Result<Self, apikeys_platform::ConfigError> {
        Ok(Self {
            keys: KeySet::new(url, keys_of, GITHUB_KEY_SET)?,
        })
    }

    /// Checks a report's signature at `now`. `Ok(Err(_))`: refused, and
    /// why; `Err(_)`: the key set could not be fetched.
    pub async fn verify(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<Result<(), BadSignature>, FetchError> {
        let (Some(identifier), Some(signature)) = (identifier, signature) else {
            return Ok(Err(BadSignature::Missing));
        };
        let identifier = identifier.trim();
        if identifier.is_empty()
            || identifier.len() > 128
            || !identifier.chars().all(|c| c.is_ascii_alphanumeric())
            || signature.len() > 256
        {
            return Ok(Err(BadSignature::Malformed));
        }
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return Ok(Err(BadSignature::Malformed));
        };
        let Some(point) = self.keys.key(identifier, now).await? else {
            return Ok(Err(BadSignature::UnknownKey));
        };
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            point,
        );
        Ok(key.verify(body, &der).map_err(|_| BadSignature::Wrong))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_p256_key_round_trips_through_pem_and_nothing_else_is_one() {
        let point: Vec<u8> = std::iter::once(4u8).chain(0u8..64).collect();
        assert_eq!(p256_point(&p256_pem(&point)), Some(point));
        assert_eq!(
            p256_point("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
            None
        );
        assert_eq!(p256_point("not pem"), None);
        assert_eq!(p256_point(""), None);
    }
}
