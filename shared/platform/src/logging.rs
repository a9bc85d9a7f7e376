//! JSON logs for CloudWatch, one line per event, never a key, a hash, an
//! email, a credential or a body.

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

/// This project's crates and binaries: their events go out at the chosen level.
const OWN_TARGETS: &[&str] = &[
    "apikeys_core",
    "apikeys_platform",
    "apikeys_store",
    "apikeys_idp",
    "apikeys_service",
    "apikeys_graphql",
    "apikeys_sweeper",
    "apikeys_authorizer",
    "apikeys_admin",
    "apikeys_devserver",
    "graphql",
    "sweeper",
    "authorizer",
];

/// Dependencies (the AWS SDK, hyper, rustls, the Lambda runtime) write
/// request and response payloads, signed headers with the access key id, and
/// whole Lambda events at debug and trace: whatever `RUST_LOG` says, nothing
/// of theirs below warn is written.
pub const DEPENDENCY_CEILING: LevelFilter = LevelFilter::WARN;

/// Level from `RUST_LOG` as a plain level (`error` .. `trace`), `info` when
/// unset or not a level. A level, not a directive list: per-module filters
/// would bring a regex engine into every bootstrap.
pub fn level_from_env() -> LevelFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// Which events are written at `level`.
pub fn filter(level: LevelFilter) -> Targets {
    OWN_TARGETS
        .iter()
        .fold(Targets::new(), |targets, own| {
            targets.with_target(*own, level)
        })
        .with_default(level.min(DEPENDENCY_CEILING))
}

/// The subscriber every binary installs, writing to `writer`.
pub fn subscriber<W>(level: LevelFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .with_writer(writer)
        .finish()
        .with(filter(level))
}

/// Installs [`subscriber`] on standard output at the `RUST_LOG` level.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(level_from_env(), std::io::stdout));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn dependencies_never_write_below_warn_and_our_crates_follow_the_level() {
        let f = filter(LevelFilter::TRACE);
        let enabled = |target: &str, level: Level| f.would_enable(target, &level);
        assert!(enabled("apikeys_graphql::handler", Level::TRACE));
        assert!(enabled("apikeys_store", Level::DEBUG));
        for dep in [
            "aws_smithy_runtime::client",
            "hyper_util::client",
            "lambda_runtime",
            "rustls",
        ] {
            assert!(!enabled(dep, Level::DEBUG), "{dep}");
            assert!(!enabled(dep, Level::INFO), "{dep}");
            assert!(enabled(dep, Level::WARN), "{dep}");
        }
        let quiet = filter(LevelFilter::ERROR);
        assert!(!quiet.would_enable("apikeys_graphql::handler", &Level::INFO));
        assert!(!quiet.would_enable("aws_smithy_runtime", &Level::WARN));
    }
}
