//! Counts DynamoDB requests per operation, and the items they read, through
//! an SDK interceptor: what tests assert and benchmarks print.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<String, u64>,
    items_read: u64,
}

/// Requests sent (every attempt, retries included), by operation name, and
/// the items their answers read (a query's scanned items, a get's item, a
/// batch get's items).
#[derive(Clone, Debug, Default)]
pub struct RequestCounter(Arc<Mutex<Counts>>);

impl RequestCounter {
    /// A client like `base` whose every request is counted here.
    pub fn instrument(&self, base: &Client) -> Client {
        let config = base.config().to_builder().interceptor(self.clone()).build();
        Client::from_conf(config)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts().requests.clone()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Items the counted reads returned or scanned since the last reset.
    pub fn items_read(&self) -> u64 {
        self.counts().items_read
    }

    pub fn reset(&self) {
        let mut counts = self.counts();
        counts.requests.clear();
        counts.items_read = 0;
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", |m| m.name())
            .to_string();
        let mut counts = self.counts();
        let count = counts.requests.entry(operation).or_default();
        *count = count.saturating_add(1);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            return Ok(());
        };
        let read = if let Some(out) = output.downcast_ref::<QueryOutput>() {
            u64::try_from(out.scanned_count()).unwrap_or(0)
        } else if let Some(out) = output.downcast_ref::<GetItemOutput>() {
            u64::from(out.item().is_some())
        } else if let Some(out) = output.downcast_ref::<BatchGetItemOutput>() {
            out.responses()
                .map_or(0, |r| r.values().map(|items| items.len() as u64).sum())
        } else {
            0
        };
        let mut counts = self.counts();
        counts.items_read = counts.items_read.saturating_add(read);
        Ok(())
    }
}
