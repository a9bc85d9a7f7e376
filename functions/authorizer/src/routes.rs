//! The route-to-scope map the authorizer enforces for scoped keys, given as
//! configuration (`ROUTE_SCOPES`, a JSON object such as
//! `{"GET /orders/*": "orders:read", "POST /orders": "orders:write"}`).
//!
//! A route is a method (or `*`/`ANY` for every method) and a path in which
//! `*` matches any run of characters, `/` included: exactly what `*` means
//! in the IAM policy a REST authorizer returns, so that the policy (which
//! API Gateway evaluates, and may cache for the key's other routes) and the
//! per-route answer given to HTTP APIs agree. A request is allowed to a
//! scoped key when an entry that matches it names a scope the key holds; a
//! request no entry matches is refused to every scoped key. A key without
//! scopes is not limited by the map.

use apikeys_core::policy::{scopes_grant, validate_scope};
use serde_json::Value;

/// The most entries a map may hold (the REST policy lists the allowed ones,
/// and API Gateway bounds a policy's size).
pub const MAX_ROUTES: usize = 100;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    /// `None`: every method.
    method: Option<String>,
    /// Without its leading `/`, as in a method ARN.
    path: String,
    scope: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMap {
    routes: Vec<Route>,
}

/// A request as its method ARN names it: `arn:…:api-id/stage` (the part
/// every resource of the stage starts with), the method and the path
/// (without its leading `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub stage: &'a str,
    pub method: &'a str,
    pub path: &'a str,
}

/// Splits `arn:aws:execute-api:region:account:api-id/stage/METHOD/path…`.
pub fn request_of(arn: &str) -> Option<Request<'_>> {
    let mut parts = arn.splitn(4, '/');
    let api = parts.next()?;
    let stage = parts.next()?;
    let method = parts.next()?;
    let path = parts.next().unwrap_or("");
    let stage_len = api.len().checked_add(1)?.checked_add(stage.len())?;
    Some(Request {
        stage: arn.get(..stage_len)?,
        method,
        path,
    })
}

/// Does `pattern` (with `*` for any run of characters) match `text`?
fn glob(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    let Some(mut left) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for piece in middle {
        let rest = left
            .find(piece)
            .and_then(|at| at.checked_add(piece.len()))
            .and_then(|end| left.get(end..));
        match rest {
            Some(rest) => left = rest,
            None => return false,
        }
    }
    left.ends_with(last)
}

fn valid_path(path: &str) -> bool {
    path.len() <= 256
        && path.strip_prefix('/').is_some_and(|rest| {
            rest.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.~*{}+%:@".contains(c))
        })
}

