//! Leaked keys: a secret scanning report's matches looked up by hash (one
//! batch read, a hundred a request; a token of a foreign prefix or a wrong
//! checksum costs nothing), and each live key treated as its tenant's leak
//! policy says: revoked (the ordinary revocation, one transaction with its
//! `KEY_LEAKED` record) or marked and recorded only. Idempotent: a key
//! already revoked is gone, one already marked is not recorded again.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;

use crate::error::Result;
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::policy::LeakAction;
use apikeys_core::reports::Match;
use apikeys_core::token::TokenHash;
use apikeys_store::{HashRecord, KeyDelete, KeyRef};

use super::ApiKeys;

/// What a report's sender is told of one match (GitHub's feedback form:
/// never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// The SHA-256 of the token, hex.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive`: one of our keys (live, expired or already
    /// handled); `false_positive`: not of our form (prefix or checksum).
    pub label: &'static str,
}

/// What a report did, for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakOutcome {
    pub feedback: Vec<Feedback>,
    /// Keys revoked now.
    pub revoked: usize,
    /// Keys kept working (notify-only tenants) and recorded now.
    pub recorded: usize,
    /// Matches of our form naming no key (never made, or revoked already).
    pub unknown: usize,
}

/// Text from the report for the audit record: no control characters, at
/// most `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !apikeys_core::domain::is_invisible_or_reordering(*c))
        .take(max)
        .collect()
}

impl ApiKeys {
    /// Handles a (verified) report of `reporter` ("GitHub secret
    /// scanning"). A storage failure part way is an error (the sender sends
    /// the report again; what was done is not done twice).
    pub async fn report_leaks(&self, reporter: &str, matches: &[Match]) -> Result<LeakOutcome> {
        let now = self.now();
        let ours: Vec<Option<TokenHash>> = matches
            .iter()
            .map(|m| self.presented_hash(Some(&m.token)))
            .collect();
        let mut unique: Vec<TokenHash> = ours.iter().flatten().cloned().collect();
        unique.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        unique.dedup();
        let found: HashMap<String, HashRecord> = if unique.is_empty() {
            HashMap::new()
        } else {
            self.store.keys_by_hash(&unique).await?
        };
        let mut outcome = LeakOutcome::default();
        // Each key of ours once, 8 at a time.
        let mut handled: HashSet<&str> = HashSet::new();
        let work: Vec<_> = ours
            .iter()
            .zip(matches)
            .filter_map(|(hash, m)| {
                let hash = hash.as_ref()?;
                let record = found.get(hash.as_str())?;
                handled
                    .insert(hash.as_str())
                    .then(|| self.handle_leak(reporter, m, hash, record, now))
            })
            .collect();
        let done: Vec<Result<Handled>> = futures_util::stream::iter(work)
            .buffer_unordered(LEAK_CONCURRENCY)
            .collect()
            .await;
        for result in done {
            match result? {
                Handled::Revoked => outcome.revoked = outcome.revoked.saturating_add(1),
                Handled::Recorded => outcome.recorded = outcome.recorded.saturating_add(1),
                Handled::Nothing => {}
            }
        }
        for (m, hash) in matches.iter().zip(&ours) {
            let label = match hash {
                None => "false_positive",
                Some(hash) if found.contains_key(hash.as_str()) => "true_positive",
                // Never made, or revoked: no label can be told.
                Some(_) => {
                    outcome.unknown = outcome.unknown.saturating_add(1);
                    continue;
                }
            };
            outcome.feedback.push(Feedback {
                token_hash: TokenHash::of(&m.token).as_str().to_string(),
                token_type: clean(&m.token_type, 100),
                label,
            });
        }
        tracing::info!(
            reporter,
            matches = matches.len(),
            revoked = outcome.revoked,
            recorded = outcome.recorded,
            unknown = outcome.unknown,
            "leak report"
        );
        Ok(outcome)
    }

    /// One key of a report, by the leak policy its hash item carries (the
    /// tenant's, as last applied to it): revoked, or marked and recorded
    /// once. An expired key is only recorded (once): the sweeper removes it.
    async fn handle_leak(
        &self,
        reporter: &str,
        m: &Match,
        hash: &TokenHash,
        record: &HashRecord,
        now: time::OffsetDateTime,
    ) -> Result<Handled> {
        let key = KeyRef {
            tenant_id: record.tenant_id,
            key_id: record.key_id,
            owner_id: record.owner_id,
            owner_type: record.owner_type,
            hash: hash.clone(),
        };
        let expired = record.expires_at.is_some_and(|at| at <= now);
        let action = if expired {
            LeakAction::Notify
        } else {
            record.policy.leak_action
        };
        if action == LeakAction::Notify && record.leaked {
            return Ok(Handled::Nothing);
        }
        // The key's name and owner for the record (its listing item: one
        // read), which outlives a revoked key.
        let name = self
            .store
            .key(key.tenant_id, key.owner_type, key.owner_id, key.key_id)
            .await?
            .map(|stored| stored.key.name);
        let what = match (expired, action) {
            (true, _) => "already expired: the sweeper removes it",
            (false, LeakAction::Revoke) => "revoked",
            (false, LeakAction::Notify) => {
                "kept working: the tenant's leak policy is to notify only"
            }
        };
        let detail = format!(
            "reported by {reporter}: {} at {} ({}); owner {} ({}); {what}",
            clean(&m.token_type, 100),
            clean(&m.url, 500),
            clean(&m.source, 50),
            record
                .copy
                .as_ref()
                .map_or_else(|| record.owner_id.to_string(), |c| c.username.clone()),
            record.owner_type.name(),
        );
        let event = AuditEvent::new(
            AuditAction::KeyLeaked,
            AuditActor::reporter(reporter),
            TargetType::ApiKey,
            record.key_id,
            name.as_deref(),
        )
        .with_detail(detail);
        let audit = self.audit(record.tenant_id, event);
        Ok(match action {
            LeakAction::Revoke => match self.store.delete_key(&key, None, None, &audit).await? {
                KeyDelete::Deleted => Handled::Revoked,
                // Revoked or removed meanwhile: it is gone, as it should be.
                KeyDelete::KeyGone | KeyDelete::OwnerGone | KeyDelete::CallerNotAdmin => {
                    Handled::Nothing
                }
            },
            LeakAction::Notify => {
                if self.store.mark_leaked(&key, now, &audit).await? {
                    Handled::Recorded
                } else {
                    Handled::Nothing
                }
            }
        })
    }
}

/// What one key of a report came to.
enum Handled {
    Revoked,
    Recorded,
    Nothing,
}

/// Keys of one report handled at once.
const LEAK_CONCURRENCY: usize = 8;
