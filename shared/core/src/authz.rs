//! The rules of who may do what (docs/SECURITY.md's "Rules" table), in one place, as pure functions: the
//! table of (role, account type, action, target) in [`authorize`], the
//! permissions derived from it, the rule that nothing is made wider than
//! the credential making it ([`within`]), the tenant's last admin, and the
//! key limit.
//! The service applies them; the store only enforces the same bounds in its
//! transactions' conditions (so that concurrent requests cannot pass them).
//!
//! Callers resolve the target inside the request's tenant first; a target
//! in another tenant is never found, so these rules never see it. Where
//! seeing a thing is itself refused (a key, a member of another kind), a
//! `false` is reported to the caller exactly like "not found"; where the
//! caller sees the target, as FORBIDDEN.

pub use crate::domain::Actor;
use crate::domain::{narrow_networks, AccountType, Role};
use crate::policy::{narrow_scopes, scope_grants};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create an API key owned by the target.
    CreateKey,
    /// See the target's keys in `auth_api_key`.
    ListKeys,
    /// Revoke one of the target's keys.
    RevokeKey,
    CreateServiceAccount,
    DeleteServiceAccount,
    ChangeRole,
    RemoveMember,
    /// See the target's email address.
    ReadEmail,
    /// Read the tenant's audit log (the target does not matter).
    ReadAuditLog,
    /// Set the tenant's key policy (the target does not matter; every
    /// member reads it, to make keys that meet it).
    SetKeyPolicy,
    /// Invite a person to the tenant, or withdraw an invitation, and see
    /// the tenant's pending invitations (the target does not matter).
    Invite,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::CreateKey,
        Action::ListKeys,
        Action::RevokeKey,
        Action::CreateServiceAccount,
        Action::DeleteServiceAccount,
        Action::ChangeRole,
        Action::RemoveMember,
        Action::ReadEmail,
        Action::ReadAuditLog,
        Action::SetKeyPolicy,
        Action::Invite,
    ];
}

/// The target of an action, relative to the caller, within the caller's tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The caller themself.
    Myself,
    /// A service account of the tenant other than the caller.
    ServiceAccount,
    /// A user of the tenant other than the caller.
    OtherUser,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Myself, Target::ServiceAccount, Target::OtherUser];

    pub fn of(caller_id: Uuid, target_id: Uuid, target_type: AccountType) -> Target {
        if caller_id == target_id {
            Target::Myself
        } else if target_type == AccountType::Service {
            Target::ServiceAccount
        } else {
            Target::OtherUser
        }
    }
}

/// May `actor` do `action` to `target`?
///
/// Service accounts are tenant admins by default, so an admin service
/// account manages keys and service accounts (itself included) like any
/// admin; but the people of a tenant (their roles and memberships) are
/// changed only by a human admin: a leaked CI key cannot rewrite the team.
pub fn authorize(actor: Actor, action: Action, target: Target) -> bool {
    use Action::*;
    let admin = actor.role == Role::TenantAdmin;
    let human_admin = admin && actor.account_type == AccountType::User;
    let service_admin = admin && actor.account_type == AccountType::Service;
    match (action, target) {
        // Who did what in the tenant: its admins, people and service accounts.
        (ReadAuditLog, _) => admin,
        // The rules every key of the tenant must meet: its human admins
        // (a leaked service-account key cannot loosen them).
        (SetKeyPolicy, _) => human_admin,
        // Who joins the team: its human admins (a leaked service-account
        // key cannot bring anyone in).
        (Invite, _) => human_admin,
        (CreateKey | ListKeys | RevokeKey, Target::Myself) => true,
        (CreateKey | ListKeys | RevokeKey, Target::ServiceAccount) => admin,
        (CreateKey | ListKeys | RevokeKey, Target::OtherUser) => false,
        (CreateServiceAccount, Target::ServiceAccount) => admin,
        (CreateServiceAccount, _) => false,
        (DeleteServiceAccount, Target::ServiceAccount) => admin,
        // The same answer as `RemoveMember` of oneself: both paths agree.
        (DeleteServiceAccount, Target::Myself) => service_admin,
        (DeleteServiceAccount, Target::OtherUser) => false,
        (ChangeRole | RemoveMember, Target::Myself | Target::ServiceAccount) => admin,
        (ChangeRole | RemoveMember, Target::OtherUser) => human_admin,
        // A person's address is theirs and their human admins'.
        (ReadEmail, Target::Myself) => true,
        (ReadEmail, Target::ServiceAccount | Target::OtherUser) => human_admin,
    }
}

