//! Settings read from the environment: each subsystem reads its own (the
//! store's, sign-in's, scanning's, the service's, a function's) through an
//! [`Env`], once, into a typed struct; a missing or bad value is a
//! [`ConfigError`] naming the variable.

use std::collections::HashMap;
use std::time::Duration;

/// A setting that is missing or of the wrong form, named in the message.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The environment variables settings are read from (the process's, or a
/// test's map).
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process's environment.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Self {
        Self { vars: vars.clone() }
    }

    /// An environment of these pairs (what tests and tools build one from).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            vars: pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    /// A variable's value, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A `true`/`false` (or `1`/`0`) switch; `default` when unset.
    pub fn switch(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(_) => Err(ConfigError::new(format!("{name} must be true or false"))),
        }
    }

    /// Milliseconds, 1 to 900000 (15 minutes, Lambda's longest run).
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=900_000).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    ConfigError::new(format!("{name} must be milliseconds from 1 to 900000"))
                }),
        }
    }

    /// A whole number from `min` to `max` (`unit` says of what).
    pub fn whole(
        &self,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
        unit: &str,
    ) -> Result<i64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => value
                .parse::<i64>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| {
                    ConfigError::new(format!("{name} must be {unit} from {min} to {max}"))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs)
    }

    #[test]
    fn values_are_read_trimmed_and_bad_ones_named() {
        let e = env(&[
            ("A", " x "),
            ("B", "  "),
            ("T", "true"),
            ("N", "12"),
            ("M", "0"),
        ]);
        assert_eq!(e.get("A"), Some("x"));
        assert_eq!(e.get("B"), None);
        assert_eq!(e.switch("T", false), Ok(true));
        assert_eq!(e.switch("Z", true), Ok(true));
        assert!(e
            .switch("A", false)
            .unwrap_err()
            .to_string()
            .contains("A must be"));
        assert_eq!(e.whole("N", 1, 1, 20, "days"), Ok(12));
        assert!(e
            .whole("N", 1, 1, 10, "days")
            .unwrap_err()
            .to_string()
            .contains("N must be days from 1 to 10"));
        assert!(e.millis("M", Duration::from_secs(1)).is_err());
        assert_eq!(
            e.millis("Z", Duration::from_secs(1)),
            Ok(Duration::from_secs(1))
        );
    }
}
