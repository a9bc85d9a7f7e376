//! The GraphQL endpoint: one handler from a lambda_http request to a response.

pub mod cost;
pub mod handler;
pub mod schema;

pub use handler::{handle, App};
