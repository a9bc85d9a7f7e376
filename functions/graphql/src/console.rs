//! The web console: a page, its styles and its ES modules, embedded in the
//! binary at build time (no Node, no bundler, no third-party origin). It talks to the public
//! GraphQL API only, with the API key the person signed in with.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};

/// The page (`GET /`) and its assets (`GET /console/<name>`): the styles
/// and the ES modules (`main.js` imports the others; no bundler).
#[cfg(not(feature = "no-console"))]
const PAGE: &str = include_str!("../console/index.html");
#[cfg(not(feature = "no-console"))]
const ASSETS: [(&str, &str, &str); 14] = [
    ("app.css", CSS, include_str!("../console/app.css")),
    ("main.js", JS, include_str!("../console/main.js")),
    ("api.js", JS, include_str!("../console/api.js")),
    ("session.js", JS, include_str!("../console/session.js")),
    ("router.js", JS, include_str!("../console/router.js")),
    ("dom.js", JS, include_str!("../console/dom.js")),
    ("dialog.js", JS, include_str!("../console/dialog.js")),
    ("roles.js", JS, include_str!("../console/roles.js")),
    ("keys-ui.js", JS, include_str!("../console/keys-ui.js")),
    ("page-keys.js", JS, include_str!("../console/page-keys.js")),
    (
        "page-service-accounts.js",
        JS,
        include_str!("../console/page-service-accounts.js"),
    ),
    (
        "page-members.js",
        JS,
        include_str!("../console/page-members.js"),
    ),
    (
        "page-audit.js",
        JS,
        include_str!("../console/page-audit.js"),
    ),
    (
        "page-settings.js",
        JS,
        include_str!("../console/page-settings.js"),
    ),
];
// The benchmark's build without the assets (what they add is measured).
#[cfg(feature = "no-console")]
const PAGE: &str = "";
#[cfg(feature = "no-console")]
const ASSETS: [(&str, &str, &str); 2] = [("main.js", JS, ""), ("app.css", CSS, "")];

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
