//! The operator's check of a tenant: counters, leases and keys as the
//! service's invariants want them, compared with what the table holds, and
//! (when asked) set right. For items deleted or left behind outside the
//! service's transactions: DynamoDB's TTL backstop, a hand edit, a restore.

use std::collections::HashSet;

use crate::error::Result;
use apikeys_core::domain::AccountType;
use apikeys_store::{Remains, TenantCounters};

use super::ApiKeys;

/// One thing the check found, and whether it was set right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub repaired: bool,
}

impl ApiKeys {
    /// Checks tenant `slug`; with `apply`, repairs what it finds. Each
    /// repair is conditioned on the value it read (a change made meanwhile
    /// by the service wins, and the next check tells). A lease that still
    /// holds is reported, never taken away: a change is in progress.
    pub async fn check_tenant(&self, slug: &str, apply: bool) -> Result<Vec<Finding>> {
        let tenant = self.tenant_by_slug(slug).await?;
        let now = self.now();
        // The counters first: a member added, removed or changed after this
        // read changes them, and their repair (conditioned on this read)
        // then writes nothing.
        let counters = self.store.tenant_counters(tenant.id).await?;
        let members = self.store.members(tenant.id).await?;
        let keys = self.store.keys_of_tenant(tenant.id).await?;
        let policy = self.store.tenant_policy(tenant.id).await?;
        let member_ids: HashSet<_> = members.iter().map(|m| m.user_id).collect();
        let mut findings = Vec::new();
        let mut whole: Vec<_> = Vec::with_capacity(keys.len());
        for stored in &keys {
            let k = &stored.key;
            let lookup = if member_ids.contains(&k.owner_id) {
                self.store.key_by_hash(&stored.hash).await?
            } else {
                None
            };
            let problem = if !member_ids.contains(&k.owner_id) {
                Some((
                    Remains::OwnerGone,
                    "its owner is not a member: both its items go",
                ))
            } else if lookup.is_none() {
                Some((
                    Remains::LookupGone,
                    "its hash lookup is gone: its listing goes",
                ))
            } else {
                None
            };
            // A key policy that did not reach this key (a change that
            // failed part way, or a restore): the key is judged by an
            // older policy until it is written.
            if let (Some(record), Some(current)) = (&lookup, &policy) {
                if record.policy.generation < current.policy.generation {
                    let repaired = apply
                        && self
                            .store
                            .apply_policy_to_key(&stored.hash, k.created, &current.policy)
                            .await?;
                    findings.push(Finding {
                        what: format!(
                            "key {} ('{}'): carries key policy generation {}, the tenant's is {}; \
                             written",
                            k.id, k.name, record.policy.generation, current.policy.generation
                        ),
                        repaired,
                    });
                }
            }
            // Rotated by an earlier version, which marked only the listing:
            // until its lookup is marked too, the key could change things
            // during its grace.
            if let (Some(record), Some(new)) = (&lookup, k.replaced_by) {
                if !record.replaced {
                    let repaired = apply && self.store.mark_replaced(&stored.hash, new).await?;
                    findings.push(Finding {
                        what: format!(
                            "key {} ('{}'): rotated, but its lookup does not say so; marked \
                             replaced (it may change nothing during its grace)",
                            k.id, k.name
                        ),
                        repaired,
                    });
                }
            }
            match problem {
                Some((remains, problem)) => {
                    // Each deletion checks again that the key is still not
                    // whole (a member added meanwhile keeps its key).
                    let repaired = apply
                        && self
                            .store
                            .delete_key_remains(&stored.key_ref(), remains)
                            .await?;
                    findings.push(Finding {
                        what: format!("key {} ('{}'): {problem}", k.id, k.name),
                        repaired,
                    });
                }
                None => whole.push(k),
            }
        }
        for m in &members {
            let held = whole.iter().filter(|k| k.owner_id == m.user_id).count();
            let held = u32::try_from(held).unwrap_or(u32::MAX);
            if held != m.key_count {
                let repaired = apply && self.recount(m).await?.is_some();
                findings.push(Finding {
                    what: format!(
                        "member {}: key_count {} but {held} key(s) there",
                        m.username, m.key_count
                    ),
                    repaired,
                });
            } else if m.account_type == AccountType::Service {
                // The index must name exactly its keys, and be verified:
                // keys written before it existed, or by an earlier version
                // (a rollback, an old operator CLI), are not in it.
                let keys: HashSet<_> = whole
                    .iter()
                    .filter(|k| k.owner_id == m.user_id)
                    .map(|k| k.id)
                    .collect();
                let listed: HashSet<_> = m.key_ids.iter().copied().collect();
                if keys != listed || !m.keys_indexed {
                    let repaired = apply && self.recount(m).await?.is_some();
                    let missing = keys.difference(&listed).count();
                    let stale = listed.difference(&keys).count();
                    findings.push(Finding {
                        what: format!(
                            "service account {}: its key index misses {missing} of its {held} \
                             key(s) and names {stale} gone{}; rebuilt from its keys",
                            m.username,
                            if m.keys_indexed {
                                ""
                            } else {
                                " (never verified)"
                            }
                        ),
                        repaired,
                    });
                }
            }
            match (m.lease, m.busy(now)) {
                (_, Some(lease)) => findings.push(Finding {
                    what: format!(
                        "member {}: a {} is in progress (its lease holds until {}); left alone",
                        m.username,
                        lease.kind.name(),
                        lease.until
                    ),
                    repaired: false,
                }),
                (Some(lease), None) => {
                    let repaired = apply && self.store.clear_expired_lease(m, now).await?;
                    findings.push(Finding {
                        what: format!(
                            "member {}: an expired {} lease (ended {}) removed",
                            m.username,
                            lease.kind.name(),
                            lease.until
                        ),
                        repaired,
                    });
                }
                (None, None) if m.legacy_mark => {
                    let repaired = apply && self.store.clear_expired_lease(m, now).await?;
                    findings.push(Finding {
                        what: format!(
                            "member {}: a removing/changing mark of an earlier version removed",
                            m.username
                        ),
                        repaired,
                    });
                }
                (None, None) => {}
            }
        }
        let count = |admins: bool| {
            let n = members
                .iter()
                .filter(|m| {
                    if admins {
                        m.is_admin_user()
                    } else {
                        m.account_type == AccountType::Service
                    }
                })
                .count();
            i64::try_from(n).unwrap_or(i64::MAX)
        };
        let actual = TenantCounters {
            admin_users: count(true),
            service_accounts: count(false),
        };
        if let Some(stored) = counters {
            if stored != actual {
                let repaired = apply
                    && self
                        .store
                        .set_tenant_counters(tenant.id, stored, actual)
                        .await?;
                findings.push(Finding {
                    what: format!(
                        "tenant {slug}: admin_users {} and service_accounts {} stored, {} and {} there",
                        stored.admin_users,
                        stored.service_accounts,
                        actual.admin_users,
                        actual.service_accounts
                    ),
                    repaired,
                });
            }
        }
        if let Some(current) = policy.filter(|p| !p.is_applied()) {
            let repaired = apply && {
                self.apply_policy(tenant.id, &current.policy, current.position.clone(), None)
                    .await?;
                true
            };
            findings.push(Finding {
                what: format!(
                    "the key policy (generation {}) is not marked as on every key: a change \
                     stopped part way; written onto every key and marked",
                    current.policy.generation
                ),
                repaired,
            });
        }
        Ok(findings)
    }
}
