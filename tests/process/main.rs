//! Tests that change what the whole process shares, one at a time: `logs`
//! installs the global log subscriber and sets the SDK's credentials in the
//! environment; `decision_lines` installs a subscriber for its thread
//! (tracing's per-call-site cache is the process's); `tls` sets
//! `AWS_CA_BUNDLE`. Apart from the other integration tests, so that none of
//! those runs under their changes.

mod decision_lines;
mod logs;
mod tls;

/// Taken by each test here for its whole run.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
