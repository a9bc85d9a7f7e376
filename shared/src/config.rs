//! Deployment configuration, read once from the environment into a typed struct.

use std::collections::HashMap;
use std::time::Duration;

/// The key limit is a rule: see [`crate::authz::MAX_KEYS_PER_OWNER`].
pub use crate::authz::MAX_KEYS_PER_OWNER;

/// Default cap on service accounts per tenant (`MAX_SERVICE_ACCOUNTS`).
pub const DEFAULT_MAX_SERVICE_ACCOUNTS: u32 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where and how the store reaches DynamoDB.
    pub store: apikeys_store::StoreSettings,
    /// A request's whole time when Lambda does not give a deadline (the dev
    /// server, tests): the function's timeout in template.yaml
    /// (`REQUEST_TIMEOUT_MS`, default 10000).
    pub request_timeout: Duration,
    /// Prefix of user keys (`USER_KEY_PREFIX`, default `apk`).
    pub user_key_prefix: String,
    /// Prefix of service-account keys (`SERVICE_KEY_PREFIX`, default `apks`).
    pub service_key_prefix: String,
    /// Allow schema introspection (`ENABLE_INTROSPECTION`, default false;
    /// `ENABLE_GRAPHIQL`, its former name, is still read).
    pub introspection: bool,
    /// Service accounts a tenant may have (`MAX_SERVICE_ACCOUNTS`, 1 to
    /// 10000, default 100).
    pub max_service_accounts: u32,
    /// Warm up during init: open the DynamoDB connection (TCP and TLS) and
    /// run the request path once, so the first request pays no handshake
    /// (`WARM_CONNECTION`, default true).
    pub warm_connection: bool,
    /// How long audit records are kept (`AUDIT_RETENTION_DAYS`, 1 to 3653,
    /// default 365); DynamoDB's TTL removes them after.
    pub audit_retention: time::Duration,
    /// A key's `last_used` is recorded at most once per this interval
    /// (`LAST_USED_INTERVAL_SECONDS`, 1 to 86400, default 300): it is
    /// accurate to this interval.
    pub last_used_interval: time::Duration,
    /// Where GitHub's secret scanning public keys are fetched from
    /// (`GITHUB_SCANNING_KEYS_URL`, default GitHub's own; tests serve
    /// theirs).
    pub github_keys_url: String,
    /// The SHA-256 (hex) of the pre-shared token GitLab's secret detection
    /// sends to the token revocation API (`GITLAB_TOKEN_SHA256`, resolved
    /// from SSM at deployment; unset: that entrance is closed). Only the
    /// hash is configured, so the environment never holds the token.
    pub gitlab_token_sha256: Option<String>,
    /// The identity provider people sign in with (`OIDC_ISSUER` and
    /// `OIDC_CLIENT_ID`, with the optional `OIDC_*` of
    /// [`crate::oidc::OidcSettings`]); unset: nobody signs in, keys only.
    pub oidc: Option<crate::oidc::OidcSettings>,
}

/// A request's whole time when Lambda gives no deadline: the functions'
/// timeout in template.yaml.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(10_000);

/// The longest grace a rotation may give the replaced key.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 7 * 24 * 3600;

pub use apikeys_platform::ConfigError;
use apikeys_platform::Env;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::from_map(vars);
        let prefix = |name: &str, default: &str| -> Result<String, ConfigError> {
            let value = env.get(name).unwrap_or(default);
            let ok = (1..=16).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if ok {
                Ok(value.to_string())
            } else {
                Err(ConfigError::new(format!(
                    "{name} must be 1 to 16 characters of a-z, 0-9 and '_'"
                )))
            }
        };
        let user_key_prefix = prefix("USER_KEY_PREFIX", "apk")?;
        let service_key_prefix = prefix("SERVICE_KEY_PREFIX", "apks")?;
        if user_key_prefix == service_key_prefix {
            return Err(ConfigError::new(
                "USER_KEY_PREFIX and SERVICE_KEY_PREFIX must differ",
            ));
        }
        let introspection =
            env.switch("ENABLE_INTROSPECTION", false)? || env.switch("ENABLE_GRAPHIQL", false)?;
        let max_service_accounts = env.whole(
            "MAX_SERVICE_ACCOUNTS",
            i64::from(DEFAULT_MAX_SERVICE_ACCOUNTS),
            1,
            10_000,
            "a whole number",
        )?;
        Ok(Self {
            store: apikeys_store::StoreSettings::from_env(&env)?,
            request_timeout: env.millis("REQUEST_TIMEOUT_MS", DEFAULT_REQUEST_TIMEOUT)?,
            user_key_prefix,
            service_key_prefix,
            introspection,
            max_service_accounts: u32::try_from(max_service_accounts)
                .unwrap_or(DEFAULT_MAX_SERVICE_ACCOUNTS),
            warm_connection: env.switch("WARM_CONNECTION", true)?,
            audit_retention: time::Duration::days(env.whole(
                "AUDIT_RETENTION_DAYS",
                365,
                1,
                3653,
                "days",
            )?),
            last_used_interval: time::Duration::seconds(env.whole(
                "LAST_USED_INTERVAL_SECONDS",
                300,
                1,
                86_400,
                "seconds",
            )?),
            github_keys_url: env
                .get("GITHUB_SCANNING_KEYS_URL")
                .unwrap_or(crate::scanning::GITHUB_KEYS_URL)
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
            oidc: oidc_settings(vars)?,
        })
    }
}

