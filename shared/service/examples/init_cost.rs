// A measuring tool, not Lambda code: it may stop at the first failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

//! Times what a function does at init, step by step (see BENCHMARKS.md).

use std::time::Instant;

fn main() {
    let started = Instant::now();
    let config = apikeys_service::config::Config::from_env().expect("config");
    let after_config = started.elapsed();
    let client = apikeys_store::dynamodb_client(&config.store).expect("client");
    let after_client = started.elapsed();
    drop(client);
    println!(
        "config {after_config:?}, dynamodb client {:?}",
        after_client - after_config
    );
}
