//! apikeys core: key format and hashing, authorization rules, domain, DynamoDB store.

// Nothing a request, the network or DynamoDB can influence may panic (with
// panic = "abort" a panic ends the Lambda instance): enforced by clippy, with
// the lints of [workspace.lints] (Cargo.toml) and clippy.toml.

pub use apikeys_core::{audit, authz, clock, domain, policy, token};
pub use apikeys_platform::{https, logging};
pub use apikeys_store as store;
pub use apikeys_store::events;
pub mod config;
pub mod error;
pub mod keyset;
pub mod oidc;
pub mod scanning;
pub mod service;
pub mod sweep;

pub use error::{Error, Refusal, Result};
pub use service::ApiKeys;
