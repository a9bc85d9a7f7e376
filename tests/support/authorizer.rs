//! The authorizer driven as API Gateway drives it: its events as `sam local
//! generate-event` makes them, and what the gateway answers for its result.

use apikeys_authorizer::{handle, App, UNAUTHORIZED};
use serde_json::{json, Value};

use crate::{HTTP_API_AUTHORIZER_EVENT, REST_AUTHORIZER_EVENT};

/// The event of `form` with these headers (REST: also as multi-value).
pub fn event(form: &str, headers: &[(&str, &str)]) -> Value {
    let fixture = if form == "rest" {
        REST_AUTHORIZER_EVENT
    } else {
        HTTP_API_AUTHORIZER_EVENT
    };
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    let single: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    event["headers"] = Value::Object(single);
    if form == "rest" {
        let multi: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!([v])))
            .collect();
        event["multiValueHeaders"] = Value::Object(multi);
    }
    event
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// What the gateway would answer: "allow", "401", "403" or "500".
pub async fn decide(app: &App, form: &str, headers: &[(&str, &str)]) -> (String, Value) {
    match handle(app, event(form, headers)).await {
        Err(e) if e.to_string() == UNAUTHORIZED => ("401".into(), Value::Null),
        Err(_) => ("500".into(), Value::Null),
        Ok(answer) if answer["isAuthorized"] == json!(true) => ("allow".into(), answer),
        Ok(answer) if answer["isAuthorized"] == json!(false) => ("403".into(), answer),
        Ok(answer) => match answer["policyDocument"]["Statement"][0]["Effect"].as_str() {
            Some("Allow") => ("allow".into(), answer),
            _ => ("403".into(), answer),
        },
    }
}
