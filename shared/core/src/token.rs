//! API key format: `<prefix>_<30 base62 random><6 base62 CRC32>`, and its SHA-256.
//!
//! The checksum lets the server (and secret scanners) reject a mistyped or
//! invented key without touching the database. Only [`TokenHash`] is stored.

use rand::distr::{Alphanumeric, Distribution};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Random base62 characters in a key: 30 * log2(62) = 178 bits of entropy.
pub const RANDOM_LEN: usize = 30;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// Characters of the random part shown in a key's display hint.
const HINT_LEN: usize = 4;

/// A freshly generated key. Its `Debug` never shows the secret.
pub struct NewKey {
    secret: String,
    prefix_len: usize,
}

impl NewKey {
    /// Generates a key with `prefix` from the operating system's CSPRNG.
    pub fn generate(prefix: &str) -> Self {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let random: String = Alphanumeric
            .sample_iter(&mut rng)
            .take(RANDOM_LEN)
            .map(char::from)
            .collect();
        let secret = format!("{prefix}_{random}{}", checksum(&random));
        Self {
            secret,
            prefix_len: prefix.len(),
        }
    }

    /// The secret: shown to its creator once, never stored or logged.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.secret)
    }

    /// Prefix and first characters of the random part, e.g. `apk_Ab3x…`.
    pub fn hint(&self) -> String {
        let end = self.prefix_len.saturating_add(1 + HINT_LEN);
        format!("{}…", self.secret.get(..end).unwrap_or_default())
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewKey(<redacted>)")
    }
}

/// SHA-256 of a full key, lowercase hex: the only form of a key that is stored.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        Self(hex::encode(Sha256::digest(secret.as_bytes())))
    }

    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this hash is the hex `other`, compared in constant time
    /// (hashes, so even a timing leak would say nothing of a secret).
    pub fn matches_hex(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Checks a presented key's shape and checksum against the accepted prefixes.
/// Returns its hash only when it could be a key this deployment issued.
pub fn verify_presented(presented: &str, prefixes: &[&str]) -> Option<TokenHash> {
    let (prefix, body) = presented.rsplit_once('_')?;
    if !prefixes.contains(&prefix) || body.len() != RANDOM_LEN + CHECKSUM_LEN {
        return None;
    }
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (random, sum) = body.split_at(RANDOM_LEN);
    (checksum(random) == sum).then(|| TokenHash::of(presented))
}

/// The key in an `Authorization` header value: `Bearer <key>`, the scheme
/// in any case, spaces around ignored.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, key) = header_value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Whether a presented bearer has the shape of the tokens Prefect Cloud 1.x
/// accepted before API keys (user access tokens, API tokens): a JWT, three
/// dot-separated base64url parts, the first a JSON object (`eyJ`). Only
/// the shape: such a token is never decoded or verified, and never works.
pub fn is_legacy_token(presented: &str) -> bool {
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    let mut parts = presented.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => {
            header.starts_with("eyJ")
                && base64url(header)
                && base64url(payload)
                && base64url(signature)
        }
        _ => false,
    }
}

/// What a client presenting a legacy token is told (in an UNAUTHENTICATED
/// answer: the Prefect client looks for that code).
pub const LEGACY_TOKEN_MESSAGE: &str =
    "Unauthenticated: user access tokens and API tokens (JWTs) are \
    no longer accepted. Authenticate with an API key instead: create one in the console or with \
    `prefect auth create-key`, then `prefect auth login --key <key>`.";

fn checksum(random: &str) -> String {
    let crc = crc32fast::hash(random.as_bytes());
    let encoded = base62::encode(crc);
    format!("{encoded:0>width$}", width = CHECKSUM_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_nothing_else_is() {
        assert_eq!(bearer_token("Bearer apk_x"), Some("apk_x"));
        assert_eq!(bearer_token("  bearer   apk_x  "), Some("apk_x"));
        assert_eq!(bearer_token("BEARER apk_x"), Some("apk_x"));
        assert_eq!(bearer_token("Basic apk_x"), None);
        assert_eq!(bearer_token("apk_x"), None);
        assert_eq!(bearer_token(""), None);
    }

    const PREFIXES: &[&str] = &["apk", "apks"];

    #[test]
    fn legacy_tokens_are_told_apart_by_shape_only() {
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_legacy_token(jwt));
        assert!(is_legacy_token("eyJ.e30.c2ln"));
        for not in [
            "",
            "eyJ",
            "eyJ.e30",
            "eyJ.e30.",
            ".e30.c2ln",
            "eyJ.e30.c2ln.more",
            "eyJ a.e30.c2ln",
            "abc.e30.c2ln",
            "apk_0123456789abcdefghijklmnopqrstABCDEF",
            "eyJ.e30.c2ln\u{0}",
        ] {
            assert!(!is_legacy_token(not), "{not:?}");
        }
    }

    #[test]
    fn generated_key_has_prefix_random_part_and_checksum() {
        let key = NewKey::generate("apk");
        let secret = key.expose_secret();
        assert!(secret.starts_with("apk_"));
        assert_eq!(secret.len(), 4 + RANDOM_LEN + CHECKSUM_LEN);
        assert_eq!(verify_presented(secret, PREFIXES), Some(key.hash()));
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(
            NewKey::generate("apk").expose_secret(),
            NewKey::generate("apk").expose_secret()
        );
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let key = NewKey::generate("apk");
        let secret = key.expose_secret().to_string();
        for i in 4..secret.len() {
            let mut bytes = secret.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(bytes).unwrap();
            assert_eq!(verify_presented(&typo, PREFIXES), None, "position {i}");
        }
    }

    #[test]
    fn unknown_prefix_wrong_length_and_junk_are_rejected() {
        let key = NewKey::generate("other");
        assert_eq!(verify_presented(key.expose_secret(), PREFIXES), None);
        for junk in [
            "",
            "apk_",
            "apk_short",
            "no-underscore",
            "apk_ééééééééééééééééééééééééééééééééééé",
        ] {
            assert_eq!(verify_presented(junk, PREFIXES), None, "{junk}");
        }
    }

    #[test]
    fn hint_shows_prefix_and_four_characters_only() {
        let key = NewKey::generate("apks");
        let hint = key.hint();
        assert_eq!(hint.chars().count(), 4 + 1 + HINT_LEN + 1);
        assert!(key.expose_secret().starts_with(hint.trim_end_matches('…')));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = NewKey::generate("apk");
        assert!(!format!("{key:?}").contains(key.expose_secret()));
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
