//! The web console: a page and its two assets, embedded in the binary at
//! build time (no Node, no third-party origin). It talks to the public
//! GraphQL API only, with the API key the person signed in with.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};

/// The page (`GET /`) and its assets (`GET /console/<name>`).
#[cfg(not(feature = "no-console"))]
const PAGE: &str = include_str!("../console/index.html");
#[cfg(not(feature = "no-console"))]
const ASSETS: [(&str, &str, &str); 2] = [
    ("app.js", JS, include_str!("../console/app.js")),
    ("app.css", CSS, include_str!("../console/app.css")),
];
// The benchmark's build without the assets (what they add is measured).
#[cfg(feature = "no-console")]
const PAGE: &str = "";
#[cfg(feature = "no-console")]
const ASSETS: [(&str, &str, &str); 2] = [("app.js", JS, ""), ("app.css", CSS, "")];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Scripts and styles from this origin only (no inline script or style),
/// GraphQL requests to this origin only, never framed, no referrer.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's page.
pub fn page() -> Response<Body> {
    answer(StatusCode::OK, "text/html; charset=utf-8", PAGE)
}

/// One of the console's assets; `None` for any other name.
pub fn asset(name: &str) -> Option<Response<Body>> {
    ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .map(|(_, content_type, text)| answer(StatusCode::OK, content_type, text))
}

fn answer(status: StatusCode, content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Text(text.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small enough to fetch each time: a new deployment shows at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
