//! The secret scanning entrances: GitHub's partner program
//! (`POST /secret-scanning/github`, signed reports) and GitLab's token
//! revocation API (behind its pre-shared token).

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use crate::app::App;
use crate::edge::{authorization, deadline_of, header_str, json_response, with_retry_after};

/// HTTP 413 for a leak report over 1 MiB, refused before anything else.
pub(crate) fn report_too_large(body: &[u8]) -> Option<Response<Body>> {
    (body.len() > apikeys_core::reports::MAX_REPORT_BYTES).then(|| {
        json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"message": "a report is at most 1 MiB"}),
        )
    })
}

/// `POST /secret-scanning/github`: a report of GitHub's secret scanning
/// partner program. The signature is checked before anything else (an
/// unsigned, badly signed or oversized report costs no database request);
/// the answer is GitHub's feedback array (token hashes, never tokens).
pub(crate) async fn github_report(app: &App, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if let Some(refused) = report_too_large(body) {
        return refused;
    }
    let keys = app.github_keys.get_or_init(|| {
        apikeys_idp::github::GithubKeys::new(app.settings.scanning.github_keys_url.clone())
            .map_err(|e| tracing::error!(error = %e, "secret scanning reports will be refused"))
            .ok()
    });
    let Some(keys) = keys else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "secret scanning is not available"}),
        );
    };
    let verified = keys
        .verify(
            header_str(request, "github-public-key-identifier"),
            header_str(request, "github-public-key-signature"),
            body,
            app.service.now(),
        )
        .await;
    match verified {
        Ok(Ok(())) => {}
        Ok(Err(bad)) => {
            // Anyone can send these: info, not a warning per forged request.
            tracing::info!(why = bad.message(), "secret scanning report refused");
            return json_response(StatusCode::UNAUTHORIZED, &json!({"message": bad.message()}));
        }
        Err(e) => {
            tracing::warn!(error = %e, "GitHub's secret scanning keys could not be fetched");
            return with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"message": "the signing keys could not be fetched: send the report again later"}),
            ));
        }
    }
    let matches = match apikeys_core::reports::parse_report(body) {
        Ok(matches) => matches,
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({"message": message}))
        }
    };
    let deadline = deadline_of(app, request);
    let work = app.service.report_leaks("GitHub secret scanning", &matches);
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(Ok(outcome)) => {
            let feedback: Vec<Value> = outcome
                .feedback
                .iter()
                .map(|f| json!({"token_hash": f.token_hash, "token_type": f.token_type, "label": f.label}))
                .collect();
            json_response(StatusCode::OK, &Value::Array(feedback))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a secret scanning report stopped part way");
            with_retry_after(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"message": "the report was not fully handled: send it again (what was done is not done twice)"}),
            ))
        }
        Err(_) => with_retry_after(json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "the report was not fully handled in time: send it again (what was done is not done twice)"}),
        )),
    }
}

/// Is the request GitLab's, by its pre-shared token? (`None`: the GitLab
/// entrance is not configured, answered like a bad token.)
pub(crate) fn gitlab_allowed(app: &App, request: &Request) -> bool {
    app.settings
        .scanning
        .gitlab_token_sha256
        .as_deref()
        .is_some_and(|hash| {
            // Sent twice: refused, as `authorization` answers none.
            apikeys_core::reports::gitlab_token_matches(authorization(request), hash)
        })
}

pub(crate) fn gitlab_unauthorized() -> Response<Body> {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"message": "the Authorization header must hold the token revocation API's pre-shared token"}),
    )
}

/// `GET /secret-scanning/gitlab/v1/revocable_token_types`: GitLab's token
/// revocation API, the types it may send.
pub(crate) fn gitlab_types(app: &App, request: &Request) -> Response<Body> {
    if !gitlab_allowed(app, request) {
        return gitlab_unauthorized();
    }
    json_response(
        StatusCode::OK,
        &json!({"types": apikeys_core::reports::GITLAB_TOKEN_TYPES}),
    )
}

/// `POST /secret-scanning/gitlab/v1/revoke_tokens`: GitLab's token
/// revocation API, the same handling as a GitHub report (204 once every
/// token is handled; a failure part way is 429, which GitLab retries).
pub(crate) async fn gitlab_revoke(app: &App, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if let Some(refused) = report_too_large(body) {
        return refused;
    }
    if !gitlab_allowed(app, request) {
        tracing::info!("token revocation request refused: wrong or missing token");
        return gitlab_unauthorized();
    }
    let matches = match apikeys_core::reports::parse_gitlab_request(body) {
        Ok((matches, 0)) => matches,
        Ok((matches, left_out)) => {
            tracing::info!(
                left_out,
                "token revocation entries of other types or without a token left out"
            );
            matches
        }
        Err(message) => {
            return json_response(StatusCode::BAD_REQUEST, &json!({"message": message}))
        }
    };
    let deadline = deadline_of(app, request);
    let work = app
        .service
        .report_leaks("GitLab secret detection", &matches);
    let retry_later = |message: &str| {
        let mut response =
            json_response(StatusCode::TOO_MANY_REQUESTS, &json!({"message": message}));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        response
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Ok(Ok(_)) => {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a token revocation request stopped part way");
            retry_later("the request was not fully handled: send it again (what was done is not done twice)")
        }
        Err(_) => retry_later("the request was not fully handled in time: send it again"),
    }
}
