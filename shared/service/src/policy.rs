//! A tenant's key policy: reading it, and changing it (by a human admin or
//! the operator), which is acknowledged only once every key of the tenant
//! carries it (see `store::policy`).

use futures_util::stream::{self, StreamExt};
use uuid::Uuid;

use crate::error::{Error, Result};
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::authz::{authorize, within, Action, Made, Maker, Target};
use apikeys_core::domain::{network_allows, parse_networks};
use apikeys_core::policy::{check_policy_days, KeyPolicy, LeakAction, MAX_TENANT_NETWORKS};
use apikeys_core::principal::Principal;
use apikeys_store::{PolicySet, TenantPolicy};

use super::{kept_changing, may_change, wider_than_credential, ApiKeys, CONFLICT_RETRIES};

/// How many keys' copies a policy change writes at once.
const APPLY_CONCURRENCY: usize = 16;

/// A policy as asked for (every rule given: a rule left out is no rule).
#[derive(Clone, Debug, Default)]
pub struct PolicyChange {
    pub max_user_key_days: Option<i64>,
    pub max_service_key_days: Option<i64>,
    pub scopes_required: bool,
    pub allowed_networks: Vec<String>,
    pub leak_action: LeakAction,
}

impl PolicyChange {
    /// The rules, checked (generation 0: set on writing).
    fn rules(&self) -> Result<KeyPolicy> {
        if self.allowed_networks.len() > MAX_TENANT_NETWORKS {
            return Err(Error::BadInput(format!(
                "a tenant's allowlist may hold at most {MAX_TENANT_NETWORKS} networks"
            )));
        }
        // The same reading as a key's networks, with the tenant's bound.
        let mut networks = Vec::with_capacity(self.allowed_networks.len());
        for chunk in self
            .allowed_networks
            .chunks(apikeys_core::domain::MAX_KEY_NETWORKS)
        {
            networks.extend(parse_networks(chunk).map_err(Error::BadInput)?);
        }
        networks.sort();
        networks.dedup();
        Ok(KeyPolicy {
            generation: 0,
            max_user_key_days: check_policy_days("max_user_key_days", self.max_user_key_days)
                .map_err(Error::BadInput)?,
            max_service_key_days: check_policy_days(
                "max_service_key_days",
                self.max_service_key_days,
            )
            .map_err(Error::BadInput)?,
            scopes_required: self.scopes_required,
            networks,
            leak_action: self.leak_action,
        })
    }
}

/// How far [`ApiKeys::apply_policy`] came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Applied {
    /// On every key and session, and marked so: how many items it wrote.
    Everywhere(usize),
    /// Out of time: the position is saved for the next request.
    Stopped,
}

/// A tenant's policy, and whether every key carries it yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyView {
    pub policy: KeyPolicy,
    /// Every key of the tenant carries this policy: it is in force.
    pub applied: bool,
}

impl From<TenantPolicy> for PolicyView {
    fn from(t: TenantPolicy) -> Self {
        Self {
            applied: t.is_applied(),
            policy: t.policy,
        }
    }
}

/// The same rules, whatever the generation?
fn same_rules(a: &KeyPolicy, b: &KeyPolicy) -> bool {
    KeyPolicy {
        generation: 0,
        ..a.clone()
    } == KeyPolicy {
        generation: 0,
        ..b.clone()
    }
}

/// The audit record's detail: the rules after the change.
fn describe(policy: &KeyPolicy) -> String {
    let days = |d: Option<u32>| d.map_or_else(|| "no limit".to_string(), |d| format!("{d} days"));
    let networks = if policy.networks.is_empty() {
        "any".to_string()
    } else {
        policy
            .networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "people's keys: {}; service accounts' keys: {}; scopes required: {}; networks: \
         {networks}; leaked keys: {}",
        days(policy.max_user_key_days),
        days(policy.max_service_key_days),
        if policy.scopes_required { "yes" } else { "no" },
        match policy.leak_action {
            LeakAction::Revoke => "revoked",
            LeakAction::Notify => "reported only",
        },
    )
}

impl ApiKeys {
    /// The tenant's key policy as its tenant item holds it now.
    pub(super) async fn current_policy(&self, tenant: Uuid) -> Result<KeyPolicy> {
        Ok(self
            .store
            .tenant_policy(tenant)
            .await?
            .ok_or(Error::NotFound("tenant"))?
            .policy)
    }

    /// `key_policy`: every member may read the rules its keys must meet.
    pub async fn key_policy(&self, p: &Principal) -> Result<PolicyView> {
        self.policy_now(p.tenant_id).await
    }

