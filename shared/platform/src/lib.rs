//! What every apikeys process sets up around its code: HTTPS with rustls
//! and compiled-in roots (the DynamoDB client's, and a fetcher of small
//! public documents), JSON logs, and settings read from the environment.

// Nothing the network can influence may panic: see [workspace.lints].

pub mod https;
pub mod logging;
pub mod settings;

pub use settings::{ConfigError, Env};
