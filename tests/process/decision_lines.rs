//! Every function's decision line at the default level. Here, not with the
//! other authorizer tests: tracing caches per call site whether anyone
//! listens, a process-wide cache that a subscriber installed for one thread
//! races with call sites first reached by other tests' threads.

use apikeys_authorizer::routes::RouteMap;
use apikeys_authorizer::App;
use apikeys_tests::authorizer::{bearer, decide};
use apikeys_tests::Harness;

/// Every function's decision line is written at the default level (`info`):
/// an operator sees why a request was refused. A function crate missing from
/// the logging allowlist (`shared/platform/src/logging.rs`) has its lines filtered out.
#[tokio::test]
async fn each_functions_decision_line_is_written_at_the_default_level() {
    let _turn = crate::ONE_AT_A_TIME.lock().await;
    let captured = apikeys_tests::Captured::default();
    let _installed = tracing::subscriber::set_default(apikeys_platform::logging::subscriber(
        apikeys_platform::logging::level_from_env()
            .min(tracing_subscriber::filter::LevelFilter::INFO),
        captured.clone(),
    ));
    let h = Harness::new().await;
    // The authorizer's, the GraphQL function's and the sweeper's.
    let app = App::new(h.service_copy(), RouteMap::default());
    let (answer, _) = decide(&app, "rest", &[("Authorization", &bearer("apk_nope"))]).await;
    assert_eq!(answer, "401");
    h.gql(&h.tenant.admin_key, "{ hello }", None).await;
    let sweeper = apikeys_sweeper::App::new(h.service().store().clone(), h.clock.clone());
    let payload: apikeys_sweeper::ScheduledEvent =
        serde_json::from_str(apikeys_tests::SCHEDULED_EVENT).unwrap();
    let event = lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default());
    apikeys_sweeper::handle(&sweeper, event).await.unwrap();
    let text = captured.text();
    for line in ["authorizer decision", "\"request\"", "\"sweep\""] {
        assert!(text.contains(line), "no {line} line at info: {text}");
    }
}
