//! Signing people in with an OpenID Connect provider: its ID tokens checked
//! here, with keys from its JWKS (fetched over [`crate::https::Fetcher`],
//! kept by the instance, fetched again for an unknown `kid` at a bounded
//! rate). A person is (issuer, `sub`), never an email alone; an email is
//! trusted only when the provider says it was verified.
//!
//! The checks, in order, each refusal made before any fetch where the token
//! alone decides: size (16 KiB), shape, an asymmetric algorithm, a `kid`,
//! the issuer (read unverified only to refuse a foreign token cheaply, and
//! checked again after the signature), the key (only an algorithm the JWK
//! declares, or the one its type implies when it declares none), the
//! signature, then `aud`, `token_use` (an ID token, for Cognito), `exp`,
//! `nbf` and `iat` with [`SKEW`] of clock skew.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::keyset::{KeySet, KeySetRules};
use apikeys_platform::https::{FetchError, Fetcher};
use apikeys_platform::{ConfigError, Env};

/// The largest token looked at.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew allowed between the provider and this service.
pub const SKEW: time::Duration = time::Duration::seconds(60);

/// How a provider's JWKS is kept: trusted for an hour, fetched again for an
/// unknown `kid` at most once a minute (a provider rotating its keys is
/// followed within a minute; made-up `kid`s cost at most 60 fetches an hour
/// per instance), a failed fetch tried again after 5 s, and a fetch may
/// take 3 s (a request has 10).
const JWKS_RULES: KeySetRules = KeySetRules {
    max_age: Duration::from_secs(3600),
    refetch_after: Duration::from_secs(60),
    retry_after: Duration::from_secs(5),
    fetch_limit: Duration::from_secs(3),
    max_bytes: 256 * 1024,
};

/// The identity provider, as the deployment configures it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The tokens' `iss`, exactly (`OIDC_ISSUER`).
    pub issuer: String,
    /// The app client's id: the ID tokens' `aud` (`OIDC_CLIENT_ID`).
    /// Empty when it comes from an API Gateway stage variable (see
    /// `client_stage_variable`) until the first request gives it.
    pub client_id: String,
    /// `OIDC_CLIENT_ID=stage:<name>`: the client id is the API Gateway
    /// stage variable `<name>` (how the template gives the function the id
    /// of a client whose callback URL is the API's own: an environment
    /// variable would make a dependency cycle).
    pub client_stage_variable: Option<String>,
    /// Where the keys are fetched from (`OIDC_JWKS_URL`; unset: the
    /// `jwks_uri` of the discovery document). Apart from the issuer, for a
    /// provider served elsewhere than its tokens say (an emulator).
    pub jwks_url: Option<String>,
    /// The discovery document (`OIDC_DISCOVERY_URL`, default
    /// `<issuer>/.well-known/openid-configuration`).
    pub discovery_url: String,
    /// Only people with a verified email of these domains may sign in
    /// (`OIDC_EMAIL_DOMAINS`, comma-separated; empty: any).
    pub email_domains: Vec<String>,
    /// What the console's button says: "Sign in with <name>"
    /// (`OIDC_PROVIDER_NAME`, default `your identity provider`).
    pub provider_name: String,
    /// The browser's authorization endpoint (`OIDC_AUTHORIZE_URL`).
    pub authorize_url: Option<String>,
    /// The browser's token endpoint (`OIDC_TOKEN_URL`).
    pub token_url: Option<String>,
}

pub use apikeys_core::identity::{Identity, KeysUnavailable, TokenRefusal};