    /// `set_key_policy`: a human admin replaces the tenant's policy. Refused
    /// when it would refuse the very key and address making the change (an
    /// admin does not lock themself out). Answers once every key carries
    /// it; a failure part way is an error, and sending the same policy
    /// again finishes the work.
    /// `until`: when the request must stop writing keys (its deadline, less
    /// time to answer); a change not done by then is answered
    /// `Incomplete`, and sending it again goes on from where it stopped.
    pub async fn set_key_policy(
        &self,
        p: &Principal,
        change: &PolicyChange,
        source: Option<std::net::IpAddr>,
        until: Option<std::time::Instant>,
    ) -> Result<PolicyView> {
        may_change(p)?;
        if !authorize(p.actor(), Action::SetKeyPolicy, Target::Myself) {
            return Err(Error::Forbidden(
                "only a person who is an admin of the tenant may set its key policy".into(),
            ));
        }
        let rules = change.rules()?;
        if !network_allows(&rules.networks, source) {
            let from = source.map_or_else(|| "an unknown address".into(), |ip| ip.to_string());
            return Err(Error::BadInput(format!(
                "this allowlist would refuse the address this request came from ({from}): \
                 include it, or set the policy from within the networks"
            )));
        }
        // A person's session is no key: of the policy only the networks
        // bind it (checked above); its lifetime and scope rules are key
        // rules, and a session has neither an age nor scopes to judge.
        let created = p.key_created.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let violation = match p.session {
            Some(_) => None,
            None => rules.violation(p.account_type, created, p.key_expires_at, &p.key_scopes),
        };
        if let Some(v) = violation {
            return Err(Error::BadInput(format!(
                "this policy would refuse the API key making this change ({}): make this change \
                 with a key that meets it",
                v.message(p.account_type)
            )));
        }
        self.change_policy(
            p.tenant_id,
            rules,
            Some(p),
            AuditActor::of(p),
            Some(p.user_id),
            until,
        )
        .await
    }

    /// The operator's `set-policy`: no key of its own to lock out.
    pub async fn set_key_policy_as_operator(
        &self,
        tenant_slug: &str,
        change: &PolicyChange,
    ) -> Result<PolicyView> {
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let rules = change.rules()?;
        self.change_policy(tenant.id, rules, None, AuditActor::operator(), None, None)
            .await
    }

    /// The operator's view of a tenant's policy.
    pub async fn key_policy_as_operator(&self, tenant_slug: &str) -> Result<PolicyView> {
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        self.policy_now(tenant.id).await
    }

    /// Writes the new rules as the next generation (unless they are the
    /// rules already set), then onto every key. A change that loosens the
    /// policy in force is made only by an unlimited credential (`maker`:
    /// the caller; `None`: the operator).
    async fn change_policy(
        &self,
        tenant: Uuid,
        rules: KeyPolicy,
        maker: Option<&Principal>,
        actor: AuditActor,
        caller_admin: Option<Uuid>,
        until: Option<std::time::Instant>,
    ) -> Result<PolicyView> {
        for _ in 0..CONFLICT_RETRIES {
            let current = self
                .store
                .tenant_policy(tenant)
                .await?
                .ok_or(Error::NotFound("tenant"))?;
            if same_rules(&current.policy, &rules) {
                // Nothing to record: finish what an earlier request left,
                // from where it stopped.
                if !current.is_applied() {
                    self.finish(tenant, &current.policy, current.position, until)
                        .await?;
                }
                return self.policy_now(tenant).await;
            }
            if let (Some(p), Some(rule)) = (maker, current.policy.loosened_by(&rules)) {
                within(&Maker::of(p), Made::LooserPolicy(rule))
                    .map_err(|w| wider_than_credential(p, w))?;
            }
            let next = KeyPolicy {
                generation: current.policy.generation.saturating_add(1),
                ..rules.clone()
            };
            let event = AuditEvent::new(
                AuditAction::KeyPolicyChanged,
                actor.clone(),
                TargetType::Tenant,
                tenant,
                None,
            )
            .with_detail(describe(&next));
            let audit = self.audit(tenant, event);
            match self
                .store
                .set_policy(
                    tenant,
                    current.policy.generation,
                    &next,
                    caller_admin,
                    &audit,
                )
                .await?
            {
                PolicySet::Set => {
                    self.finish(tenant, &next, None, until).await?;
                    return self.policy_now(tenant).await;
                }
                PolicySet::Changed => continue,
                PolicySet::CallerNotAdmin => {
                    return Err(Error::Forbidden(
                        "only a person who is an admin of the tenant may set its key policy".into(),
                    ))
                }
            }
        }
        Err(kept_changing("the tenant's key policy"))
    }