/// What `auth_info.permissions` reports, each name with the action and
/// target it stands for: granted exactly when [`authorize`] allows that.
/// (Every member reads its tenant: `read:tenant` is always granted.)
const PERMISSIONS: &[(&str, Action, Target, bool)] = &[
    ("create:api_key", Action::CreateKey, Target::Myself, true),
    ("delete:api_key", Action::RevokeKey, Target::Myself, true),
    (
        "create:service_account",
        Action::CreateServiceAccount,
        Target::ServiceAccount,
        true,
    ),
    (
        "delete:service_account",
        Action::DeleteServiceAccount,
        Target::ServiceAccount,
        true,
    ),
    // A person's membership: what "membership" means to Prefect.
    (
        "update:membership",
        Action::ChangeRole,
        Target::OtherUser,
        true,
    ),
    (
        "delete:membership",
        Action::RemoveMember,
        Target::OtherUser,
        true,
    ),
    (
        "read:audit_log",
        Action::ReadAuditLog,
        Target::Myself,
        false,
    ),
    (
        "update:key_policy",
        Action::SetKeyPolicy,
        Target::Myself,
        true,
    ),
];

/// The permissions of `actor` acting with a key, derived from the rules
/// (never listed apart from them): what the console and clients may offer.
/// A key that may change nothing (`key_may_write` false: in its rotation
/// grace, or read-only), whoever owns it, is granted the reads only. (The
/// fourth column of [`PERMISSIONS`]: whether the permission changes
/// anything.)
pub fn permissions(actor: Actor, key_may_write: bool) -> Vec<&'static str> {
    std::iter::once("read:tenant")
        .chain(
            PERMISSIONS
                .iter()
                .filter(|(_, _, _, writes)| key_may_write || !*writes)
                .filter(|(_, action, target, _)| authorize(actor, *action, *target))
                .map(|(name, _, _, _)| *name),
        )
        .collect()
}

/// How far a credential reaches: the limits the rule "no credential wider
/// than its maker" ([`within`]) compares one by one. A key's are its own; a
/// person's session has none of them (it is the person, bound by the
/// tenant's networks like every credential of the tenant).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// The most role it acts with (`None`: its owner's, whatever that is).
    pub ceiling: Option<Role>,
    /// What it may do (empty: not limited by scopes).
    pub scopes: Vec<String>,
    /// Where it may be used from (empty: anywhere).
    pub networks: Vec<ipnet::IpNet>,
    /// When it stops (`None`: it has no end of its own).
    pub expires_at: Option<OffsetDateTime>,
}

/// One limit of a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Ceiling,
    Scopes,
    Networks,
    Lifetime,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Ceiling => "a role ceiling",
            Limit::Scopes => "scopes",
            Limit::Networks => "networks",
            Limit::Lifetime => "an expiry",
        }
    }
}

impl Reach {
    /// The first limit this credential has (`None`: unlimited).
    pub fn first_limit(&self) -> Option<Limit> {
        if self.ceiling.is_some() {
            Some(Limit::Ceiling)
        } else if !self.scopes.is_empty() {
            Some(Limit::Scopes)
        } else if !self.networks.is_empty() {
            Some(Limit::Networks)
        } else if self.expires_at.is_some() {
            Some(Limit::Lifetime)
        } else {
            None
        }
    }
}

/// Who makes or gives something: the role it acts with now, and its reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maker {
    pub role: Role,
    pub reach: Reach,
}

impl Maker {
    /// The caller as a maker: a key with its limits (its role the lower of
    /// its owner's and its ceiling); a person's session with none.
    pub fn of(p: &crate::principal::Principal) -> Self {
        let reach = match p.session {
            Some(_) => Reach::default(),
            None => Reach {
                ceiling: p.key_ceiling,
                scopes: p.key_scopes.clone(),
                networks: p.key_networks.clone(),
                expires_at: p.key_expires_at,
            },
        };
        Self {
            role: p.effective_role(),
            reach,
        }
    }
}