impl OidcSettings {
    /// The identity provider's settings: none without an issuer and a
    /// client (`OIDC_ISSUER`, `OIDC_CLIENT_ID` and the optional `OIDC_*`).
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| env.get(name);
        let (issuer, client_id) = match (get("OIDC_ISSUER"), get("OIDC_CLIENT_ID")) {
            (None, None) => return Ok(None),
            // Exactly as configured: a token's `iss` is compared with it as it
            // is (Auth0's issuers end with `/`).
            (Some(issuer), Some(client)) => (issuer, client),
            _ => {
                return Err(ConfigError::new(
                    "OIDC_ISSUER and OIDC_CLIENT_ID go together: set both (sign-in with the \
                 identity provider) or neither (API keys only)",
                ))
            }
        };
        let url = |name: &str| -> Result<Option<String>, ConfigError> {
            match get(name) {
                None => Ok(None),
                Some(u)
                    if (u.starts_with("https://") || u.starts_with("http://"))
                        && u.len() <= 2048 =>
                {
                    Ok(Some(u.to_string()))
                }
                Some(_) => Err(ConfigError::new(format!("{name} must be an http(s) URL"))),
            }
        };
        if issuer.len() > 512 || client_id.len() > 256 {
            return Err(ConfigError::new(
                "OIDC_ISSUER or OIDC_CLIENT_ID is too long",
            ));
        }
        let (client_id, client_stage_variable) = match client_id.strip_prefix("stage:") {
            Some(name) if !name.is_empty() => (String::new(), Some(name.to_string())),
            Some(_) => {
                return Err(ConfigError::new(
                    "OIDC_CLIENT_ID=stage:<name> names an API Gateway stage variable",
                ))
            }
            None => (client_id.to_string(), None),
        };
        // A Cognito pool behind an endpoint override (an emulator, as
        // AWS_ENDPOINT_URL moves DynamoDB): its discovery document is served
        // there, while its tokens still name the real issuer.
        let cognito_endpoint = [
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            "AWS_ENDPOINT_URL",
        ]
        .into_iter()
        .find_map(get)
        .map(|e| e.trim_end_matches('/').to_string());
        let cognito_pool = issuer
            .strip_prefix("https://cognito-idp.")
            .and_then(|rest| rest.split_once(".amazonaws.com/"))
            .map(|(_, pool)| pool.to_string());
        // Its hosted sign-in domain too (`https://<domain>.auth.<region>.
        // amazoncognito.com/oauth2/…`): the emulator serves `/oauth2/…`.
        let hosted = |configured: Option<String>, endpoint_path: &str| match (
            configured,
            &cognito_endpoint,
            &cognito_pool,
        ) {
            (Some(u), Some(endpoint), Some(_)) if u.contains(".amazoncognito.com/oauth2/") => {
                Some(format!("{endpoint}/oauth2/{endpoint_path}"))
            }
            (configured, _, _) => configured,
        };
        let default_discovery = match (&cognito_endpoint, &cognito_pool) {
            (Some(endpoint), Some(pool)) => {
                format!("{endpoint}/{pool}/.well-known/openid-configuration")
            }
            // OpenID Connect Discovery 1.0, section 4: a terminating `/` is
            // removed before the path is appended.
            _ => format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
        };
        Ok(Some(OidcSettings {
            issuer: issuer.to_string(),
            client_id,
            client_stage_variable,
            jwks_url: url("OIDC_JWKS_URL")?,
            discovery_url: url("OIDC_DISCOVERY_URL")?.unwrap_or(default_discovery),
            email_domains: get("OIDC_EMAIL_DOMAINS")
                .unwrap_or_default()
                .split(',')
                .map(|d| d.trim().trim_start_matches('@').to_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
            provider_name: get("OIDC_PROVIDER_NAME")
                .unwrap_or("your identity provider")
                .chars()
                .take(64)
                .collect(),
            authorize_url: hosted(url("OIDC_AUTHORIZE_URL")?, "authorize"),
            token_url: hosted(url("OIDC_TOKEN_URL")?, "token"),
        }))
    }
}

/// A published key, and the one algorithm it is accepted with.
#[derive(Clone, Debug)]
struct Jwk {
    algorithm: Algorithm,
    material: KeyMaterial,
}

#[derive(Clone, Debug)]
enum KeyMaterial {
    Rsa { n: String, e: String },
    Ec { x: String, y: String },
}

impl Jwk {
    fn decoding_key(&self) -> Option<DecodingKey> {
        match &self.material {
            KeyMaterial::Rsa { n, e } => DecodingKey::from_rsa_components(n, e).ok(),
            KeyMaterial::Ec { x, y } => DecodingKey::from_ec_components(x, y).ok(),
        }
    }
}

