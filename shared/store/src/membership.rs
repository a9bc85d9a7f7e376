//! A membership as the table holds it: the member, and what the store
//! keeps beside it (a change's lease, a legacy mark, a service account's
//! key index, the member's sessions). The domain's view of a member is
//! `apikeys_core::domain::Member`.

use std::collections::BTreeSet;

use apikeys_core::domain::{AccountType, LeaseKind, Member, Role};
use time::OffsetDateTime;
use uuid::Uuid;

use apikeys_core::token::TokenHash;

use super::Item;

/// A user's or service account's place in one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub account_type: AccountType,
    pub role: Role,
    pub key_count: u32,
    pub created: OffsetDateTime,
    /// A removal or a role change in progress (see [`Lease`]).
    pub lease: Option<Lease>,
    /// A `removing` or `changing` mark left by an earlier version (which
    /// nothing reads any more): the operator's check removes it.
    pub legacy_mark: bool,
    /// A service account's index of its keys: their ids, written on the
    /// membership by every write that adds or removes one of its keys (in
    /// the same transaction, beside `key_count`), so that its keys are read
    /// by id rather than found among every service-account key of the
    /// tenant. Complete when it holds `key_count` ids (see
    /// [`Membership::indexed_keys`]); empty for people, whose keys are
    /// listed by their own prefix.
    pub key_ids: BTreeSet<Uuid>,
    /// The index was verified complete: written with the account by this
    /// version, or rebuilt from a listing of every service-account key of
    /// the tenant (a recount). An earlier version writes keys without
    /// indexing them (a rotation of one leaves no trace on the membership
    /// at all), so an index is trusted only once verified.
    pub keys_indexed: bool,
    /// The sessions of this member in this tenant (people signed in with
    /// the identity provider), oldest end first, and their listing's
    /// version (see `store::sessions`).
    pub sessions: Vec<SessionEntry>,
    pub sessions_version: i64,
}

/// A removal's, a role change's or a recount's hold on a membership, stored
/// on its item. Taken only when absent or expired, released only by its
/// holder (by `token`), committed away by the change's own transaction.
/// While it holds (until `until`, inclusive), nothing may add a key to the
/// member (create, rotate) and no other of those changes may take it (they
/// wait a little, then answer that the member is busy); revocation and the
/// sweeper are never blocked. It frees itself at
/// `until` whatever happens to its holder: a crash, a time-out, a database
/// that fails half-way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub kind: LeaseKind,
    pub token: Uuid,
    pub until: OffsetDateTime,
}

impl Membership {
    /// The lease of a change in progress at `now`, if any (an expired
    /// lease is none).
    pub fn busy(&self, now: OffsetDateTime) -> Option<Lease> {
        self.lease.filter(|l| l.until >= now)
    }

    /// A service account's key ids when its index is trusted: verified
    /// (`keys_indexed`) and holding as many ids as `key_count` (a key
    /// deleted outside our transactions leaves both too high, alike).
    /// `None` otherwise, and for people: then the keys are found among
    /// every service-account key of the tenant, and a recount (the
    /// operator's repair) rebuilds and verifies the index.
    pub fn indexed_keys(&self) -> Option<&BTreeSet<Uuid>> {
        let complete = self.account_type == AccountType::Service
            && self.keys_indexed
            && u32::try_from(self.key_ids.len()).is_ok_and(|n| n == self.key_count);
        complete.then_some(&self.key_ids)
    }

    /// A person with the admin role: the tenant must always keep one.
    pub fn is_admin_user(&self) -> bool {
        self.account_type == AccountType::User && self.role == Role::TenantAdmin
    }
}

impl From<Membership> for Member {
    fn from(m: Membership) -> Self {
        Self {
            membership_id: m.id,
            tenant_id: m.tenant_id,
            user_id: m.user_id,
            username: m.username,
            email: m.email,
            account_type: m.account_type,
            role: m.role,
        }
    }
}

/// One session as listed on its membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEntry {
    pub id: Uuid,
    pub hash: TokenHash,
    /// When the session ends, whatever happens.
    pub until: OffsetDateTime,
    /// The listing's version when its tokens were issued (a sign-in or a
    /// refresh): entries of one listing are written one version at a time,
    /// so this orders them exactly (0: an entry of an earlier version).
    pub issued: i64,
}

/// The sessions listed on an item (a membership, or the sessions item of
/// an email), oldest issued first, and their version.
pub(super) fn sessions_from(item: &Item) -> (Vec<SessionEntry>, i64) {
    let mut entries: Vec<SessionEntry> = item
        .iter()
        .filter_map(|(name, value)| {
            let id = Uuid::parse_str(name.strip_prefix("sess_")?).ok()?;
            let mut parts = value.as_s().ok()?.split(' ');
            let hash = parts.next()?;
            let until = OffsetDateTime::from_unix_timestamp(parts.next()?.parse().ok()?).ok()?;
            let issued = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            Some(SessionEntry {
                id,
                hash: TokenHash::from_stored(hash.to_string()),
                until,
                issued,
            })
        })
        .collect();
    entries.sort_by_key(|e| (e.issued, e.until, e.id));
    let version = item
        .get("sess_v")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (entries, version)
}
