//! One verification chain for every credential: its hash item loaded once
//! (by the service, from the store), then named checks, each of which can
//! only refuse, in one order, ending in one [`Verdict`]. The GraphQL
//! function and the authorizer use the same chain; only where a credential
//! is used ([`Api`]) differs.
//!
//! The order, and what each check answers:
//! 1. [`check::tenant_header_form`]: a tenant header that is no UUID
//!    (before any read);
//! 2. the load: no such hash item (`unknown_or_revoked`);
//! 3. [`check::expiry`], to the second;
//! 4. [`check::disabled`];
//! 5. [`check::tenant`]: the tenant header names another tenant;
//! 6. [`check::policy_lifetime`] and [`check::policy_scopes`]: the tenant's
//!    key policy (a key rule: a person's session is not judged by them);
//! 7. [`check::tenant_networks`] and [`check::key_networks`];
//! 8. [`check::scope_for_this_api`] (this service's own API only: another
//!    API's route map decides there, in the authorizer);
//! 9. [`check::may_write`], for what changes something.
//!
//! Steps 1 to 5 answer "unauthenticated" (the caller holds no credential
//! that works here; a foreign tenant is the gateway's 403 on another API);
//! steps 6 to 9 answer "forbidden" with a message that names the rule.

use std::net::IpAddr;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::network_allows;
use crate::policy::{scopes_grant, Violation, SCOPE_APIKEYS_READ, SCOPE_APIKEYS_WRITE};
use crate::principal::Principal;
use crate::refusal::Refusal;

/// Which API a credential is used on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// This service's own GraphQL API: a scoped key needs one of its
    /// scopes (`apikeys:read`, `apikeys:write`); a foreign tenant header is
    /// "unauthenticated" (what the Prefect client expects).
    ThisOne,
    /// Another API of the platform, behind the authorizer: its route map
    /// decides scopes; a foreign tenant header is the gateway's 403.
    Other,
}

/// Where and when a credential is used.
#[derive(Clone, Copy, Debug)]
pub struct Use<'a> {
    pub now: OffsetDateTime,
    /// The tenant the request names (`X-Prefect-Tenant-Id`), if any.
    pub tenant_header: Option<&'a str>,
    /// The caller's address as API Gateway saw it (`None`: not known).
    pub source: Option<IpAddr>,
    pub api: Api,
}

/// A valid credential refused for where or how it is used: the reason, a
/// message that names the rule (never the key), and the scope it lacked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub reason: Refusal,
    pub message: String,
    pub needed_scope: Option<String>,
}

/// What a check answers when it refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The caller holds no credential that works here (and is told no more).
    Unauthenticated(Refusal),
    /// A valid credential refused here, and why.
    Forbidden(Denial),
}

/// The one outcome of verifying a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(Box<Principal>),
    Unauthenticated(Refusal),
    Forbidden(Denial),
}

impl From<Refused> for Verdict {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Unauthenticated(reason) => Verdict::Unauthenticated(reason),
            Refused::Forbidden(denial) => Verdict::Forbidden(denial),
        }
    }
}

/// The tenant a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// None: the credential's own.
    Any,
    Tenant(Uuid),
    /// A header that is no UUID.
    Unreadable,
}

/// Why a credential may not change anything ([`check::may_write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// A scoped key without `apikeys:write`.
    ScopeMissing,
    /// A key with a read-only ceiling.
    ReadOnly,
    /// A key replaced by a rotation, in its grace.
    Replaced,
}

impl WriteRefusal {
    pub fn message(self) -> String {
        match self {
            WriteRefusal::ScopeMissing => format!(
                "this API key's scopes do not let it change anything here: that needs the \
                 scope {SCOPE_APIKEYS_WRITE}"
            ),
            WriteRefusal::ReadOnly => "this API key is read-only: it may read, and change \
                 nothing (not even its owner's keys); use a key without that limit"
                .into(),
            WriteRefusal::Replaced => "this API key was replaced by a rotation and only works \
                 until its grace period ends: it cannot create, rotate or revoke keys or manage \
                 accounts; use the key that replaced it"
                .into(),
        }
    }
}