/// The signing keys of a JWKS document: RSA and EC keys for signatures
/// (`use` absent or `sig`), each with the algorithm it declares, or the
/// one its type implies (RS256; ES256 for P-256, ES384 for P-384). Keys of
/// any other kind (symmetric ones above all) are left out.
fn jwks_of(document: &[u8]) -> Result<HashMap<String, Jwk>, FetchError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(document)
        .map_err(|e| FetchError::Failed(format!("the JWKS is not a key set: {e}")))?;
    let field = |k: &serde_json::Value, name: &str| {
        k.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    Ok(set
        .keys
        .iter()
        .filter_map(|k| {
            let kid = field(k, "kid")?;
            if field(k, "use").is_some_and(|u| u != "sig") {
                return None;
            }
            let declared = field(k, "alg");
            let (algorithm, material) = match field(k, "kty")?.as_str() {
                "RSA" => {
                    let algorithm = match declared.as_deref() {
                        None | Some("RS256") => Algorithm::RS256,
                        Some("RS384") => Algorithm::RS384,
                        Some("RS512") => Algorithm::RS512,
                        Some("PS256") => Algorithm::PS256,
                        Some("PS384") => Algorithm::PS384,
                        Some("PS512") => Algorithm::PS512,
                        Some(_) => return None,
                    };
                    let material = KeyMaterial::Rsa {
                        n: field(k, "n")?,
                        e: field(k, "e")?,
                    };
                    (algorithm, material)
                }
                "EC" => {
                    let algorithm = match (field(k, "crv")?.as_str(), declared.as_deref()) {
                        ("P-256", None | Some("ES256")) => Algorithm::ES256,
                        ("P-384", None | Some("ES384")) => Algorithm::ES384,
                        _ => return None,
                    };
                    let material = KeyMaterial::Ec {
                        x: field(k, "x")?,
                        y: field(k, "y")?,
                    };
                    (algorithm, material)
                }
                _ => return None,
            };
            Some((
                kid,
                Jwk {
                    algorithm,
                    material,
                },
            ))
        })
        .collect())
}

/// The claims read from a verified ID token.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    /// Absent on Cognito's access tokens (they carry `client_id`).
    #[serde(default)]
    aud: Option<Audience>,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    iat: i64,
    /// The party the token was issued to, when it names one (OIDC Core,
    /// 2: it must then be this application).
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Verified>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// `email_verified`: a boolean, or (Cognito, some others) its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Verified {
    Flag(bool),
    Text(String),
}

impl Verified {
    fn yes(&self) -> bool {
        match self {
            Verified::Flag(b) => *b,
            Verified::Text(t) => t == "true",
        }
    }
}

/// Verifies ID tokens of one provider.
pub struct IdTokenVerifier {
    settings: OidcSettings,
    fetcher: Fetcher,
    /// The JWKS, set up at the first token that needs it (after the
    /// discovery document, when no JWKS URL is configured).
    keys: tokio::sync::OnceCell<KeySet<Jwk>>,
    /// When finding the key set (the discovery document) last failed: for
    /// `JWKS_RULES.retry_after` after it, sign-ins are answered retryable
    /// at once rather than each waiting on a fetch of their own.
    discovery_failed: std::sync::Mutex<Option<OffsetDateTime>>,
}

