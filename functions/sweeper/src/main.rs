//! Lambda entry point of the expiry sweeper.

use std::sync::Arc;

use apikeys_sweeper::{handle, App, ScheduledEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    apikeys_platform::logging::init();
    let app = Arc::new(App::from_env()?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ScheduledEvent>| {
        let app = Arc::clone(&app);
        async move { handle(&app, event).await }
    }))
    .await
}
