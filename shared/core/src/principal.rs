//! Who is calling: the member a credential acts for, with what
//! authentication read of its key (or the person's session), in one value
//! every rule and operation takes.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{AccountType, Actor, Member, Role, Tenant};

/// Who is calling: the owner of the presented key, acting in the key's
/// tenant, as authentication read it (one item: see `store::AuthCopy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub api_key_id: Uuid,
    pub username: String,
    pub account_type: AccountType,
    pub role: Role,
    pub membership_id: Uuid,
    pub email: Option<String>,
    /// The tenant the key acts in.
    pub tenant: Tenant,
    /// When the presenting key was last recorded as used (what
    /// authentication read): decides whether this use is recorded.
    pub key_last_used: Option<OffsetDateTime>,
    /// The presenting key was replaced by a rotation and works only until
    /// its grace ends: it authenticates, and may change nothing.
    pub key_replaced: bool,
    /// The presenting key's role ceiling: it acts with the lower of this
    /// and the owner's `role` (`None`: the owner's role).
    pub key_ceiling: Option<Role>,
    /// The networks the presenting key may be used from (empty: any).
    pub key_networks: Vec<ipnet::IpNet>,
    /// The presenting key's scopes (empty: not limited by scopes).
    pub key_scopes: Vec<String>,
    /// When the presenting key was made (`None`: an item written before
    /// this was copied, in a tenant that never set a key policy).
    pub key_created: Option<OffsetDateTime>,
    /// When the presenting key expires.
    pub key_expires_at: Option<OffsetDateTime>,
    /// The tenant's key policy as copied onto the presenting key's item.
    pub policy: crate::policy::KeyPolicy,
    /// The session the caller presented, when a person signed in with the
    /// identity provider (then `api_key_id` is nil: no key acts).
    pub session: Option<SessionRef>,
}

/// A session as its caller presented it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRef {
    pub id: Uuid,
    pub hash: crate::token::TokenHash,
    /// When its access token stops working.
    pub expires_at: OffsetDateTime,
    pub person: Person,
}

/// A person as the identity provider vouched for them at sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// Verified by the provider, lowercase (`None`: it said not).
    pub email: Option<String>,
    /// The user the identity is linked to (`None`: not yet, a first
    /// sign-in of an invited person).
    pub user_id: Option<Uuid>,
}

impl Principal {
    /// Who acts: the owner, with the lower of its role and the key's ceiling.
    pub fn actor(&self) -> Actor {
        Actor::new(self.effective_role(), self.account_type)
    }

    /// What the presenting key may do: the owner's role, at most the
    /// key's ceiling, at every request (an owner demoted below the ceiling
    /// acts with its new role).
    pub fn effective_role(&self) -> Role {
        self.key_ceiling.map_or(self.role, |c| self.role.lower(c))
    }

    /// May the presenting key change anything? Not in its rotation grace,
    /// and not with a read-only ceiling (a read-only key reads, and nothing
    /// else: not even its owner's keys).
    pub fn key_may_write(&self) -> bool {
        !self.key_read_only()
            && crate::policy::scopes_grant(&self.key_scopes, crate::policy::SCOPE_APIKEYS_WRITE)
    }

    /// Is the presenting key read-only by its ceiling or its rotation
    /// grace, whatever its scopes (what the authorizer tells other APIs:
    /// there, scopes say what the key may do)?
    pub fn key_read_only(&self) -> bool {
        self.key_replaced || self.key_ceiling == Some(Role::ReadOnlyUser)
    }

    /// May the presenting key use this service's own API at all? A scoped
    /// key needs `apikeys:read` or `apikeys:write` (or `apikeys:*`).
    pub fn key_may_read(&self) -> bool {
        use crate::policy::{scopes_grant, SCOPE_APIKEYS_READ, SCOPE_APIKEYS_WRITE};
        scopes_grant(&self.key_scopes, SCOPE_APIKEYS_READ)
            || scopes_grant(&self.key_scopes, SCOPE_APIKEYS_WRITE)
    }

    /// The caller as a member of its tenant.
    pub fn member(&self) -> Member {
        Member {
            membership_id: self.membership_id,
            tenant_id: self.tenant_id,
            user_id: self.user_id,
            username: self.username.clone(),
            email: self.email.clone(),
            account_type: self.account_type,
            role: self.role,
        }
    }
}