impl RouteMap {
    /// Reads the map (an absent or empty value is an empty map); an
    /// invalid one is refused with what is wrong, and the function does not
    /// start (a map read wrong would let the wrong requests through).
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self::default());
        };
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("ROUTE_SCOPES is not JSON: {e}"))?;
        let Value::Object(entries) = value else {
            return Err("ROUTE_SCOPES must be a JSON object of \"METHOD /path\": \"scope\"".into());
        };
        if entries.len() > MAX_ROUTES {
            return Err(format!("ROUTE_SCOPES may hold at most {MAX_ROUTES} routes"));
        }
        let mut routes = Vec::with_capacity(entries.len());
        for (route, scope) in entries {
            let wrong = |why: &str| format!("ROUTE_SCOPES entry \"{route}\": {why}");
            let (method, path) = route
                .split_once(' ')
                .ok_or_else(|| wrong("must be \"METHOD /path\""))?;
            let method =
                match method {
                    "*" | "ANY" => None,
                    m if METHODS.contains(&m) => Some(m.to_string()),
                    _ => return Err(wrong(
                        "the method must be GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY or *",
                    )),
                };
            let Some(path) = path.strip_prefix('/').filter(|_| valid_path(path)) else {
                return Err(wrong(
                    "the path must start with / and hold only letters, digits, /-_.~{}+%:@ and * (any run of characters)",
                ));
            };
            let Value::String(scope) = scope else {
                return Err(wrong("the scope must be a string"));
            };
            validate_scope(&scope).map_err(|e| wrong(&e))?;
            if scope.ends_with(":*") {
                return Err(wrong("a route names one scope, not a wildcard"));
            }
            routes.push(Route {
                method,
                path: path.to_string(),
                scope,
            });
        }
        Ok(Self { routes })
    }

    fn matching<'m>(&'m self, method: &'m str, path: &'m str) -> impl Iterator<Item = &'m Route> {
        self.routes
            .iter()
            .filter(move |r| r.method.as_deref().is_none_or(|m| m == method) && glob(&r.path, path))
    }

    /// May a key with `scopes` make `request`? `Err(scope)`: no, and the
    /// scope the route needs (the first entry's that matches it; `None`
    /// when no entry does).
    pub fn decide(
        &self,
        scopes: &[String],
        method: &str,
        path: &str,
    ) -> Result<(), Option<String>> {
        if scopes.is_empty() {
            return Ok(());
        }
        let mut needed = None;
        for route in self.matching(method, path) {
            if scopes_grant(scopes, &route.scope) {
                return Ok(());
            }
            needed.get_or_insert_with(|| route.scope.clone());
        }
        Err(needed)
    }

    /// The resources of a REST policy that allows exactly what `scopes`
    /// permit on the stage `stage` (`arn:…:api-id/stage`): every route of
    /// the stage for a key without scopes.
    pub fn resources(&self, scopes: &[String], stage: &str) -> Vec<String> {
        if scopes.is_empty() {
            return vec![format!("{stage}/*")];
        }
        let mut resources: Vec<String> = self
            .routes
            .iter()
            .filter(|r| scopes_grant(scopes, &r.scope))
            // A route of every method is one resource per method: a `*`
            // there would also match across the method into the path
            // (`*/orders/*` matches `DELETE/admin/orders/1`).
            .flat_map(|r| match r.method.as_deref() {
                Some(method) => vec![format!("{stage}/{method}/{}", r.path)],
                None => METHODS
                    .iter()
                    .map(|method| format!("{stage}/{method}/{}", r.path))
                    .collect(),
            })
            .collect();
        resources.sort();
        resources.dedup();
        resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> RouteMap {
        RouteMap::parse(Some(
            r#"{"GET /orders": "orders:read", "GET /orders/*": "orders:read",
                "POST /orders": "orders:write", "ANY /admin/*": "admin:all"}"#,
        ))
        .unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn globs_match_as_iam_does() {
        assert!(glob("orders/*", "orders/1"));
        assert!(glob("orders/*", "orders/1/items"));
        assert!(!glob("orders/*", "orders"));
        assert!(glob("orders", "orders"));
        assert!(!glob("orders", "orders/1"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXcYb"));
        assert!(glob("a*a", "aa"));
        assert!(!glob("a*a", "a"));
    }

    #[test]
    fn a_scoped_key_gets_the_routes_its_scopes_name_and_no_other() {
        let m = map();
        let read = s(&["orders:read"]);
        assert_eq!(m.decide(&read, "GET", "orders/42"), Ok(()));
        assert_eq!(
            m.decide(&read, "POST", "orders"),
            Err(Some("orders:write".into()))
        );
        assert_eq!(m.decide(&read, "GET", "unmapped"), Err(None));
        assert_eq!(m.decide(&s(&["orders:*"]), "POST", "orders"), Ok(()));
        assert_eq!(m.decide(&s(&["admin:all"]), "DELETE", "admin/x"), Ok(()));
        assert_eq!(m.decide(&[], "DELETE", "anything"), Ok(()));
        let stage = "arn:aws:execute-api:us-east-1:1:api/prod";
        assert_eq!(
            m.resources(&read, stage),
            vec![
                format!("{stage}/GET/orders"),
                format!("{stage}/GET/orders/*")
            ]
        );
        assert_eq!(
            m.resources(&s(&["nothing:here"]), stage),
            Vec::<String>::new()
        );
        assert_eq!(m.resources(&[], stage), vec![format!("{stage}/*")]);
    }

    #[test]
    fn a_method_arn_is_split_into_stage_method_and_path() {
        let arn = "arn:aws:execute-api:us-east-1:123:abc/prod/GET/orders/1";
        assert_eq!(
            request_of(arn),
            Some(Request {
                stage: "arn:aws:execute-api:us-east-1:123:abc/prod",
                method: "GET",
                path: "orders/1"
            })
        );
        assert_eq!(request_of("garbage"), None);
    }

    #[test]
    fn a_bad_map_is_refused_with_what_is_wrong() {
        assert_eq!(RouteMap::parse(None), Ok(RouteMap::default()));
        assert_eq!(RouteMap::parse(Some("  ")), Ok(RouteMap::default()));
        for bad in [
            "[]",
            "{",
            r#"{"GET": "a:b"}"#,
            r#"{"FETCH /x": "a:b"}"#,
            r#"{"GET x": "a:b"}"#,
            r#"{"GET /x?y": "a:b"}"#,
            r#"{"GET /x": "notascope"}"#,
            r#"{"GET /x": "a:*"}"#,
            r#"{"GET /x": 1}"#,
        ] {
            assert!(RouteMap::parse(Some(bad)).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> = (0..=MAX_ROUTES)
            .map(|i| (format!("GET /r{i}"), Value::String("a:b".into())))
            .collect();
        assert!(RouteMap::parse(Some(&Value::Object(many).to_string())).is_err());
    }
}
