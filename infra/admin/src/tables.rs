//! Creates DynamoDB tables from the `AWS::DynamoDB::Table` resources of
//! template.yaml, so local tables can never drift from the deployed ones.

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde_yaml::Value;

/// The template's definition of the one table, by its logical id.
pub const KEYS_TABLE: &str = "KeysTable";

/// A table definition read from the template.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSpec {
    pub attributes: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    pub indexes: Vec<GlobalSecondaryIndex>,
    pub ttl_attribute: Option<String>,
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value> {
    value.get(name).ok_or_else(|| anyhow!("missing {name}"))
}

fn text(value: &Value, name: &str) -> Result<String> {
    field(value, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{name} must be a string"))
}

fn list<'a>(value: &'a Value, name: &str) -> Result<&'a Vec<Value>> {
    field(value, name)?
        .as_sequence()
        .ok_or_else(|| anyhow!("{name} must be a list"))
}

fn key_schema(value: &Value) -> Result<Vec<KeySchemaElement>> {
    list(value, "KeySchema")?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?.as_str()))
                .build()?)
        })
        .collect()
}

/// Reads the table `logical_id` from template.yaml's text.
pub fn table_spec(template: &str, logical_id: &str) -> Result<TableSpec> {
    let doc: Value = serde_yaml::from_str(template).context("template.yaml is not YAML")?;
    let resource = doc
        .get("Resources")
        .and_then(|r| r.get(logical_id))
        .ok_or_else(|| anyhow!("template has no resource {logical_id}"))?;
    if resource.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
        bail!("{logical_id} is not an AWS::DynamoDB::Table");
    }
    let props = field(resource, "Properties")?;
    let attributes = list(props, "AttributeDefinitions")?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    text(a, "AttributeType")?.as_str(),
                ))
                .build()?)
        })
        .collect::<Result<_>>()?;
    let indexes = match props.get("GlobalSecondaryIndexes") {
        None => Vec::new(),
        Some(_) => list(props, "GlobalSecondaryIndexes")?
            .iter()
            .map(|index| {
                let projection = field(index, "Projection")?;
                let non_key = match projection.get("NonKeyAttributes") {
                    Some(_) => Some(
                        list(projection, "NonKeyAttributes")?
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| anyhow!("NonKeyAttributes must be strings"))?,
                    ),
                    None => None,
                };
                Ok(GlobalSecondaryIndex::builder()
                    .index_name(text(index, "IndexName")?)
                    .set_key_schema(Some(key_schema(index)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                text(projection, "ProjectionType")?.as_str(),
                            ))
                            .set_non_key_attributes(non_key)
                            .build(),
                    )
                    .build()?)
            })
            .collect::<Result<_>>()?,
    };
    let ttl_attribute = match props.get("TimeToLiveSpecification") {
        Some(ttl) if ttl.get("Enabled").and_then(Value::as_bool) == Some(true) => {
            Some(text(ttl, "AttributeName")?)
        }
        _ => None,
    };
    Ok(TableSpec {
        attributes,
        key_schema: key_schema(props)?,
        indexes,
        ttl_attribute,
    })
}

/// Creates `name` from `spec` unless a table of that name exists already.
/// Returns whether it created the table.
pub async fn create_table(client: &Client, name: &str, spec: &TableSpec) -> Result<bool> {
    if client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(spec.attributes.clone()))
        .set_key_schema(Some(spec.key_schema.clone()))
        .set_global_secondary_indexes((!spec.indexes.is_empty()).then(|| spec.indexes.clone()))
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "creating table {name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    if let Some(attribute) = &spec.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "enabling TTL on {name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok(true)
}
