//! The router: each route of the function to its family's module (GraphQL,
//! secret scanning, the console); everything else is 404 or 405.

use std::time::Instant;

use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};

use crate::console;

use crate::app::App;
use crate::edge::{error_body, json_response, route_path};
use crate::routes::graphql::graphql;
use crate::routes::scanning::{github_report, gitlab_revoke, gitlab_types};

/// Handles one HTTP request. Never fails: every error becomes a response.
pub async fn handle(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let path = route_path(&request).trim_end_matches('/').to_string();
    let response = match (request.method(), path.as_str()) {
        (&Method::POST, "" | "/graphql") => graphql(app, &request).await,
        (&Method::POST, "/secret-scanning/github") => github_report(app, &request).await,
        (&Method::GET, "/secret-scanning/gitlab/v1/revocable_token_types") => {
            gitlab_types(app, &request)
        }
        (&Method::POST, "/secret-scanning/gitlab/v1/revoke_tokens") => {
            gitlab_revoke(app, &request).await
        }
        (&Method::GET | &Method::HEAD, "") => console::page(
            app.settings
                .oidc
                .as_ref()
                .and_then(|o| o.token_url.as_deref()),
        ),
        (&Method::GET | &Method::HEAD, asset) if asset.starts_with("/console/") => {
            console::asset(asset.trim_start_matches("/console/")).unwrap_or_else(|| {
                json_response(StatusCode::NOT_FOUND, &error_body("not found", "NOT_FOUND"))
            })
        }
        (_, "" | "/graphql") => {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &error_body("use POST with a JSON GraphQL request", "METHOD_NOT_ALLOWED"),
            );
            let allow = if path.is_empty() {
                "GET, HEAD, POST"
            } else {
                "POST"
            };
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            response
        }
        _ => json_response(StatusCode::NOT_FOUND, &error_body("not found", "NOT_FOUND")),
    };
    tracing::info!(
        method = %request.method(),
        path = %path,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}
