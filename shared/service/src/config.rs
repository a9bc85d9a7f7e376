//! The service's settings, read once from the environment into a typed
//! struct: the store's (see `apikeys_store::StoreSettings`), the key
//! prefixes, the limits, the audit log's retention, how often a key's use
//! is recorded, and the request-serving functions' time and warm-up. Sign-in
//! and secret scanning have their own (`apikeys-idp`), read by the GraphQL
//! function alone.

use std::collections::HashMap;
use std::time::Duration;

/// The key limit is a rule: see [`apikeys_core::authz::MAX_KEYS_PER_OWNER`].
pub use apikeys_core::authz::MAX_KEYS_PER_OWNER;

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
        })
    }
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
        let err = Config::from_map(&env(&[("TABLE_NAME", "t"), ("WARM_CONNECTION", "yes")]));
        assert!(err.unwrap_err().to_string().contains("WARM_CONNECTION"));
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