/// The identity provider's settings: none without an issuer and a client.
fn oidc_settings(
    env: &HashMap<String, String>,
) -> Result<Option<crate::oidc::OidcSettings>, ConfigError> {
    let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
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
                if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2048 =>
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
    Ok(Some(crate::oidc::OidcSettings {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_identity_provider_needs_issuer_and_client_and_finds_an_emulated_cognito() {
        let base = [("TABLE_NAME", "t")];
        assert_eq!(Config::from_map(&env(&base)).unwrap().oidc, None);
        for half in [
            ("OIDC_ISSUER", "https://idp.example"),
            ("OIDC_CLIENT_ID", "c"),
        ] {
            let err = Config::from_map(&env(&[base[0], half])).unwrap_err();
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
            Config::from_map(&env(&all)).unwrap().oidc.unwrap()
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
        let other = Config::from_map(&env(&[
            base[0],
            ("OIDC_ISSUER", "https://login.example.com/"),
            ("OIDC_CLIENT_ID", "c"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("OIDC_EMAIL_DOMAINS", " Example.com, @corp.example ,,"),
        ]))
        .unwrap()
        .oidc
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
            assert!(Config::from_map(&env(&all)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retention_and_interval_have_defaults_and_bounds() {
        let config = Config::from_map(&env(&[("TABLE_NAME", "t")])).unwrap();
        assert_eq!(config.audit_retention, time::Duration::days(365));
        assert_eq!(config.last_used_interval, time::Duration::minutes(5));
        for (name, bad) in [
            ("AUDIT_RETENTION_DAYS", "0"),
            ("AUDIT_RETENTION_DAYS", "3654"),
            ("AUDIT_RETENTION_DAYS", "-1"),
            ("LAST_USED_INTERVAL_SECONDS", "86401"),
            ("LAST_USED_INTERVAL_SECONDS", "1.5"),
        ] {
            let err = Config::from_map(&env(&[("TABLE_NAME", "t"), (name, bad)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn missing_table_name_is_named_in_the_error() {
        let err = Config::from_map(&env(&[])).unwrap_err();
        assert!(err.to_string().contains("TABLE_NAME"));
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_map(&env(&[("TABLE_NAME", "t")])).unwrap();
        assert_eq!(config.user_key_prefix, "apk");
        assert_eq!(config.service_key_prefix, "apks");
        assert_eq!(config.store.endpoint, None);
        assert!(!config.introspection);
        assert!(config.warm_connection);
        assert_eq!(config.max_service_accounts, DEFAULT_MAX_SERVICE_ACCOUNTS);
    }

    #[test]
    fn the_endpoint_comes_from_our_variable_then_the_sdks_standard_ones() {
        let endpoint = |pairs: &[(&str, &str)]| {
            let mut all = vec![("TABLE_NAME", "t")];
            all.extend_from_slice(pairs);
            Config::from_map(&env(&all)).unwrap().store.endpoint
        };
        assert_eq!(endpoint(&[]), None);
        assert_eq!(
            endpoint(&[("AWS_ENDPOINT_URL", "http://a")]).as_deref(),
            Some("http://a")
        );
        let both = [
            ("AWS_ENDPOINT_URL", "http://a"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://d"),
        ];
        assert_eq!(endpoint(&both).as_deref(), Some("http://d"));
        let all = [
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://d"),
            ("DYNAMODB_ENDPOINT", "http://x"),
        ];
        assert_eq!(endpoint(&all).as_deref(), Some("http://x"));
    }

    #[test]
    fn bad_prefix_and_switch_are_rejected_by_name() {
        let err = Config::from_map(&env(&[("TABLE_NAME", "t"), ("USER_KEY_PREFIX", "A-B")]));
        assert!(err.unwrap_err().to_string().contains("USER_KEY_PREFIX"));
        let err = Config::from_map(&env(&[("TABLE_NAME", "t"), ("ENABLE_GRAPHIQL", "yes")]));
        assert!(err.unwrap_err().to_string().contains("ENABLE_GRAPHIQL"));
        for name in ["DYNAMODB_ATTEMPT_TIMEOUT_MS", "REQUEST_TIMEOUT_MS"] {
            for bad in ["0", "-5", "1.5", "900001", "soon"] {
                let err = Config::from_map(&env(&[("TABLE_NAME", "t"), (name, bad)]));
                assert!(err.unwrap_err().to_string().contains(name), "{name}={bad}");
            }
        }
        for bad in ["0", "-1", "10001", "lots", "99999999999"] {
            let err = Config::from_map(&env(&[("TABLE_NAME", "t"), ("MAX_SERVICE_ACCOUNTS", bad)]));
            assert!(
                err.unwrap_err()
                    .to_string()
                    .contains("MAX_SERVICE_ACCOUNTS"),
                "{bad}"
            );
        }
    }
}