/// What an action makes or gives, as [`within`] judges it. Every path that
/// yields a credential or a grant names it here: keys created, rotated
/// (the new key keeps the old one's limits) and enabled again; service
/// accounts; invitations and role changes; key policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Made<'a> {
    /// A key with this reach (its owner's role at most its ceiling).
    Key(&'a Reach),
    /// A role given to a member: invited with it (`from: None`) or changed
    /// to it. It reaches every credential the member has or will have (a
    /// person's sessions and keys), which carry none of the maker's limits.
    Role { from: Option<Role>, to: Role },
    /// A service account with this role. It holds no credential of its
    /// own: each of its keys is made by someone, and is a [`Made::Key`].
    Account(Role),
    /// A tenant key policy that loosens this rule of the one in force (it
    /// binds every key of the tenant, the maker's among them).
    LooserPolicy(&'static str),
}

/// Why what an action would make is wider than its maker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wider {
    pub limit: Limit,
    /// What the caller is told: which limit, and what to do instead.
    pub message: String,
}

fn wider(limit: Limit, message: String) -> Wider {
    Wider { limit, message }
}

/// No credential wider than its maker: may `maker` make `made`? The one
/// rule every path that yields a credential or a grant calls.
/// - a key: within the maker in each limit (a ceiling no higher, scopes
///   each granted by the maker's, networks each within the maker's, an
///   expiry no later);
/// - a role, or a looser policy: only a maker with no limit at all (a
///   person's session, an unlimited key), since what it reaches carries
///   none of the maker's limits; a role never above the maker's own; a
///   role lowered (or kept) is never wider and is judged by the role
///   rules alone;
/// - a service account: a role no higher than the maker's.
pub fn within(maker: &Maker, made: Made<'_>) -> Result<(), Wider> {
    match made {
        Made::Key(key) => key_within(&maker.reach, key),
        Made::Account(role) => {
            if maker.role.lower(role) != role {
                return Err(wider(
                    Limit::Ceiling,
                    format!(
                        "a credential acting as {} cannot make a service account with the \
                         role {}",
                        maker.role.name(),
                        role.name()
                    ),
                ));
            }
            Ok(())
        }
        Made::Role { from, to } => {
            if from.is_some_and(|from| from.lower(to) == to) {
                return Ok(());
            }
            if maker.role.lower(to) != to {
                return Err(wider(
                    Limit::Ceiling,
                    format!(
                        "a credential acting as {} cannot give the role {}",
                        maker.role.name(),
                        to.name()
                    ),
                ));
            }
            match maker.reach.first_limit() {
                None => Ok(()),
                Some(limit) => Err(wider(
                    limit,
                    format!(
                        "this API key is limited ({}), and a role reaches every key and session \
                         of the member, which carry none of its limits: give roles and \
                         invitations signed in, or with a key without limits",
                        limit.name()
                    ),
                )),
            }
        }
        Made::LooserPolicy(rule) => match maker.reach.first_limit() {
            None => Ok(()),
            Some(limit) => Err(wider(
                limit,
                format!(
                    "this change loosens the key policy ({rule}), which binds every key of the \
                     tenant, and this API key is limited ({}): loosen the policy signed in, or \
                     with a key without limits (tightening it needs neither)",
                    limit.name()
                ),
            )),
        },
    }
}

