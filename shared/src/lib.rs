//! apikeys core: key format and hashing, authorization rules, domain, DynamoDB store.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

pub mod audit;
pub mod authz;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod https;
pub mod keyset;
pub mod logging;
pub mod oidc;
pub mod policy;
pub mod scanning;
pub mod service;
pub mod store;
pub mod sweep;
pub mod token;

pub use error::{Error, Refusal, Result};
pub use service::ApiKeys;
