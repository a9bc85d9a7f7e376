//! The local table is exactly template.yaml's table: created from it, then
//! read back from DynamoDB and compared, so the two can never drift apart.

use apikeys_admin::tables::{table_spec, KEYS_TABLE};
use apikeys_tests::{Harness, TEMPLATE};

fn sorted<T: std::fmt::Debug>(items: &[T]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_local_table_matches_the_template_definition() {
    let h = Harness::new().await;
    let spec = table_spec(TEMPLATE, KEYS_TABLE).unwrap();
    let described = h
        .client
        .describe_table()
        .table_name(&h.table)
        .send()
        .await
        .unwrap();
    let table = described.table.unwrap();
    assert_eq!(
        sorted(table.attribute_definitions()),
        sorted(&spec.attributes)
    );
    assert_eq!(table.key_schema(), spec.key_schema.as_slice());
    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), spec.indexes.len());
    for wanted in &spec.indexes {
        let found = indexes
            .iter()
            .find(|i| i.index_name() == Some(wanted.index_name()))
            .unwrap_or_else(|| panic!("index {:?} missing", wanted.index_name()));
        assert_eq!(found.key_schema(), wanted.key_schema());
        let (a, b) = (found.projection().unwrap(), wanted.projection().unwrap());
        assert_eq!(a.projection_type(), b.projection_type());
        assert_eq!(
            sorted(a.non_key_attributes()),
            sorted(b.non_key_attributes())
        );
    }
    let ttl = h
        .client
        .describe_time_to_live()
        .table_name(&h.table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), spec.ttl_attribute.as_deref());
}

#[test]
fn the_template_defines_the_index_and_ttl_the_code_relies_on() {
    let spec = table_spec(TEMPLATE, KEYS_TABLE).unwrap();
    let index = spec
        .indexes
        .iter()
        .find(|i| i.index_name() == apikeys_store::EXPIRY_INDEX)
        .expect("the sweeper's index");
    let keys: Vec<&str> = index
        .key_schema()
        .iter()
        .map(|k| k.attribute_name())
        .collect();
    assert_eq!(keys, ["exp_bucket", "expires_at"]);
    assert_eq!(spec.ttl_attribute.as_deref(), Some("ttl"));
    let pk: Vec<&str> = spec.key_schema.iter().map(|k| k.attribute_name()).collect();
    assert_eq!(pk, ["pk", "sk"]);
}

#[test]
fn a_template_without_the_table_is_a_clear_error() {
    let err = table_spec("Resources: {}", KEYS_TABLE).unwrap_err();
    assert!(err.to_string().contains("KeysTable"), "{err}");
    assert!(table_spec("not: [yaml", KEYS_TABLE).is_err());
}

/// The dev server and tests answer within the function's timeout as
/// template.yaml sets it, as the deployed function does.
#[test]
fn the_default_request_time_is_the_templates_function_timeout() {
    let after = TEMPLATE
        .split_once("\n  GraphqlFunction:")
        .expect("the GraphQL function")
        .1;
    let timeout: u64 = after
        .lines()
        .find_map(|line| line.trim().strip_prefix("Timeout:"))
        .expect("its Timeout")
        .trim()
        .parse()
        .expect("seconds");
    let default = apikeys_service::config::DEFAULT_REQUEST_TIMEOUT;
    assert_eq!(default.as_secs(), timeout);
}
