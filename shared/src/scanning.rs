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
use serde::Deserialize;

use crate::https::FetchError;
use crate::keyset::{KeySet, KeySetRules};

/// Where GitHub publishes its secret scanning keys.
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";
/// The most matches one report may hold (GitHub sends fewer).
pub const MAX_MATCHES: usize = 1000;
/// The largest report body read, in bytes.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;
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
    pub fn new(url: impl Into<String>) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            keys: KeySet::new(url, keys_of, GITHUB_KEY_SET)?,
        })
    }

    /// Checks a report's signature. `Ok(Err(_))`: refused, and why;
    /// `Err(_)`: the key set could not be fetched.
    pub async fn verify(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
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
        let Some(point) = self.keys.key(identifier).await? else {
            return Ok(Err(BadSignature::UnknownKey));
        };
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            point,
        );
        Ok(key.verify(body, &der).map_err(|_| BadSignature::Wrong))
    }
}

/// One match of a report.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Match {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// The token types the GitLab entrance accepts (`GET
/// /v1/revocable_token_types`): a custom gitleaks rule's id, prefixed as
/// GitLab prefixes them.
pub const GITLAB_TOKEN_TYPES: [&str; 2] = [
    "gitleaks_rule_id_apikeys_user_key",
    "gitleaks_rule_id_apikeys_service_account_key",
];

/// Is `presented` (an `Authorization` header, raw or `Bearer …`) GitLab's
/// pre-shared token, whose SHA-256 is `sha256_hex`?
pub fn gitlab_token_matches(presented: Option<&str>, sha256_hex: &str) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let presented = presented.trim();
    let token = match presented.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => presented,
    };
    if token.is_empty() || token.len() > 512 {
        return false;
    }
    crate::token::TokenHash::of(token).matches_hex(sha256_hex)
}

/// Reads a GitLab revocation request: a JSON array of `{type, token,
/// location}`, at most [`MAX_MATCHES`]. Entries of another type, without a
/// token, or of any other shape (a field of the wrong type, a bare string,
/// a number) are left out, one by one: GitLab does not retry a 400, so
/// refusing the whole request would leave its other tokens working. A
/// `location` that is not a string is read as none. The answer is the
/// matches to handle and how many were left out; only a body that is not
/// a JSON array (or too long a one) is refused.
pub fn parse_gitlab_request(body: &[u8]) -> Result<(Vec<Match>, usize), String> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("a request is a JSON array of {{type, token, location}}: {e}"))?;
    if entries.len() > MAX_MATCHES {
        return Err(format!("a request may hold at most {MAX_MATCHES} tokens"));
    }
    let total = entries.len();
    let text = |entry: &serde_json::Value, name: &str| {
        entry
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let matches: Vec<Match> = entries
        .iter()
        .filter_map(|entry| {
            let token_type = text(entry, "type")?;
            if !GITLAB_TOKEN_TYPES.contains(&token_type.as_str()) {
                return None;
            }
            Some(Match {
                token: text(entry, "token")?,
                token_type,
                url: text(entry, "location").unwrap_or_default(),
                source: "gitlab".into(),
            })
        })
        .collect();
    let left_out = total.saturating_sub(matches.len());
    Ok((matches, left_out))
}

/// Reads a report's matches: a JSON array of at most [`MAX_MATCHES`].
pub fn parse_report(body: &[u8]) -> Result<Vec<Match>, String> {
    let matches: Vec<Match> = serde_json::from_slice(body)
        .map_err(|e| format!("a report is a JSON array of {{token, type, url, source}}: {e}"))?;
    if matches.len() > MAX_MATCHES {
        return Err(format!("a report may hold at most {MAX_MATCHES} matches"));
    }
    Ok(matches)
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

    #[test]
    fn a_gitlab_entry_of_the_wrong_shape_is_left_out_alone() {
        let ours = GITLAB_TOKEN_TYPES[0];
        let body = format!(
            r#"[{{"type":"{ours}","token":"a","location":5}},
                "bare",
                7,
                null,
                {{"type":"{ours}","token":5}},
                {{"type":5,"token":"b"}},
                {{"type":"{ours}","token":"c","location":"https://gitlab.example/x"}}]"#
        );
        let (matches, left_out) = parse_gitlab_request(body.as_bytes()).unwrap();
        let tokens: Vec<&str> = matches.iter().map(|m| m.token.as_str()).collect();
        assert_eq!(tokens, ["a", "c"]);
        assert_eq!(matches[0].url, "");
        assert_eq!(left_out, 5);
        assert!(parse_gitlab_request(b"{}").is_err());
        assert!(parse_gitlab_request(b"not json").is_err());
    }

    #[test]
    fn a_report_is_an_array_of_at_most_a_thousand_matches() {
        let one = br#"[{"token":"t","type":"x","url":"u","source":"content"}]"#;
        assert_eq!(parse_report(one).unwrap().len(), 1);
        assert!(parse_report(b"{}").is_err());
        assert!(parse_report(b"[{\"type\":\"x\"}]").is_err());
        let many = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_MATCHES + 1].join(","));
        assert!(parse_report(many.as_bytes()).is_err());
    }
}