    /// [`ApiKeys::apply_policy`] of a policy already recorded, from where
    /// an earlier request left it: a failure, or running out of time, is
    /// said as what it is (recorded, not yet on every key, and how to go
    /// on), never as "nothing changed".
    async fn finish(
        &self,
        tenant: Uuid,
        policy: &KeyPolicy,
        position: Option<String>,
        until: Option<std::time::Instant>,
    ) -> Result<()> {
        match self.apply_policy(tenant, policy, position, until).await {
            Ok(Applied::Everywhere(_)) => Ok(()),
            Ok(Applied::Stopped) => Err(Error::Incomplete(
                "the key policy is recorded and being written onto the tenant's keys; this \
                 request ran out of time part way (its progress is kept): until it is on every \
                 key, some keys are still judged by the previous policy; send the same policy \
                 again to continue from where it stopped"
                    .into(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, generation = policy.generation, "a key policy stopped part way");
                Err(Error::Incomplete(
                    "the key policy was recorded, but not every key carries it yet (the \
                     database failed part way; the progress made is kept): until it does, some \
                     keys are still judged by the previous policy; send the same policy again to \
                     continue"
                        .into(),
                ))
            }
        }
    }

    /// The policy in force now, as the tenant item says: after a change
    /// another one may have replaced (then that one is answered, and
    /// whether it is on every key).
    async fn policy_now(&self, tenant: Uuid) -> Result<PolicyView> {
        Ok(self
            .store
            .tenant_policy(tenant)
            .await?
            .ok_or(Error::NotFound("tenant"))?
            .into())
    }

    /// Writes `policy` onto every key of the tenant after `position` (a key
    /// made after the policy was set already carries it; one carrying a
    /// newer generation is left alone), a page at a time, saving the
    /// position after each page; then onto the sessions of its members,
    /// then marks it applied. With `until`, no page is begun past it: the
    /// answer is then [`Applied::Stopped`], and the next call goes on from
    /// the saved position. Cost per page of 100 keys: one Query, one
    /// conditional UpdateItem per key, one UpdateItem of the tenant item;
    /// at the end, the members' Query and one UpdateItem per session.
    pub(super) async fn apply_policy(
        &self,
        tenant: Uuid,
        policy: &KeyPolicy,
        mut position: Option<String>,
        until: Option<std::time::Instant>,
    ) -> Result<Applied> {
        let mut written: usize = 0;
        let mut pages: usize = 0;
        loop {
            // Every request makes progress: one page at least.
            if pages > 0 && until.is_some_and(|until| std::time::Instant::now() >= until) {
                return Ok(Applied::Stopped);
            }
            pages = pages.saturating_add(1);
            let page = self.store.key_page(tenant, position.as_deref()).await?;
            let writes: Vec<_> = page
                .keys
                .iter()
                .map(|k| {
                    self.store
                        .apply_policy_to_key(&k.hash, k.key.created, policy)
                })
                .collect();
            written = written.saturating_add(self.run_writes(writes).await?);
            if let Some(last) = &page.last {
                self.store
                    .save_policy_position(tenant, policy.generation, last)
                    .await?;
                position = Some(last.clone());
            }
            if page.done {
                break;
            }
        }
        // People's sessions carry the policy too (its networks bind them):
        // those listed on the memberships, read after the policy was set
        // (one written since checked the generation it copied).
        let sessions: Vec<_> = self
            .store
            .members(tenant)
            .await?
            .into_iter()
            .flat_map(|m| m.sessions)
            .collect();
        let now = self.now();
        let writes: Vec<_> = sessions
            .iter()
            .map(|s| self.store.apply_policy_to_key(&s.hash, now, policy))
            .collect();
        written = written.saturating_add(self.run_writes(writes).await?);
        self.store
            .mark_policy_applied(tenant, policy.generation)
            .await?;
        Ok(Applied::Everywhere(written))
    }

    /// Runs writes of a policy onto items a few at a time: how many wrote.
    async fn run_writes<F>(&self, writes: Vec<F>) -> Result<usize>
    where
        F: std::future::Future<Output = std::result::Result<bool, apikeys_store::StoreError>>,
    {
        let results: Vec<_> = stream::iter(writes)
            .buffer_unordered(APPLY_CONCURRENCY)
            .collect()
            .await;
        let mut written: usize = 0;
        for result in results {
            if result? {
                written = written.saturating_add(1);
            }
        }
        Ok(written)
    }
}
