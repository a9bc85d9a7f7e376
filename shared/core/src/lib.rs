//! apikeys' core: the key format and its hashing, the domain, the rules of
//! who may do what, key policies, audit records, refusal codes, and what a
//! code host reports of a leak. Pure: no AWS, no tokio, no I/O; every
//! other crate of the service builds on it.

// Nothing a request can influence may panic (with panic = "abort" a panic
// ends the Lambda instance): enforced by clippy, with the lints of
// [workspace.lints] (Cargo.toml) and clippy.toml.

pub mod audit;
pub mod authz;
pub mod clock;
pub mod domain;
pub mod identity;
pub mod policy;
pub mod principal;
pub mod refusal;
pub mod reports;
pub mod token;
pub mod verify;
