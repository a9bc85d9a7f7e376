//! The integration tests: one binary (one link of the AWS SDK, juniper and
//! rustls), one module per concern. Every test runs the real handler, store
//! or function against the local DynamoDB named by `DYNAMODB_ENDPOINT`, each
//! in its own table. Tests that change what a whole process shares (the
//! global log subscriber, the environment) live in `tests/process`.

mod admin;
mod atomicity;
mod authorizer;
mod behind_the_back;
mod cognito;
mod events_stream;
mod faults;
mod hardening;
mod invitations;
mod isolation;
mod key_index;
mod keys;
mod leases;
mod least_privilege;
mod lifecycle;
mod limits;
mod no_wider;
mod one_read;
mod properties;
mod scopes_policy;
mod secret_scanning;
mod session_faults;
mod sign_in;
mod sweeper;
mod tables;
mod wire;
