//! apikeys core: key format and hashing, authorization rules, domain, DynamoDB store.

pub mod authz;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod https;
pub mod logging;
pub mod metrics;
pub mod service;
pub mod store;
pub mod sweep;
pub mod token;

pub use error::{Error, Result};
pub use service::ApiKeys;
