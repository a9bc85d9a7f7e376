//! The store's settings, read from the environment: which table, where
//! DynamoDB is, how long a call may take, and how many changes a member may
//! make a minute.

use std::time::Duration;

use apikeys_platform::{ConfigError, Env};

/// Time limits of every DynamoDB call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection (TCP and TLS) to DynamoDB.
    pub connect: Duration,
    /// One try of one DynamoDB call (`DYNAMODB_ATTEMPT_TIMEOUT_MS`, default
    /// 2000): DynamoDB answers in milliseconds, so this only ends a stalled
    /// connection, and the SDK tries again on a fresh one.
    pub attempt: Duration,
    /// All tries of one call (`DYNAMODB_OPERATION_TIMEOUT_MS`, default 5000).
    pub operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(1000),
            attempt: Duration::from_millis(2000),
            operation: Duration::from_millis(5000),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// The DynamoDB table holding every item (`TABLE_NAME`).
    pub table_name: String,
    /// Endpoint override (a local DynamoDB, an emulator): `DYNAMODB_ENDPOINT`,
    /// else the AWS SDKs' standard `AWS_ENDPOINT_URL_DYNAMODB`, else
    /// `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    pub timeouts: Timeouts,
    /// Changes (audited writes: key and account changes) one member may
    /// make per minute in a tenant (`CHANGES_PER_MINUTE`, 0 to 100000,
    /// default 60; 0: no limit). Refused changes are written nowhere.
    pub changes_per_minute: u32,
}

impl StoreSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let table_name = env
            .get("TABLE_NAME")
            .ok_or_else(|| ConfigError::new("TABLE_NAME is not set: name the DynamoDB table"))?
            .to_string();
        let defaults = Timeouts::default();
        let changes = env.whole("CHANGES_PER_MINUTE", 60, 0, 100_000, "a whole number")?;
        Ok(Self {
            table_name,
            endpoint: [
                "DYNAMODB_ENDPOINT",
                "AWS_ENDPOINT_URL_DYNAMODB",
                "AWS_ENDPOINT_URL",
            ]
            .into_iter()
            .find_map(|name| env.get(name))
            .map(str::to_string),
            timeouts: Timeouts {
                connect: defaults.connect,
                attempt: env.millis("DYNAMODB_ATTEMPT_TIMEOUT_MS", defaults.attempt)?,
                operation: env.millis("DYNAMODB_OPERATION_TIMEOUT_MS", defaults.operation)?,
            },
            changes_per_minute: u32::try_from(changes).unwrap_or(60),
        })
    }
}
