//! The DynamoDB client every function builds: its credentials, time limits
//! and retry policy, and how a failed call becomes a [`StoreError`].

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::interceptors::InterceptorContext;
use aws_sdk_dynamodb::config::retry::{
    ClassifyRetry, RetryAction, RetryConfig, RetryPartition, TokenBucket,
};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;

use crate::settings::{StoreSettings, Timeouts};

use super::*;

/// DynamoDB error codes that mean "not now" rather than "never".
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflictException",
    "LimitExceededException",
];

impl<E> From<SdkError<E, HttpResponse>> for StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        // DynamoDB refused the request (a 4xx, a 503): the write did not
        // apply. Any other failure (a 500, a time-out, a connection lost
        // after sending, an answer that could not be read) leaves a write's
        // outcome unknown.
        let transient = |message: String, unknown_outcome: bool| StoreError::Transient {
            message,
            unknown_outcome,
        };
        match &err {
            SdkError::TimeoutError(_) => transient("no answer in time".into(), true),
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                transient(DisplayErrorContext(&err).to_string(), true)
            }
            SdkError::ServiceError(service) => {
                let code = err.code().unwrap_or("");
                let status = service.raw().status().as_u16();
                let text = format!("{code}: {}", err.message().unwrap_or(""));
                if code.is_empty() {
                    // An answer that is no DynamoDB error (a cut or foreign
                    // body): whatever it said, a write may have applied.
                    transient(format!("unreadable answer, HTTP {status}"), true)
                } else if status == 500 {
                    // DynamoDB failed while handling it: a write may have
                    // applied (its documentation says so of a 500 on a
                    // TransactWriteItems, and a conditional write is no
                    // different).
                    transient(text, true)
                } else if TRANSIENT_CODES.contains(&code) || status > 500 {
                    // Throttled, cancelled, or turned away unhandled (503):
                    // nothing was applied.
                    transient(text, false)
                } else {
                    StoreError::Sdk(text)
                }
            }
            _ => StoreError::Sdk(DisplayErrorContext(&err).to_string()),
        }
    }
}

/// A failed read changed nothing, whatever happened to it.
pub(super) fn read_error<E>(err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match StoreError::from(err) {
        StoreError::Transient { message, .. } => StoreError::Transient {
            message,
            unknown_outcome: false,
        },
        other => other,
    }
}

impl From<aws_sdk_dynamodb::error::BuildError> for StoreError {
    fn from(err: aws_sdk_dynamodb::error::BuildError) -> Self {
        StoreError::Sdk(err.to_string())
    }
}

/// Builds the DynamoDB client from the environment Lambda provides: region
/// (`AWS_REGION`) and credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), plus the configured endpoint override.
///
/// These variables are the first link of aws-config's default chain, and the
/// only one a Lambda uses; skipping the rest of the chain (profiles, SSO, STS,
/// IMDS) keeps those crates out of the bootstrap and their work out of init.
/// The operator CLI, run by people with profiles and SSO, uses aws-config.
pub fn dynamodb_client(config: &StoreSettings) -> std::result::Result<Client, ConfigError> {
    dynamodb_client_over(config, apikeys_platform::https::https_client()?)
}

/// The region and the credentials of the function's role, as Lambda puts
/// them in the environment (read, never fetched: no network at init): what
/// every AWS client of apikeys is built with.
pub fn region_and_credentials() -> std::result::Result<(Region, Credentials), ConfigError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing = |name: &str| ConfigError::new(format!("{name} is not set"));
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or_else(|| missing("AWS_REGION"))?;
    let credentials = Credentials::new(
        var("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
        var("AWS_SECRET_ACCESS_KEY").ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    Ok((Region::new(region), credentials))
}

/// [`dynamodb_client`] over a given HTTP client.
pub fn dynamodb_client_over(
    config: &StoreSettings,
    http: SharedHttpClient,
) -> std::result::Result<Client, ConfigError> {
    let (region, credentials) = region_and_credentials()?;
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .region(region)
        .credentials_provider(credentials);
    builder = with_limits(builder, config);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    Ok(Client::from_conf(builder.build()))
}

/// The time limits and retry policy every apikeys client uses (the
/// functions' and the operator CLI's).
pub fn with_limits(
    builder: aws_sdk_dynamodb::config::Builder,
    config: &StoreSettings,
) -> aws_sdk_dynamodb::config::Builder {
    builder
        .timeout_config(timeouts(&config.timeouts))
        .retry_config(retry_config())
        .retry_partition(retry_partition())
        .retry_classifier(UnreadableAnswerIsTransient)
}

/// Every call bounded: connect, each attempt, and all attempts together.
fn timeouts(deadlines: &Timeouts) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(deadlines.connect)
        .read_timeout(deadlines.attempt)
        .operation_attempt_timeout(deadlines.attempt)
        .operation_timeout(deadlines.operation)
        .build()
}

/// Attempts per call, including the first: a 10-second function has time
/// for three short tries, not for the SDK's long backoffs.
pub const MAX_ATTEMPTS: u32 = 3;

/// An answer with a success status that cannot be read (a cut body) is a
/// transient failure like a dropped connection; the SDK alone would give up
/// on it at once. Other answers are left to the SDK's own classifiers.
#[derive(Debug)]
struct UnreadableAnswerIsTransient;

impl ClassifyRetry for UnreadableAnswerIsTransient {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let failed = matches!(ctx.output_or_error(), Some(Err(_)));
        let success_status = ctx
            .response()
            .is_some_and(|response| response.status().is_success());
        if failed && success_status {
            RetryAction::transient_error()
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "UnreadableAnswerIsTransient"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

pub(super) fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(std::time::Duration::from_millis(20))
        .with_max_backoff(std::time::Duration::from_millis(400))
}

/// The retry budget of one warm instance. The SDK's default bucket (500
/// tokens, 14 a retry, never refilled by time) is emptied by a burst of
/// errors and then leaves every request one attempt until enough successes
/// pay it back. This one still stops retry storms (a retry costs 5 tokens,
/// a timed-out one 10) but refills by itself, 50 tokens a second, and a
/// success pays 1 back.
fn retry_partition() -> RetryPartition {
    let bucket = TokenBucket::builder()
        .capacity(500)
        .retry_cost(5)
        .throttling_retry_cost(5)
        .timeout_retry_cost(10)
        .success_reward(1.0)
        .refill_rate(50.0)
        .build();
    RetryPartition::custom("apikeys-dynamodb")
        .token_bucket(bucket)
        .build()
}
