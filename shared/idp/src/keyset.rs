//! A published key set (GitHub's secret scanning keys, an identity
//! provider's JWKS) as one instance keeps it: fetched from a configurable
//! URL, trusted for a while, fetched again for an unknown identifier at a
//! bounded rate, and a failed fetch is a retryable answer, never a refusal.
//! Ages are read from the time the caller passes (the service's clock, so
//! that tests move it rather than wait); a clock that stepped back makes an
//! age zero, never negative.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use apikeys_platform::https::{FetchError, Fetcher};

/// How a key set is kept.
#[derive(Clone, Copy, Debug)]
pub struct KeySetRules {
    /// How long a fetched set is trusted: a withdrawn key stops being
    /// accepted within this long.
    pub max_age: Duration,
    /// How soon an unknown identifier may fetch the set again after a
    /// successful fetch (made-up identifiers cost a bounded number of
    /// fetches).
    pub refetch_after: Duration,
    /// How soon a failed fetch may be tried again (until then answers are
    /// retryable, never refusals).
    pub retry_after: Duration,
    /// How long one fetch may take.
    pub fetch_limit: Duration,
    /// The largest set read, in bytes.
    pub max_bytes: usize,
}

/// The keys of a fetched document by identifier, or why it is not a set.
pub type Parse<K> = fn(&[u8]) -> Result<HashMap<String, K>, FetchError>;

struct Cache<K> {
    keys: HashMap<String, K>,
    /// When the keys were fetched.
    fetched: Option<OffsetDateTime>,
    /// When the last fetch was tried, and whether it failed.
    tried: Option<(OffsetDateTime, bool)>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            keys: HashMap::new(),
            fetched: None,
            tried: None,
        }
    }
}

/// What the cache can say about an identifier without fetching.
enum Known<K> {
    /// A key fetched less than `max_age` ago.
    Key(K),
    /// Unknown to a set fetched less than `refetch_after` ago.
    Unknown,
    /// The last fetch failed less than `retry_after` ago.
    Failing,
    /// Fetch.
    Fetch,
}

pub struct KeySet<K> {
    url: String,
    fetcher: Fetcher,
    parse: Parse<K>,
    rules: KeySetRules,
    cache: Mutex<Cache<K>>,
    /// One fetch at a time (concurrent requests wait for it).
    fetching: tokio::sync::Mutex<()>,
}

impl<K: Clone> KeySet<K> {
    pub fn new(
        url: impl Into<String>,
        parse: Parse<K>,
        rules: KeySetRules,
    ) -> Result<Self, apikeys_platform::ConfigError> {
        Ok(Self {
            url: url.into(),
            fetcher: Fetcher::new()?,
            parse,
            rules,
            cache: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn known(&self, identifier: &str, now: OffsetDateTime) -> Known<K> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let within = |at, limit| apikeys_core::clock::within(now, at, limit);
        let fresh = cache
            .fetched
            .is_some_and(|at| within(at, self.rules.max_age));
        if let (true, Some(key)) = (fresh, cache.keys.get(identifier)) {
            return Known::Key(key.clone());
        }
        match cache.tried {
            Some((at, true)) if within(at, self.rules.retry_after) => Known::Failing,
            Some((at, false)) if fresh && within(at, self.rules.refetch_after) => Known::Unknown,
            _ => Known::Fetch,
        }
    }

    /// The key `identifier` at `now`: from a set fetched less than `max_age` ago,
    /// else fetched now (for an unknown identifier, at most once every
    /// `refetch_after`). `Ok(None)`: no such key in a fresh set. `Err`: the
    /// set could not be fetched (a retryable failure, never a refusal).
    pub async fn key(
        &self,
        identifier: &str,
        now: OffsetDateTime,
    ) -> Result<Option<K>, FetchError> {
        let mut fetched_once = false;
        loop {
            match self.known(identifier, now) {
                Known::Key(key) => return Ok(Some(key)),
                Known::Unknown => return Ok(None),
                Known::Failing => {
                    return Err(FetchError::Failed(
                        "the key set could not be fetched a moment ago".into(),
                    ))
                }
                Known::Fetch if fetched_once => return Ok(None),
                Known::Fetch => {}
            }
            fetched_once = true;
            let _one = self.fetching.lock().await;
            // Fetched by another request meanwhile?
            if !matches!(self.known(identifier, now), Known::Fetch) {
                continue;
            }
            let fetched = match self
                .fetcher
                .get(&self.url, self.rules.fetch_limit, self.rules.max_bytes)
                .await
            {
                Ok(body) => (self.parse)(&body),
                Err(e) => Err(e),
            };
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match fetched {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(now);
                    cache.tried = Some((now, false));
                }
                Err(e) => {
                    // The keys fetched before stay (until their age runs
                    // out); this answer is retryable.
                    cache.tried = Some((now, true));
                    return Err(e);
                }
            }
        }
    }
}
