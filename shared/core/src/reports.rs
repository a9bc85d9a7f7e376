//! What code hosts report of leaked keys (GitHub's secret scanning partner
//! program, GitLab's token revocation API), as read from a report's body:
//! its matches, bounded, entries of another kind left out; and GitLab's
//! pre-shared token compared by its hash. No I/O: the signatures on
//! GitHub's reports are checked by `apikeys-idp`.

use serde::Deserialize;

/// The most matches one report may hold (GitHub sends fewer).
pub const MAX_MATCHES: usize = 1000;
/// The largest report body read, in bytes.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// One match of a report.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Match {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// The token types the GitLab entrance accepts (`GET
/// /v1/revocable_token_types`): a custom gitleaks rule's id, prefixed as
/// GitLab prefixes them.
pub const GITLAB_TOKEN_TYPES: [&str; 2] = [
    "gitleaks_rule_id_apikeys_user_key",
    "gitleaks_rule_id_apikeys_service_account_key",
];

/// Is `presented` (an `Authorization` header, raw or `Bearer …`) GitLab's
/// pre-shared token, whose SHA-256 is `sha256_hex`?
pub fn gitlab_token_matches(presented: Option<&str>, sha256_hex: &str) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let presented = presented.trim();
    let token = match presented.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => presented,
    };
    if token.is_empty() || token.len() > 512 {
        return false;
    }
    crate::token::TokenHash::of(token).matches_hex(sha256_hex)
}

/// Reads a GitLab revocation request: a JSON array of `{type, token,
/// location}`, at most [`MAX_MATCHES`]. Entries of another type, without a
/// token, or of any other shape (a field of the wrong type, a bare string,
/// a number) are left out, one by one: GitLab does not retry a 400, so
/// refusing the whole request would leave its other tokens working. A
/// `location` that is not a string is read as none. The answer is the
/// matches to handle and how many were left out; only a body that is not
/// a JSON array (or too long a one) is refused.
pub fn parse_gitlab_request(body: &[u8]) -> Result<(Vec<Match>, usize), String> {
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("a request is a JSON array of {{type, token, location}}: {e}"))?;
    if entries.len() > MAX_MATCHES {
        return Err(format!("a request may hold at most {MAX_MATCHES} tokens"));
    }
    let total = entries.len();
    let text = |entry: &serde_json::Value, name: &str| {
        entry
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let matches: Vec<Match> = entries
        .iter()
        .filter_map(|entry| {
            let token_type = text(entry, "type")?;
            if !GITLAB_TOKEN_TYPES.contains(&token_type.as_str()) {
                return None;
            }
            Some(Match {
                token: text(entry, "token")?,
                token_type,
                url: text(entry, "location").unwrap_or_default(),
                source: "gitlab".into(),
            })
        })
        .collect();
    let left_out = total.saturating_sub(matches.len());
    Ok((matches, left_out))
}

/// Reads a report's matches: a JSON array of at most [`MAX_MATCHES`].
pub fn parse_report(body: &[u8]) -> Result<Vec<Match>, String> {
    let matches: Vec<Match> = serde_json::from_slice(body)
        .map_err(|e| format!("a report is a JSON array of {{token, type, url, source}}: {e}"))?;
    if matches.len() > MAX_MATCHES {
        return Err(format!("a report may hold at most {MAX_MATCHES} matches"));
    }
    Ok(matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitlab_entry_of_the_wrong_shape_is_left_out_alone() {
        let ours = GITLAB_TOKEN_TYPES[0];
        let body = format!(
            r#"[{{"type":"{ours}","token":"a","location":5}},
                "bare",
                7,
                null,
                {{"type":"{ours}","token":5}},
                {{"type":5,"token":"b"}},
                {{"type":"{ours}","token":"c","location":"https://gitlab.example/x"}}]"#
        );
        let (matches, left_out) = parse_gitlab_request(body.as_bytes()).unwrap();
        let tokens: Vec<&str> = matches.iter().map(|m| m.token.as_str()).collect();
        assert_eq!(tokens, ["a", "c"]);
        assert_eq!(matches[0].url, "");
        assert_eq!(left_out, 5);
        assert!(parse_gitlab_request(b"{}").is_err());
        assert!(parse_gitlab_request(b"not json").is_err());
    }

    #[test]
    fn a_report_is_an_array_of_at_most_a_thousand_matches() {
        let one = br#"[{"token":"t","type":"x","url":"u","source":"content"}]"#;
        assert_eq!(parse_report(one).unwrap().len(), 1);
        assert!(parse_report(b"{}").is_err());
        assert!(parse_report(b"[{\"type\":\"x\"}]").is_err());
        let many = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_MATCHES + 1].join(","));
        assert!(parse_report(many.as_bytes()).is_err());
    }
}
