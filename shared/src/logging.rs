//! JSON logs for CloudWatch, one line per event, never a key or a body.

use tracing_subscriber::filter::LevelFilter;

/// Level from `RUST_LOG` as a plain level (`error` .. `trace`), `info` when
/// unset or not a level. A level, not a directive list: per-module filters
/// would bring a regex engine into every bootstrap.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
