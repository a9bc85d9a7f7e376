//! Lambda entry point of the events function: the table's change stream in,
//! EventBridge events out.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    apikeys_platform::logging::init();
    let app = Arc::new(apikeys_events::App::from_env()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        async move { apikeys_events::handle(&app, event.payload).await }
    }))
    .await
}
