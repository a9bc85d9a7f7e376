//! Lambda entry point of the GraphQL endpoint.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    apikeys_platform::logging::init();
    let app = Arc::new(apikeys_graphql::App::from_env()?);
    app.warm_up().await;
    lambda_http::run(service_fn(move |request: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Error>(apikeys_graphql::handle(&app, request).await) }
    }))
    .await
}