/// The named checks of the chain, each answering a refusal or nothing.
pub mod check {
    use super::*;

    fn denied(reason: Refusal, message: String) -> Refused {
        Refused::Forbidden(Denial {
            reason,
            message,
            needed_scope: None,
        })
    }

    /// The tenant header as read: on this API one that is no UUID is
    /// refused before any read; on another it is refused with the tenant
    /// check (after the key is known to be valid: the gateway's 403).
    pub fn tenant_header_form(at: &Use<'_>) -> Result<Wanted, Refused> {
        match at.tenant_header.map(|value| Uuid::parse_str(value.trim())) {
            None => Ok(Wanted::Any),
            Some(Ok(tenant)) => Ok(Wanted::Tenant(tenant)),
            Some(Err(_)) if at.api == Api::ThisOne => {
                Err(Refused::Unauthenticated(Refusal::WrongTenant))
            }
            Some(Err(_)) => Ok(Wanted::Unreadable),
        }
    }

    fn foreign_tenant(api: Api) -> Refused {
        match api {
            Api::ThisOne => Refused::Unauthenticated(Refusal::WrongTenant),
            Api::Other => denied(
                Refusal::WrongTenant,
                "this API key belongs to another tenant than the one asked for".into(),
            ),
        }
    }

    /// Not expired, to the second.
    pub fn expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Result<(), Refused> {
        if expires_at.is_some_and(|at| at <= now) {
            return Err(Refused::Unauthenticated(Refusal::Expired));
        }
        Ok(())
    }

    /// Not disabled: a disabled key fails like a revoked one, until enabled.
    pub fn disabled(disabled: bool) -> Result<(), Refused> {
        if disabled {
            return Err(Refused::Unauthenticated(Refusal::Disabled));
        }
        Ok(())
    }

    /// Acting in the tenant the request names, when it names one.
    pub fn tenant(wanted: Wanted, tenant: Uuid, api: Api) -> Result<(), Refused> {
        match wanted {
            Wanted::Any => Ok(()),
            Wanted::Tenant(t) if t == tenant => Ok(()),
            _ => Err(foreign_tenant(api)),
        }
    }

    /// A key's lifetime within its tenant's policy (a key item written
    /// before `created` was copied, under a lifetime limit, cannot be
    /// judged: the limit wins). A person's session is no key.
    pub fn policy_lifetime(p: &Principal) -> Result<(), Refused> {
        policy(p, |v| {
            matches!(v, Violation::NoExpiry { .. } | Violation::TooLong { .. })
        })
    }

    /// A key's scopes as its tenant's policy requires.
    pub fn policy_scopes(p: &Principal) -> Result<(), Refused> {
        policy(p, |v| matches!(v, Violation::ScopesRequired))
    }

    fn policy(p: &Principal, this: impl Fn(&Violation) -> bool) -> Result<(), Refused> {
        if p.session.is_some() {
            return Ok(());
        }
        let created = p.key_created.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let Some(violation) = p
            .policy
            .violation(p.account_type, created, p.key_expires_at, &p.key_scopes)
            .filter(|v| this(v))
        else {
            return Ok(());
        };
        let reason = match violation {
            Violation::ScopesRequired => Refusal::PolicyScopesRequired,
            _ => Refusal::PolicyMaxLifetime,
        };
        Err(denied(
            reason,
            format!(
                "{}: make a key that meets the policy, or ask an admin to loosen it",
                violation.message(p.account_type)
            ),
        ))
    }

