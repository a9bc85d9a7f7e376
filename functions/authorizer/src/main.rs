//! Lambda entry point of the API Gateway authorizer.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    apikeys_platform::logging::init();
    let app = Arc::new(apikeys_authorizer::App::from_env()?);
    app.warm_up().await;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = Arc::clone(&app);
        async move { apikeys_authorizer::handle(&app, event.payload).await }
    }))
    .await
}
