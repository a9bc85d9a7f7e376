//! The rules of who may do what (the README's "Rules" table), in one place, as pure functions: the
//! table of (role, account type, action, target) in [`authorize`], the
//! permissions derived from it, the tenant's last admin, and the key limit.
//! The service applies them; the store only enforces the same bounds in its
//! transactions' conditions (so that concurrent requests cannot pass them).
//!
//! Callers resolve the target inside the request's tenant first; a target
//! in another tenant is never found, so these rules never see it. Where
//! seeing a thing is itself refused (a key, a member of another kind), a
//! `false` is reported to the caller exactly like "not found"; where the
//! caller sees the target, as FORBIDDEN.

pub use crate::domain::Actor;
use crate::domain::{AccountType, Role};
use crate::error::Error;
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
}

impl Action {
    pub const ALL: [Action; 10] = [
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

/// The most keys one owner (person or service account) may hold in a
/// tenant: 40, so that removing an owner with all its keys fits one
/// transaction (1 + 2 x 40 items, with the tenant, caller, counter,
/// audit items and the check of the acting key: 86 of DynamoDB's 100).
pub const MAX_KEYS_PER_OWNER: u32 = 40;

/// May an owner holding `held` keys get another one?
pub fn may_hold_another_key(held: u32) -> bool {
    held < MAX_KEYS_PER_OWNER
}

/// The refusal of a key past [`MAX_KEYS_PER_OWNER`], said one way wherever
/// it is met (`owner`: who, when the caller is not the owner).
pub fn key_limit_reached(owner: Option<&str>) -> Error {
    let who = owner.map_or_else(|| "an owner".to_string(), |name| format!("'{name}'"));
    Error::BadInput(format!(
        "{who} may hold at most {MAX_KEYS_PER_OWNER} keys in a tenant: revoke one first"
    ))
}

/// The refusal of a change that would leave the tenant without an admin
/// user (`verb`: "removed", "demoted"). Checked by
/// [`leaves_tenant_without_admin`] on what the request read, and enforced
/// by the store's condition on the tenant's `admin_users` count.
pub fn last_admin(verb: &str) -> Error {
    Error::BadInput(format!("the last admin user of a tenant cannot be {verb}"))
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

    /// Every (action, target) and the answer for each role
    /// `[TenantAdmin, User, ReadOnlyUser]`, when a person acts and when a
    /// service account acts.
    #[rustfmt::skip]
    const TABLE: &[(Action, Target, [bool; 3], [bool; 3])] = &[
        //                                      person               service account
        (CreateKey, Myself,                    [true, true, true],   [true, true, true]),
        (CreateKey, ServiceAccount,            [true, false, false], [true, false, false]),
        (CreateKey, OtherUser,                 [false, false, false], [false, false, false]),
        (ListKeys, Myself,                     [true, true, true],   [true, true, true]),
        (ListKeys, ServiceAccount,             [true, false, false], [true, false, false]),
        (ListKeys, OtherUser,                  [false, false, false], [false, false, false]),
        (RevokeKey, Myself,                    [true, true, true],   [true, true, true]),
        (RevokeKey, ServiceAccount,            [true, false, false], [true, false, false]),
        (RevokeKey, OtherUser,                 [false, false, false], [false, false, false]),
        (CreateServiceAccount, Myself,         [false, false, false], [false, false, false]),
        (CreateServiceAccount, ServiceAccount, [true, false, false], [true, false, false]),
        (CreateServiceAccount, OtherUser,      [false, false, false], [false, false, false]),
        (DeleteServiceAccount, Myself,         [false, false, false], [true, false, false]),
        (DeleteServiceAccount, ServiceAccount, [true, false, false], [true, false, false]),
        (DeleteServiceAccount, OtherUser,      [false, false, false], [false, false, false]),
        (ChangeRole, Myself,                   [true, false, false], [true, false, false]),
        (ChangeRole, ServiceAccount,           [true, false, false], [true, false, false]),
        (ChangeRole, OtherUser,                [true, false, false], [false, false, false]),
        (RemoveMember, Myself,                 [true, false, false], [true, false, false]),
        (RemoveMember, ServiceAccount,         [true, false, false], [true, false, false]),
        (RemoveMember, OtherUser,              [true, false, false], [false, false, false]),
        (ReadEmail, Myself,                    [true, true, true],   [true, true, true]),
        (ReadEmail, ServiceAccount,            [true, false, false], [false, false, false]),
        (ReadEmail, OtherUser,                 [true, false, false], [false, false, false]),
        (ReadAuditLog, Myself,                 [true, false, false], [true, false, false]),
        (ReadAuditLog, ServiceAccount,         [true, false, false], [true, false, false]),
        (ReadAuditLog, OtherUser,              [true, false, false], [true, false, false]),
        (SetKeyPolicy, Myself,                 [true, false, false], [false, false, false]),
        (SetKeyPolicy, ServiceAccount,         [true, false, false], [false, false, false]),
        (SetKeyPolicy, OtherUser,              [true, false, false], [false, false, false]),
    ];

    #[test]
    fn every_actor_action_target_combination_matches_the_table() {
        let mut checked = 0;
        for action in Action::ALL {
            for target in Target::ALL {
                let row = TABLE
                    .iter()
                    .find(|(a, t, _, _)| (*a, *t) == (action, target))
                    .unwrap_or_else(|| panic!("table lacks {action:?} {target:?}"));
                for (i, role) in Role::ALL.into_iter().enumerate() {
                    for (account_type, expected) in [
                        (AccountType::User, row.2[i]),
                        (AccountType::Service, row.3[i]),
                    ] {
                        let actor = Actor::new(role, account_type);
                        assert_eq!(
                            authorize(actor, action, target),
                            expected,
                            "{actor:?} {action:?} {target:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(TABLE.len(), Action::ALL.len() * Target::ALL.len());
        assert_eq!(checked, 180);
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
