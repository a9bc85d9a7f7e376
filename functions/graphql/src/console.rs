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
const ASSETS: [(&str, &str, &str); 15] = [
    ("app.css", CSS, include_str!("../console/app.css")),
    ("main.js", JS, include_str!("../console/main.js")),
    ("api.js", JS, include_str!("../console/api.js")),
    ("session.js", JS, include_str!("../console/session.js")),
    ("signin.js", JS, include_str!("../console/signin.js")),
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

/// The console's page; `token_url`: the identity provider's token
/// endpoint, the one other place its scripts may post to (the code of a
/// sign-in exchanged for the provider's tokens).
pub fn page(token_url: Option<&str>) -> Response<Body> {
    let mut response = answer(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    if let Some(origin) = token_url.and_then(origin_of) {
        let csp = CSP.replace(
            "connect-src 'self'",
            &format!("connect-src 'self' {origin}"),
        );
        if let Ok(value) = HeaderValue::from_str(&csp) {
            response
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    response
}

/// The origin (`scheme://host[:port]`) of an http(s) URL of plain
/// characters; `None` for anything else (nothing odd reaches the header).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    plain.then(|| format!("{scheme}://{authority}"))
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

#[cfg(test)]
mod origin_tests {
    use super::origin_of;

    #[test]
    fn only_a_plain_http_origin_reaches_the_policy() {
        assert_eq!(
            origin_of("https://x.auth.us-east-1.amazoncognito.com/oauth2/token").as_deref(),
            Some("https://x.auth.us-east-1.amazoncognito.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:4566/oauth2/token?x=1").as_deref(),
            Some("http://127.0.0.1:4566")
        );
        for bad in [
            "javascript:alert(1)",
            "https://a b/",
            "https://a;script-src */x",
            "ftp://x/",
            "https:///x",
            "x",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }
}
