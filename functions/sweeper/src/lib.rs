//! The sweeper Lambda: each EventBridge schedule tick sweeps expired keys.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use apikeys_core::clock::{Clock, SystemClock};
use apikeys_service::config::{Config, ConfigError};
use apikeys_service::sweep::{SweepReport, Sweeper};
use apikeys_store::{dynamodb_client, Store};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::Value;

/// The scheduled event, as EventBridge sends it (and `sam local
/// generate-event cloudwatch scheduled-event` makes it).
pub type ScheduledEvent = EventBridgeEvent<Value>;

pub struct App {
    pub sweeper: Sweeper,
    clock: Arc<dyn Clock>,
}

impl App {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            sweeper: Sweeper::new(store),
            clock,
        }
    }

    /// Built once per cold start. Throttling and transient errors are retried
    /// by the SDK with exponential backoff, longer than the default.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let client = dynamodb_client(&config.store)?;
        let retries = RetryConfig::standard()
            .with_max_attempts(8)
            .with_max_backoff(Duration::from_secs(5));
        let client = aws_sdk_dynamodb::Client::from_conf(
            client.config().to_builder().retry_config(retries).build(),
        );
        let mut app = Self::new(
            Store::new(client, config.store.table_name.clone()),
            Arc::new(SystemClock),
        );
        app.sweeper = app.sweeper.with_audit_retention(config.audit_retention);
        Ok(app)
    }
}

/// When the invocation must have returned, from the context's deadline.
fn deadline_of(context: &lambda_runtime::Context) -> Option<Instant> {
    if context.deadline == 0 {
        return None;
    }
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now().checked_add(left)
}

/// Sweeps once; the report is logged as one line and returned.
pub async fn handle(app: &App, event: LambdaEvent<ScheduledEvent>) -> Result<SweepReport, Error> {
    let deadline = deadline_of(&event.context);
    let report = app.sweeper.sweep(app.clock.now(), deadline).await?;
    tracing::info!(
        event_id = event.payload.id.as_deref().unwrap_or(""),
        swept = report.swept,
        skipped = report.skipped,
        failed = report.failed,
        pages = report.pages,
        buckets = report.buckets,
        retried = report.retried,
        left_over = report.left_over,
        complete = report.complete,
        checkpoint = %report.checkpoint,
        duration_ms = report.duration_ms,
        "sweep"
    );
    Ok(report)
}