    fn from(source: Option<IpAddr>) -> String {
        source.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string())
    }

    /// From within the tenant's network allowlist (keys and sessions).
    pub fn tenant_networks(p: &Principal, source: Option<IpAddr>) -> Result<(), Refused> {
        if p.policy.allows_source(source) {
            return Ok(());
        }
        Err(denied(
            Refusal::PolicyNetwork,
            format!(
                "this tenant's key policy allows its keys only from its own networks, and this \
                 request came from {}",
                from(source)
            ),
        ))
    }

    /// From within the key's own networks (a limited key is refused where
    /// the place is not known).
    pub fn key_networks(p: &Principal, source: Option<IpAddr>) -> Result<(), Refused> {
        if network_allows(&p.key_networks, source) {
            return Ok(());
        }
        Err(denied(
            Refusal::NetworkNotAllowed,
            format!(
                "this API key may not be used from {}: it is limited to other networks",
                from(source)
            ),
        ))
    }

    /// On this service's own API, a scoped key needs `apikeys:read` or
    /// `apikeys:write` (or `apikeys:*`).
    pub fn scope_for_this_api(p: &Principal) -> Result<(), Refused> {
        if scopes_grant(&p.key_scopes, SCOPE_APIKEYS_READ)
            || scopes_grant(&p.key_scopes, SCOPE_APIKEYS_WRITE)
        {
            return Ok(());
        }
        Err(Refused::Forbidden(Denial {
            reason: Refusal::ScopeMissing,
            message: format!(
                "this API key's scopes do not include this API: it needs the scope \
                 {SCOPE_APIKEYS_READ} (or apikeys:write to change things)"
            ),
            needed_scope: Some(SCOPE_APIKEYS_READ.to_string()),
        }))
    }

    /// May the credential change anything? Not a scoped key without
    /// `apikeys:write`, not a read-only one, not one in its rotation grace.
    pub fn may_write(p: &Principal) -> Result<(), WriteRefusal> {
        if !p.key_read_only() && !p.key_may_write() {
            return Err(WriteRefusal::ScopeMissing);
        }
        if p.key_replaced {
            return Err(WriteRefusal::Replaced);
        }
        if !p.key_may_write() {
            return Err(WriteRefusal::ReadOnly);
        }
        Ok(())
    }
}

