//! The GraphQL endpoint: one handler from a lambda_http request to a response.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

pub mod app;
pub mod console;
pub mod cost;
pub mod edge;
pub mod handler;
pub mod routes;
pub mod schema;
pub mod warm_up;

pub use app::{App, Settings};
pub use handler::handle;
