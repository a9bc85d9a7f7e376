//! A fault-injecting HTTP proxy on 127.0.0.1 in front of the local DynamoDB:
//! what a bad network and a struggling DynamoDB look like to the SDK.
//! Used in-process by `tests/faults.rs` and as the `fault-proxy` binary by
//! the end-to-end tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One way a DynamoDB request can go wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The connection closes before the request is forwarded.
    ResetBefore,
    /// The request is forwarded (and applied), then the connection closes.
    ResetAfter,
    /// HTTP 500 `InternalServerError`, the request not forwarded.
    InternalError,
    /// The request forwarded (and applied), then HTTP 500
    /// `InternalServerError`: what a DynamoDB failing after the write
    /// looks like.
    InternalErrorAfter,
    /// HTTP 502 with an HTML body, as a load balancer answers.
    BadGatewayHtml,
    /// HTTP 503 `ServiceUnavailable`.
    Unavailable,
    /// HTTP 400 `ThrottlingException`.
    Throttling,
    /// HTTP 400 `ProvisionedThroughputExceededException`.
    ThroughputExceeded,
    /// A write that meets a transaction in progress on its item: a
    /// `TransactWriteItems` cancelled with `TransactionConflict`, a single
    /// write (UpdateItem, PutItem, DeleteItem) answered HTTP 400
    /// `TransactionConflictException` (reads pass through).
    TransactionConflict,
    /// Forwarded, the answer cut in half.
    Truncated,
    /// Forwarded after a delay of 150 ms.
    Delay,
    /// No answer for 30 s (the client's time-out ends it first).
    Stall,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::ResetBefore,
        Fault::ResetAfter,
        Fault::InternalError,
        Fault::InternalErrorAfter,
        Fault::BadGatewayHtml,
        Fault::Unavailable,
        Fault::Throttling,
        Fault::ThroughputExceeded,
        Fault::TransactionConflict,
        Fault::Truncated,
        Fault::Delay,
        Fault::Stall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::ResetBefore => "reset-before",
            Fault::ResetAfter => "reset-after",
            Fault::InternalError => "500",
            Fault::InternalErrorAfter => "500-after",
            Fault::BadGatewayHtml => "502-html",
            Fault::Unavailable => "503",
            Fault::Throttling => "throttling",
            Fault::ThroughputExceeded => "throughput-exceeded",
            Fault::TransactionConflict => "transaction-conflict",
            Fault::Truncated => "truncated",
            Fault::Delay => "delay",
            Fault::Stall => "stall",
        }
    }

    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Which requests fail, and how.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Everything passes.
    Off,
    /// Each request fails with probability `rate`, with one of `faults`.
    Random { rate: f64, faults: Vec<Fault> },
    /// The next `count` requests of `operation` (e.g. `TransactWriteItems`;
    /// `None`: any) fail with `fault`, then everything passes.
    FailNext {
        count: u64,
        fault: Fault,
        operation: Option<&'static str>,
    },
}

struct State {
    plan: Plan,
    rng: StdRng,
    /// Requests seen, by what was done to them ("pass" or a fault's name).
    counts: BTreeMap<&'static str, u64>,
    /// Connections accepted.
    connections: u64,
}

/// A running proxy: its port, its plan (changeable), what it did.
#[derive(Clone)]
pub struct FaultProxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) forwarding to `upstream`
    /// (`http://host:port`). Its tasks run on the caller's runtime.
    pub async fn start(upstream: &str, plan: Plan, seed: u64) -> std::io::Result<FaultProxy> {
        Self::start_on(0, upstream, plan, seed).await
    }

    pub async fn start_on(
        port: u16,
        upstream: &str,
        plan: Plan,
        seed: u64,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State {
            plan,
            rng: StdRng::seed_from_u64(seed),
            counts: BTreeMap::new(),
            connections: 0,
        }));
        let proxy = FaultProxy {
            port,
            state: Arc::clone(&state),
        };
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let upstream = upstream.trim_end_matches('/').to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                state.lock().unwrap_or_else(|e| e.into_inner()).connections += 1;
                let (state, client, upstream) =
                    (Arc::clone(&state), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (state, client, upstream) =
                            (Arc::clone(&state), client.clone(), upstream.clone());
                        async move { handle(&state, &client, &upstream, request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(proxy)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_plan(&self, plan: Plan) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).plan = plan;
    }

    /// Connections the client opened so far.
    pub fn connections(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections
    }

    /// Requests seen so far, by what was done to them.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts
            .clone()
    }
}

