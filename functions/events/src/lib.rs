//! The events function: reads the table's change stream (DynamoDB Streams,
//! new images) and puts one EventBridge event per audit record inserted,
//! on the bus `EVENT_BUS_NAME` (source `apikeys`; see `apikeys_store::events`).
//!
//! Delivery is at least once: a batch whose events are not all accepted
//! fails as a whole, and the stream gives it again (then, past its age
//! limit, the event source mapping sends it to the failure queue). A
//! consumer drops a duplicate by `detail.event_id`.

// Nothing a record, the network or EventBridge can influence may panic
// (with panic = "abort" a panic ends the Lambda instance): enforced by
// clippy, with the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

use apikeys_platform::ConfigError;
use apikeys_store::events::{audit_records_of_stream, detail, detail_type, SOURCE};
use aws_sdk_eventbridge::config::BehaviorVersion;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::Value;

/// EventBridge takes at most 10 entries a PutEvents.
const ENTRIES_PER_PUT: usize = 10;

pub struct App {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl App {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    /// The client from the environment, as the other functions build
    /// theirs: region and credentials of the function's role, our HTTPS
    /// client, an endpoint override (`AWS_ENDPOINT_URL_EVENTBRIDGE`, else
    /// `AWS_ENDPOINT_URL`) for an emulator.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (region, credentials) = apikeys_store::region_and_credentials()?;
        let mut builder = aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(apikeys_platform::https::https_client()?)
            .region(region)
            .credentials_provider(credentials);
        if let Some(endpoint) =
            var("AWS_ENDPOINT_URL_EVENTBRIDGE").or_else(|| var("AWS_ENDPOINT_URL"))
        {
            builder = builder.endpoint_url(endpoint);
        }
        let bus = var("EVENT_BUS_NAME").unwrap_or_else(|| "default".into());
        Ok(Self::new(
            aws_sdk_eventbridge::Client::from_conf(builder.build()),
            bus,
        ))
    }
}

/// The EventBridge entries of a change-stream batch: one per audit record
/// inserted, in order.
pub fn entries(bus: &str, event: &Value) -> Result<Vec<PutEventsRequestEntry>, String> {
    Ok(audit_records_of_stream(event)?
        .iter()
        .map(|record| {
            PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source(SOURCE)
                .detail_type(detail_type(record.action))
                .detail(detail(record).to_string())
                .resources(format!("apikeys:tenant/{}", record.tenant_id))
                .time(aws_sdk_eventbridge::primitives::DateTime::from_secs(
                    record.at.unix_timestamp(),
                ))
                .build()
        })
        .collect())
}

/// Handles one change-stream batch: `Err` fails it (the stream gives it
/// again), which is what every failure to put an event does.
pub async fn handle(app: &App, event: Value) -> Result<Value, lambda_runtime::Error> {
    let entries = entries(&app.bus, &event).map_err(|e| {
        tracing::error!(error = %e, "a change-stream record could not be read");
        lambda_runtime::Error::from(e)
    })?;
    let mut put: usize = 0;
    for chunk in entries.chunks(ENTRIES_PER_PUT) {
        let out = app
            .client
            .put_events()
            .set_entries(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| {
                tracing::error!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
                lambda_runtime::Error::from("PutEvents failed: the batch is retried")
            })?;
        if out.failed_entry_count() > 0 {
            let codes: Vec<String> = out
                .entries()
                .iter()
                .filter_map(|e| e.error_code().map(str::to_string))
                .collect();
            tracing::error!(
                failed = out.failed_entry_count(),
                ?codes,
                "events not accepted"
            );
            return Err("some events were not accepted: the batch is retried".into());
        }
        put = put.saturating_add(chunk.len());
    }
    tracing::info!(events = put, "events put");
    Ok(serde_json::json!({"events": put}))
}
