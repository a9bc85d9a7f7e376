//! The GraphQL endpoint: one handler from a lambda_http request to a response.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

pub mod console;
pub mod cost;
pub mod handler;
pub mod schema;

pub use handler::{handle, App};