impl IdTokenVerifier {
    pub fn new(settings: OidcSettings) -> Result<Self, ConfigError> {
        Ok(Self {
            settings,
            fetcher: Fetcher::new()?,
            keys: tokio::sync::OnceCell::new(),
            discovery_failed: std::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn key_set(&self, now: OffsetDateTime) -> Result<&KeySet<Jwk>, KeysUnavailable> {
        let recently_failed = || {
            self.discovery_failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| apikeys_core::clock::within(now, at, JWKS_RULES.retry_after))
        };
        self.keys
            .get_or_try_init(|| async {
                // Concurrent sign-ins wait for one attempt: after it failed,
                // the next ones are answered at once.
                if recently_failed() {
                    return Err(KeysUnavailable(
                        "the discovery document could not be fetched a moment ago".into(),
                    ));
                }
                let url = match &self.settings.jwks_url {
                    Some(url) => url.clone(),
                    None => match self.discover().await {
                        Ok(url) => url,
                        Err(e) => {
                            *self
                                .discovery_failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner()) = Some(now);
                            return Err(e);
                        }
                    },
                };
                KeySet::new(url, jwks_of, JWKS_RULES).map_err(|e| KeysUnavailable(e.to_string()))
            })
            .await
    }

    /// The `jwks_uri` of the provider's discovery document.
    async fn discover(&self) -> Result<String, KeysUnavailable> {
        let body = self
            .fetcher
            .get(
                &self.settings.discovery_url,
                JWKS_RULES.fetch_limit,
                JWKS_RULES.max_bytes,
            )
            .await
            .map_err(|e| KeysUnavailable(format!("discovery document: {e}")))?;
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| KeysUnavailable(format!("discovery document: {e}")))?;
        // The document speaks for our issuer (OIDC Discovery, 4.3), and
        // sends us for keys over https (or to this machine, in development).
        let issuer = document.get("issuer").and_then(serde_json::Value::as_str);
        if issuer != Some(self.settings.issuer.as_str()) {
            return Err(KeysUnavailable(
                "the discovery document names another issuer than the configured one".into(),
            ));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| KeysUnavailable("the discovery document has no jwks_uri".into()))?;
        if !apikeys_platform::https::is_https_or_loopback(jwks_uri) {
            return Err(KeysUnavailable(
                "the discovery document's jwks_uri is not an https URL".into(),
            ));
        }
        Ok(jwks_uri.to_string())
    }

    /// Verifies `token` at `now`. `Ok(Err(_))`: refused, and why;
    /// `Err(_)`: the keys could not be fetched (retryable).
    pub async fn verify(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Result<Identity, TokenRefusal>, KeysUnavailable> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(Err(TokenRefusal::TooLarge));
        }
        // The algorithm is read first: `none` and the symmetric ones are
        // refused as such (the library does not parse `none` at all).
        let Some(raw) = unverified_part::<serde_json::Map<String, serde_json::Value>>(token, 0)
        else {
            return Ok(Err(TokenRefusal::Malformed));
        };
        let head =
            match serde_json::from_value::<HeaderChecks>(serde_json::Value::Object(raw.clone())) {
                Ok(head) if ACCEPTED_ALGORITHMS.contains(&head.alg.as_str()) => head,
                Ok(_) => return Ok(Err(TokenRefusal::Algorithm)),
                Err(_) => return Ok(Err(TokenRefusal::Malformed)),
            };
        // Present at all, whatever its value (`null` too): refused.
        if raw.contains_key("crit") {
            return Ok(Err(TokenRefusal::CriticalHeader));
        }
        // An ID token says `JWT` or nothing; a JWT access token says
        // `at+jwt` (RFC 9068), and its `aud` may well be our client id.
        if head
            .typ
            .as_deref()
            .is_some_and(|t| !["jwt", "application/jwt"].contains(&t.to_ascii_lowercase().as_str()))
        {
            return Ok(Err(TokenRefusal::NotAnIdToken));
        }
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(Err(TokenRefusal::Malformed));
        };
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
        ) {
            return Ok(Err(TokenRefusal::Algorithm));
        }
        let Some(kid) = header.kid.filter(|k| !k.is_empty() && k.len() <= 256) else {
            return Ok(Err(TokenRefusal::Malformed));
        };
        // A foreign token is refused before any fetch (checked again once
        // the signature is).
        match unverified_part::<IssOnly>(token, 1) {
            Some(IssOnly { iss }) if iss == self.settings.issuer => {}
            Some(_) => return Ok(Err(TokenRefusal::WrongIssuer)),
            None => return Ok(Err(TokenRefusal::Malformed)),
        }
        let keys = self.key_set(now).await?;
        let Some(jwk) = keys
            .key(&kid, now)
            .await
            .map_err(|e| KeysUnavailable(e.to_string()))?
        else {
            return Ok(Err(TokenRefusal::UnknownKey));
        };
        if header.alg != jwk.algorithm {
            return Ok(Err(TokenRefusal::Algorithm));
        }
        let Some(key) = jwk.decoding_key() else {
            return Ok(Err(TokenRefusal::UnknownKey));
        };
        // The signature only: the claims are checked below, against the
        // service's clock.
        let mut validation = Validation::new(jwk.algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                return Ok(Err(match e.kind() {
                    ErrorKind::InvalidSignature => TokenRefusal::BadSignature,
                    ErrorKind::InvalidAlgorithm => TokenRefusal::Algorithm,
                    _ => TokenRefusal::Malformed,
                }));
            }
        };
        Ok(self.check(claims, now))
    }

    fn check(&self, claims: Claims, now: OffsetDateTime) -> Result<Identity, TokenRefusal> {
        if claims.iss != self.settings.issuer {
            return Err(TokenRefusal::WrongIssuer);
        }
        let audience = match &claims.aud {
            Some(Audience::One(a)) => a == &self.settings.client_id,
            Some(Audience::Many(all)) => all.iter().any(|a| a == &self.settings.client_id),
            None => false,
        };
        if !audience {
            return Err(TokenRefusal::WrongAudience);
        }
        // Several audiences: only with `azp` naming us (OIDC Core, 3.1.3.7);
        // one audience: `azp`, when given, names us too.
        let several = matches!(&claims.aud, Some(Audience::Many(all)) if all.len() > 1);
        let party_ok = match claims.azp.as_deref() {
            Some(azp) => azp == self.settings.client_id,
            None => !several,
        };
        if !party_ok {
            return Err(TokenRefusal::WrongAuthorizedParty);
        }
        if claims.token_use.as_deref().is_some_and(|u| u != "id") {
            return Err(TokenRefusal::NotAnIdToken);
        }
        let now = now.unix_timestamp();
        let skew = SKEW.whole_seconds();
        if now >= claims.exp.saturating_add(skew) {
            return Err(TokenRefusal::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now < nbf.saturating_sub(skew))
            || claims.iat > now.saturating_add(skew)
        {
            return Err(TokenRefusal::NotYetValid);
        }
        if claims.sub.is_empty() || claims.sub.len() > 255 {
            return Err(TokenRefusal::Malformed);
        }
        let verified = claims.email_verified.as_ref().is_some_and(Verified::yes);
        // Of the plain form only, lowercased as ASCII: a look-alike letter
        // (the Kelvin sign) never folds into another person's address, and
        // `x@evil.com@example.com` is no address of example.com.
        let email = claims
            .email
            .filter(|_| verified)
            .and_then(|e| apikeys_core::domain::plain_email(&e));
        if !self.settings.email_domains.is_empty() {
            let domain = email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d);
            if !domain.is_some_and(|d| self.settings.email_domains.iter().any(|a| a == d)) {
                return Err(TokenRefusal::EmailNotAllowed);
            }
        }
        Ok(Identity {
            issuer: claims.iss,
            subject: claims.sub,
            email,
            name: claims.name.filter(|n| n.len() <= 256),
        })
    }
}