/// The checks that follow the load, in order, on the caller as loaded: the
/// policy, the networks, and (on this API) the scope. A person's session
/// is judged by the tenant's networks alone of them.
pub fn admit(p: Principal, at: &Use<'_>) -> Verdict {
    let checked = check::policy_lifetime(&p)
        .and_then(|()| check::policy_scopes(&p))
        .and_then(|()| check::tenant_networks(&p, at.source))
        .and_then(|()| check::key_networks(&p, at.source))
        .and_then(|()| match at.api {
            Api::ThisOne => check::scope_for_this_api(&p),
            Api::Other => Ok(()),
        });
    match checked {
        Ok(()) => Verdict::Allow(Box::new(p)),
        Err(refused) => refused.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountType, Role, Tenant};
    use crate::policy::KeyPolicy;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
    }

    fn key() -> Principal {
        let tenant = Uuid::from_u128(7);
        Principal {
            user_id: Uuid::from_u128(1),
            tenant_id: tenant,
            api_key_id: Uuid::from_u128(2),
            username: "ann".into(),
            account_type: AccountType::User,
            role: Role::TenantAdmin,
            membership_id: Uuid::from_u128(3),
            email: None,
            tenant: Tenant {
                id: tenant,
                name: "Acme".into(),
                slug: "acme".into(),
                created: t0(),
            },
            key_last_used: None,
            key_replaced: false,
            key_ceiling: None,
            key_networks: Vec::new(),
            key_scopes: Vec::new(),
            key_created: Some(t0()),
            key_expires_at: None,
            policy: KeyPolicy::default(),
            session: None,
        }
    }

    fn at(api: Api, source: Option<&str>) -> Use<'static> {
        Use {
            now: t0(),
            tenant_header: None,
            source: source.map(|s| s.parse().unwrap()),
            api,
        }
    }

    fn reason(verdict: &Verdict) -> Option<Refusal> {
        match verdict {
            Verdict::Allow(_) => None,
            Verdict::Unauthenticated(r) => Some(*r),
            Verdict::Forbidden(d) => Some(d.reason),
        }
    }

    #[test]
    fn the_load_checks_refuse_as_unauthenticated_and_a_foreign_tenant_by_api() {
        let second = time::Duration::SECOND;
        assert!(
            check::expiry(Some(t0()), t0()).is_err(),
            "expired at that second"
        );
        assert!(check::expiry(Some(t0() + second), t0()).is_ok());
        assert!(check::disabled(true).is_err());
        let own = Uuid::from_u128(7);
        let other = Wanted::Tenant(Uuid::from_u128(8));
        assert_eq!(
            check::tenant(other, own, Api::ThisOne),
            Err(Refused::Unauthenticated(Refusal::WrongTenant))
        );
        assert!(matches!(
            check::tenant(Wanted::Unreadable, own, Api::Other),
            Err(Refused::Forbidden(Denial {
                reason: Refusal::WrongTenant,
                ..
            }))
        ));
        assert_eq!(check::tenant(Wanted::Tenant(own), own, Api::Other), Ok(()));
        // On this API an unreadable header is refused before any read.
        let header = Use {
            tenant_header: Some("not-a-uuid"),
            ..at(Api::ThisOne, None)
        };
        assert!(check::tenant_header_form(&header).is_err());
        let other_api = Use {
            api: Api::Other,
            ..header
        };
        assert_eq!(
            check::tenant_header_form(&other_api),
            Ok(Wanted::Unreadable)
        );
    }

    #[test]
    fn admission_checks_policy_networks_and_scope_in_order() {
        assert_eq!(reason(&admit(key(), &at(Api::ThisOne, None))), None);
        // A tenant's lifetime rule judges keys, never a session.
        let mut old = key();
        old.policy.max_user_key_days = Some(30);
        assert_eq!(
            reason(&admit(old.clone(), &at(Api::ThisOne, None))),
            Some(Refusal::PolicyMaxLifetime)
        );
        let mut networked = key();
        networked.key_networks = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            reason(&admit(
                networked.clone(),
                &at(Api::Other, Some("192.0.2.1"))
            )),
            Some(Refusal::NetworkNotAllowed)
        );
        assert_eq!(
            reason(&admit(networked, &at(Api::Other, Some("10.1.2.3")))),
            None
        );
        // The tenant's networks before the key's own.
        let mut both = key();
        both.policy.networks = vec!["172.16.0.0/12".parse().unwrap()];
        both.key_networks = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            reason(&admit(both, &at(Api::ThisOne, Some("192.0.2.1")))),
            Some(Refusal::PolicyNetwork)
        );
        // A key scoped to another API: refused here, not elsewhere.
        let mut scoped = key();
        scoped.key_scopes = vec!["orders:read".into()];
        let here = admit(scoped.clone(), &at(Api::ThisOne, None));
        assert!(matches!(
            &here,
            Verdict::Forbidden(Denial { needed_scope: Some(s), .. }) if s == "apikeys:read"
        ));
        assert_eq!(reason(&admit(scoped, &at(Api::Other, None))), None);
    }

    #[test]
    fn what_may_write_says_for_each_kind_of_key() {
        assert_eq!(check::may_write(&key()), Ok(()));
        let mut reader = key();
        reader.key_scopes = vec!["apikeys:read".into()];
        assert_eq!(check::may_write(&reader), Err(WriteRefusal::ScopeMissing));
        let mut read_only = key();
        read_only.key_ceiling = Some(Role::ReadOnlyUser);
        assert_eq!(check::may_write(&read_only), Err(WriteRefusal::ReadOnly));
        let mut replaced = read_only;
        replaced.key_replaced = true;
        assert_eq!(check::may_write(&replaced), Err(WriteRefusal::Replaced));
    }
}