/// A closed connection, as hyper does when the service fails.
#[derive(Debug)]
struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for Reset {}

type Answer = Result<Response<Full<Bytes>>, Reset>;

fn choose(state: &Mutex<State>, operation: &str) -> Option<Fault> {
    let is_transaction = operation == "TransactWriteItems";
    let is_write = is_transaction || ["UpdateItem", "PutItem", "DeleteItem"].contains(&operation);
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let chosen = match state.plan.clone() {
        Plan::Off => None,
        Plan::Random { rate, faults } => {
            let hit = !faults.is_empty() && state.rng.random_bool(rate.clamp(0.0, 1.0));
            hit.then(|| faults[state.rng.random_range(0..faults.len())])
        }
        Plan::FailNext {
            count,
            fault,
            operation: wanted,
        } => {
            if count > 0 && wanted.is_none_or(|w| w == operation) {
                state.plan = Plan::FailNext {
                    count: count - 1,
                    fault,
                    operation: wanted,
                };
                Some(fault)
            } else {
                None
            }
        }
    };
    // A transaction conflict only exists for writes.
    let chosen = chosen.filter(|f| *f != Fault::TransactionConflict || is_write);
    let name = chosen.map_or("pass", Fault::name);
    *state.counts.entry(name).or_default() += 1;
    chosen
}

fn dynamodb_error(status: StatusCode, kind: &str, message: &str, extra: Value) -> Answer {
    let mut body =
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", kind)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default())
}

async fn handle(
    state: &Mutex<State>,
    client: &Client<HttpConnector, Full<Bytes>>,
    upstream: &str,
    request: Request<Incoming>,
) -> Answer {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let operation = target.rsplit('.').next().unwrap_or("").to_string();
    let fault = choose(state, &operation);
    let forward = || async {
        let uri = format!(
            "{upstream}{}",
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut outgoing = Request::builder().method(parts.method.clone()).uri(uri);
        for (name, value) in &parts.headers {
            if name != "host" {
                outgoing = outgoing.header(name, value);
            }
        }
        let outgoing = outgoing.body(Full::new(body.clone())).map_err(|_| Reset)?;
        let response = client.request(outgoing).await.map_err(|_| Reset)?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|_| Reset)?.to_bytes();
        Ok::<_, Reset>((parts, bytes))
    };
    let passed = |(parts, bytes): (hyper::http::response::Parts, Bytes)| -> Answer {
        Ok(Response::from_parts(parts, Full::new(bytes)))
    };
    match fault {
        None => passed(forward().await?),
        Some(Fault::ResetBefore) => Err(Reset),
        Some(Fault::ResetAfter) => {
            forward().await?;
            Err(Reset)
        }
        Some(Fault::InternalError) => dynamodb_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
            Value::Null,
        ),
        Some(Fault::InternalErrorAfter) => {
            forward().await?;
            dynamodb_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Internal server error",
                Value::Null,
            )
        }
        Some(Fault::BadGatewayHtml) => Ok(Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from_static(
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            )))
            .unwrap_or_default()),
        Some(Fault::Unavailable) => dynamodb_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Service unavailable",
            Value::Null,
        ),
        Some(Fault::Throttling) => dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
            Value::Null,
        ),
        Some(Fault::ThroughputExceeded) => dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
            Value::Null,
        ),
        Some(Fault::TransactionConflict) if operation != "TransactWriteItems" => dynamodb_error(
            StatusCode::BAD_REQUEST,
            "TransactionConflictException",
            "Transaction is ongoing for the item",
            Value::Null,
        ),
        Some(Fault::TransactionConflict) => {
            let items = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1)
                .max(1);
            let mut reasons = vec![json!({"Code": "None"}); items];
            reasons[0] = json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"});
            dynamodb_error(
                StatusCode::BAD_REQUEST,
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons",
                json!({ "CancellationReasons": reasons }),
            )
        }
        Some(Fault::Truncated) => {
            let (mut parts, bytes) = forward().await?;
            parts.headers.remove("content-length");
            let half = bytes.slice(..bytes.len() / 2);
            Ok(Response::from_parts(parts, Full::new(half)))
        }
        Some(Fault::Delay) => {
            tokio::time::sleep(Duration::from_millis(150)).await;
            passed(forward().await?)
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Err(Reset)
        }
    }
}