impl apikeys_core::identity::VerifyIdToken for IdTokenVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        now: OffsetDateTime,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = apikeys_core::identity::Verified> + Send + 'a>,
    > {
        Box::pin(IdTokenVerifier::verify(self, token, now))
    }
}

/// The asymmetric algorithms an ID token may be signed with (each only
/// with a key that declares, or by its type implies, that one).
const ACCEPTED_ALGORITHMS: [&str; 8] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
];

/// What is read of a token's header before its signature is checked.
#[derive(Deserialize)]
struct HeaderChecks {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Deserialize)]
struct IssOnly {
    iss: String,
}

/// Part `index` of a token (0 the header, 1 the payload), decoded without
/// verifying anything.
fn unverified_part<T: serde::de::DeserializeOwned>(token: &str, index: usize) -> Option<T> {
    let mut parts = token.split('.');
    let (Some(_), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    #[test]
    fn the_identity_provider_needs_issuer_and_client_and_finds_an_emulated_cognito() {
        let base = [("TABLE_NAME", "t")];
        assert_eq!(OidcSettings::from_env(&env(&base)).unwrap(), None);
        for half in [
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_CLIENT_ID", "c"),
        ] {
            let err = OidcSettings::from_env(&env(&[base[0], half])).unwrap_err();
            assert!(err.to_string().contains("go together"), "{err}");
        }
        let pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc";
        let oidc = |extra: &[(&str, &str)]| {
            let mut all = vec![
                base[0],
                ("OIDC_ISSUER", pool),
                ("OIDC_CLIENT_ID", "stage:oidcClientId"),
            ];
            all.extend_from_slice(extra);
            OidcSettings::from_env(&env(&all)).unwrap().unwrap()
        };
        let plain = oidc(&[]);
        assert_eq!(plain.client_id, "");
        assert_eq!(plain.client_stage_variable.as_deref(), Some("oidcClientId"));
        assert_eq!(
            plain.discovery_url,
            format!("{pool}/.well-known/openid-configuration")
        );
        let emulated = oidc(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/"),
            (
                "OIDC_AUTHORIZE_URL",
                "https://apikeys-1.auth.us-east-1.amazoncognito.com/oauth2/authorize",
            ),
            (
                "OIDC_TOKEN_URL",
                "https://apikeys-1.auth.us-east-1.amazoncognito.com/oauth2/token",
            ),
        ]);
        assert_eq!(
            emulated.discovery_url,
            "http://127.0.0.1:4566/us-east-1_Abc/.well-known/openid-configuration"
        );
        assert_eq!(
            emulated.authorize_url.as_deref(),
            Some("http://127.0.0.1:4566/oauth2/authorize")
        );
        assert_eq!(
            emulated.token_url.as_deref(),
            Some("http://127.0.0.1:4566/oauth2/token")
        );
        let chosen = oidc(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("OIDC_DISCOVERY_URL", "https://elsewhere.example/d"),
        ]);
        assert_eq!(chosen.discovery_url, "https://elsewhere.example/d");
        // Another issuer is never moved by an endpoint override.
        let other = OidcSettings::from_env(&env(&[
            base[0],
            ("OIDC_ISSUER", "https://login.example.com/"),
            ("OIDC_CLIENT_ID", "c"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("OIDC_EMAIL_DOMAINS", " Example.com, @corp.example ,,"),
        ]))
        .unwrap()
        .unwrap();
        // The issuer exactly as configured, its slash kept (tokens say it so).
        assert_eq!(other.issuer, "https://login.example.com/");
        assert_eq!(
            other.discovery_url,
            "https://login.example.com/.well-known/openid-configuration"
        );
        assert_eq!(other.email_domains, ["example.com", "corp.example"]);
        for bad in [("OIDC_CLIENT_ID", "stage:"), ("OIDC_JWKS_URL", "ftp://x")] {
            let mut all = vec![base[0], ("OIDC_ISSUER", pool), ("OIDC_CLIENT_ID", "c")];
            all.retain(|(k, _)| *k != bad.0);
            all.push(bad);
            assert!(OidcSettings::from_env(&env(&all)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_jwks_keeps_signing_keys_with_their_one_algorithm() {
        let set = br#"{"keys":[
            {"kid":"a","kty":"RSA","alg":"RS256","n":"AQAB","e":"AQAB"},
            {"kid":"b","kty":"RSA","n":"AQAB","e":"AQAB"},
            {"kid":"c","kty":"oct","alg":"HS256","k":"c2VjcmV0"},
            {"kid":"d","kty":"RSA","alg":"HS256","n":"AQAB","e":"AQAB"},
            {"kid":"e","kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},
            {"kid":"f","kty":"EC","crv":"P-256","x":"AA","y":"AA"},
            {"kid":"g","kty":"EC","crv":"P-521","x":"AA","y":"AA"},
            {"kty":"RSA","n":"AQAB","e":"AQAB"}
        ]}"#;
        let keys = jwks_of(set).unwrap();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b", "f"]);
        assert_eq!(keys["b"].algorithm, Algorithm::RS256);
        assert_eq!(keys["f"].algorithm, Algorithm::ES256);
        assert!(jwks_of(b"[]").is_err());
        assert!(jwks_of(b"not json").is_err());
    }

    #[test]
    fn the_issuer_is_read_from_the_payload_alone() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#);
        let iss = |t: &str| unverified_part::<IssOnly>(t, 1).map(|i| i.iss);
        assert_eq!(iss(&format!("h.{payload}.s")).as_deref(), Some("x"));
        assert_eq!(iss(&format!("h.{payload}.s.t")), None);
        assert_eq!(iss("h"), None);
        assert_eq!(iss("h.!!.s"), None);
    }
}