/// Is the key `key` within `maker`'s reach in every limit?
fn key_within(maker: &Reach, key: &Reach) -> Result<(), Wider> {
    if let Some(cap) = maker.ceiling {
        if !key.ceiling.is_some_and(|c| cap.lower(c) == c) {
            return Err(wider(
                Limit::Ceiling,
                format!(
                    "this API key acts as at most {}: it cannot make or give back a key that may \
                     do more",
                    cap.name()
                ),
            ));
        }
    }
    if !maker.scopes.is_empty() {
        let granted = |s: &String| maker.scopes.iter().any(|m| scope_grants(m, s));
        if key.scopes.is_empty() || !key.scopes.iter().all(granted) {
            return Err(wider(
                Limit::Scopes,
                "this API key is limited to scopes: it cannot make or give back a key allowed \
                 more"
                    .into(),
            ));
        }
    }
    if !maker.networks.is_empty() {
        let inside = |n: &ipnet::IpNet| maker.networks.iter().any(|m| m.contains(n));
        if key.networks.is_empty() || !key.networks.iter().all(inside) {
            return Err(wider(
                Limit::Networks,
                "this API key is limited to networks: it cannot make or give back a key usable \
                 from elsewhere"
                    .into(),
            ));
        }
    }
    if let Some(end) = maker.expires_at {
        if key.expires_at.is_none_or(|at| at > end) {
            return Err(wider(
                Limit::Lifetime,
                format!(
                    "this API key expires at {}: it cannot make or give back a key that outlives \
                     it",
                    rfc3339(end)
                ),
            ));
        }
    }
    Ok(())
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The reach of a new key asked for `asked` by `maker`: in each limit, what
/// was asked when it is within the maker's, the maker's when nothing was
/// asked (a limited key never makes an unlimited one), refused otherwise;
/// a ceiling is lowered to the maker's. The result is [`within`] the maker.
pub fn narrowed(maker: &Maker, asked: Reach) -> Result<Reach, Wider> {
    let m = &maker.reach;
    let scopes = narrow_scopes(&asked.scopes, &m.scopes).map_err(|e| wider(Limit::Scopes, e))?;
    let networks =
        narrow_networks(&asked.networks, &m.networks).map_err(|e| wider(Limit::Networks, e))?;
    let expires_at = match (asked.expires_at, m.expires_at) {
        (Some(at), Some(end)) if at > end => {
            return Err(wider(
                Limit::Lifetime,
                format!(
                    "this API key expires at {}: it may only make keys that expire by then",
                    rfc3339(end)
                ),
            ))
        }
        (Some(at), _) => Some(at),
        (None, end) => end,
    };
    let key = Reach {
        ceiling: Role::lower_ceiling(asked.ceiling, m.ceiling),
        scopes,
        networks,
        expires_at,
    };
    within(maker, Made::Key(&key))?;
    Ok(key)
}

/// The most keys one owner (person or service account) may hold in a
/// tenant: 40, so that removing an owner with all its keys fits one
/// transaction (1 + 2 x 40 items, with the tenant, caller, counter,
/// audit items and the check of the acting key: 86 of DynamoDB's 100).
pub const MAX_KEYS_PER_OWNER: u32 = 40;

/// May an owner holding `held` keys get another one?
pub fn may_hold_another_key(held: u32) -> bool {
    held < MAX_KEYS_PER_OWNER
}

/// Would changing `target`'s role to `new_role` (`None`: removing it) leave the
/// tenant without an admin user? `admin_users` counts the tenant's USER admins.
pub fn leaves_tenant_without_admin(
    admin_users: u32,
    target_type: AccountType,
    target_role: Role,
    new_role: Option<Role>,
) -> bool {
    let loses_admin = target_type == AccountType::User
        && target_role == Role::TenantAdmin
        && new_role != Some(Role::TenantAdmin);
    loses_admin && admin_users <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Role::*;
    use Target::*;

    /// docs/SECURITY.md's table of every cell: (action, target, the
    /// answers for a person as `[TenantAdmin, User, ReadOnlyUser]`, then for
    /// a service account). The docs are the table this test holds the code
    /// to, so the two cannot disagree.
    const SECURITY_MD: &str = include_str!("../../../docs/SECURITY.md");

    fn docs_table() -> Vec<(String, String, [bool; 6])> {
        let table = SECURITY_MD
            .split("<!-- rules: begin")
            .nth(1)
            .and_then(|rest| rest.split("<!-- rules: end -->").next())
            .expect("docs/SECURITY.md has the rules table between its two markers");
        table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`'))
                    .collect();
                assert_eq!(cells.len(), 8, "a row of 8 cells: {line}");
                let mut answers = [false; 6];
                for (answer, cell) in answers.iter_mut().zip(&cells[2..]) {
                    *answer = match *cell {
                        "yes" => true,
                        "no" => false,
                        other => panic!("{other:?} is neither yes nor no: {line}"),
                    };
                }
                (cells[0].to_string(), cells[1].to_string(), answers)
            })
            .collect()
    }

    #[test]
    fn every_actor_action_target_combination_matches_the_docs_table() {
        let table = docs_table();
        let mut checked = 0;
        for action in Action::ALL {
            for target in Target::ALL {
                let (a, t) = (format!("{action:?}"), format!("{target:?}"));
                let rows: Vec<_> = table.iter().filter(|r| (&r.0, &r.1) == (&a, &t)).collect();
                assert_eq!(rows.len(), 1, "docs/SECURITY.md needs one row for {a} {t}");
                let answers = rows[0].2;
                for (i, role) in Role::ALL.into_iter().enumerate() {
                    for (account_type, expected) in [
                        (AccountType::User, answers[i]),
                        (AccountType::Service, answers[3 + i]),
                    ] {
                        let actor = Actor::new(role, account_type);
                        assert_eq!(
                            authorize(actor, action, target),
                            expected,
                            "docs/SECURITY.md and authorize disagree on {actor:?} {action:?} {target:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        // No row of the docs names an action or target the code lacks.
        assert_eq!(table.len(), Action::ALL.len() * Target::ALL.len());
        assert_eq!(checked, 198);
    }

    #[test]
    fn permissions_say_what_the_rules_allow() {
        let admin = [
            "read:tenant",
            "create:api_key",
            "delete:api_key",
            "create:service_account",
            "delete:service_account",
            "update:membership",
            "delete:membership",
            "read:audit_log",
            "update:key_policy",
        ];
        let member = ["read:tenant", "create:api_key", "delete:api_key"];
        assert_eq!(
            permissions(Actor::new(TenantAdmin, AccountType::User), true),
            admin
        );
        // A key in its rotation grace may change nothing.
        assert_eq!(
            permissions(Actor::new(TenantAdmin, AccountType::User), false),
            ["read:tenant", "read:audit_log"]
        );
        // An admin service account manages keys and service accounts, never
        // a person's membership: it is not told it may.
        assert_eq!(
            permissions(Actor::new(TenantAdmin, AccountType::Service), true),
            [
                "read:tenant",
                "create:api_key",
                "delete:api_key",
                "create:service_account",
                "delete:service_account",
                "read:audit_log",
            ]
        );
        for role in [User, ReadOnlyUser] {
            for account_type in [AccountType::User, AccountType::Service] {
                assert_eq!(permissions(Actor::new(role, account_type), true), member);
                assert_eq!(
                    permissions(Actor::new(role, account_type), false),
                    ["read:tenant"]
                );
            }
        }
    }

    #[test]
    fn a_service_account_cannot_change_or_remove_a_person_but_a_human_admin_can() {
        let bot = Actor::new(TenantAdmin, AccountType::Service);
        let person = Actor::new(TenantAdmin, AccountType::User);
        for action in [ChangeRole, RemoveMember] {
            assert!(!authorize(bot, action, OtherUser));
            assert!(authorize(bot, action, ServiceAccount));
            assert!(authorize(person, action, OtherUser));
        }
    }

    #[test]
    fn removing_oneself_answers_alike_on_both_paths() {
        for role in Role::ALL {
            let bot = Actor::new(role, AccountType::Service);
            assert_eq!(
                authorize(bot, DeleteServiceAccount, Myself),
                authorize(bot, RemoveMember, Myself),
                "{role:?}"
            );
        }
    }

    fn reach(ceiling: Option<Role>, scopes: &[&str], nets: &[&str], days: Option<i64>) -> Reach {
        let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        Reach {
            ceiling,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
            expires_at: days.map(|d| t0.saturating_add(time::Duration::days(d))),
        }
    }

    fn admin(reach: Reach) -> Maker {
        Maker {
            role: TenantAdmin,
            reach,
        }
    }

    /// Each kind of limited maker against each thing it could make: the
    /// rule's whole table.
    #[test]
    fn nothing_is_made_wider_than_its_maker() {
        let unlimited = admin(Reach::default());
        let scoped = admin(reach(None, &["apikeys:write", "orders:*"], &[], None));
        let networked = admin(reach(None, &[], &["10.0.0.0/8"], None));
        let capped = admin(reach(Some(User), &[], &[], None));
        let expiring = admin(reach(None, &[], &[], Some(30)));
        let makers = [&scoped, &networked, &capped, &expiring];

        // Roles and looser policies: only the unlimited maker.
        for to in Role::ALL {
            assert!(within(&unlimited, Made::Role { from: None, to }).is_ok());
            for m in makers {
                let refused = within(m, Made::Role { from: None, to }).unwrap_err();
                assert_eq!(Some(refused.limit), m.reach.first_limit(), "{m:?} {to:?}");
                assert!(
                    within(
                        m,
                        Made::Role {
                            from: Some(User),
                            to
                        }
                    )
                    .is_err()
                        || to != TenantAdmin
                );
            }
        }
        // A role lowered or kept is never wider.
        for m in makers {
            assert!(within(
                m,
                Made::Role {
                    from: Some(TenantAdmin),
                    to: User
                }
            )
            .is_ok());
            assert!(within(
                m,
                Made::Role {
                    from: Some(User),
                    to: User
                }
            )
            .is_ok());
            assert!(within(
                m,
                Made::Role {
                    from: Some(User),
                    to: TenantAdmin
                }
            )
            .is_err());
            assert!(within(m, Made::LooserPolicy("networks")).is_err());
        }
        assert!(within(&unlimited, Made::LooserPolicy("networks")).is_ok());
        // A role above the maker's own: never.
        let user = Maker {
            role: User,
            reach: Reach::default(),
        };
        assert!(within(
            &user,
            Made::Role {
                from: None,
                to: TenantAdmin
            }
        )
        .is_err());
        assert!(within(&user, Made::Account(TenantAdmin)).is_err());
        assert!(within(&scoped, Made::Account(TenantAdmin)).is_ok());

        // Keys: within in every limit, or refused naming the limit.
        let key = |r: Reach| within(&scoped, Made::Key(&r)).map_err(|w| w.limit);
        assert_eq!(key(reach(None, &["orders:read"], &[], None)), Ok(()));
        assert_eq!(key(reach(None, &[], &[], None)), Err(Limit::Scopes));
        assert_eq!(
            key(reach(None, &["users:read"], &[], None)),
            Err(Limit::Scopes)
        );
        let key = |r: Reach| within(&networked, Made::Key(&r)).map_err(|w| w.limit);
        assert_eq!(key(reach(None, &[], &["10.1.0.0/16"], None)), Ok(()));
        assert_eq!(key(reach(None, &[], &[], None)), Err(Limit::Networks));
        assert_eq!(
            key(reach(None, &[], &["0.0.0.0/0"], None)),
            Err(Limit::Networks)
        );
        let key = |r: Reach| within(&capped, Made::Key(&r)).map_err(|w| w.limit);
        assert_eq!(key(reach(Some(ReadOnlyUser), &[], &[], None)), Ok(()));
        assert_eq!(key(reach(Some(User), &[], &[], None)), Ok(()));
        assert_eq!(key(reach(None, &[], &[], None)), Err(Limit::Ceiling));
        assert_eq!(
            key(reach(Some(TenantAdmin), &[], &[], None)),
            Err(Limit::Ceiling)
        );
        let key = |r: Reach| within(&expiring, Made::Key(&r)).map_err(|w| w.limit);
        assert_eq!(key(reach(None, &[], &[], Some(30))), Ok(()));
        assert_eq!(key(reach(None, &[], &[], Some(31))), Err(Limit::Lifetime));
        assert_eq!(key(reach(None, &[], &[], None)), Err(Limit::Lifetime));
        assert!(within(&unlimited, Made::Key(&Reach::default())).is_ok());
    }

    #[test]
    fn a_new_key_takes_its_makers_limits_where_none_are_asked() {
        let maker = admin(reach(Some(User), &["orders:*"], &["10.0.0.0/8"], Some(7)));
        let made = narrowed(&maker, Reach::default()).unwrap();
        assert_eq!(made, maker.reach);
        let asked = reach(
            Some(ReadOnlyUser),
            &["orders:read"],
            &["10.2.0.0/16"],
            Some(1),
        );
        assert_eq!(narrowed(&maker, asked.clone()).unwrap(), asked);
        let later = reach(None, &[], &[], Some(8));
        assert_eq!(narrowed(&maker, later).unwrap_err().limit, Limit::Lifetime);
        let unlimited = admin(Reach::default());
        assert_eq!(narrowed(&unlimited, asked.clone()).unwrap(), asked);
    }

    #[test]
    fn target_is_relative_to_the_caller() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(Target::of(me, me, AccountType::Service), Myself);
        assert_eq!(Target::of(me, other, AccountType::Service), ServiceAccount);
        assert_eq!(Target::of(me, other, AccountType::User), OtherUser);
    }

    #[test]
    fn the_last_admin_user_cannot_be_demoted_or_removed() {
        use AccountType as A;
        assert!(leaves_tenant_without_admin(
            1,
            A::User,
            TenantAdmin,
            Some(User)
        ));
        assert!(leaves_tenant_without_admin(1, A::User, TenantAdmin, None));
        assert!(!leaves_tenant_without_admin(2, A::User, TenantAdmin, None));
        assert!(!leaves_tenant_without_admin(
            1,
            A::User,
            TenantAdmin,
            Some(TenantAdmin)
        ));
        assert!(!leaves_tenant_without_admin(1, A::User, User, None));
        // Service accounts are admins by default but never count as the tenant's admin user.
        assert!(!leaves_tenant_without_admin(
            1,
            A::Service,
            TenantAdmin,
            None
        ));
    }
}
