//! Authorization rules of DESIGN.md as pure functions over (role, action, target).
//!
//! Callers resolve the target inside the request's tenant first; a target in
//! another tenant is never found, so these rules never see it. A `false` here is
//! reported to the caller exactly like "not found".

use crate::domain::{AccountType, Role};
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
    /// See the tenant, its members and its service accounts.
    ReadTenant,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::CreateKey,
        Action::ListKeys,
        Action::RevokeKey,
        Action::CreateServiceAccount,
        Action::DeleteServiceAccount,
        Action::ChangeRole,
        Action::RemoveMember,
        Action::ReadTenant,
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

/// May a caller with `role` do `action` to `target`?
pub fn authorize(role: Role, action: Action, target: Target) -> bool {
    use Action::*;
    let admin = role == Role::TenantAdmin;
    match (action, target) {
        (ReadTenant, _) => true,
        (CreateKey | ListKeys | RevokeKey, Target::Myself) => true,
        (CreateKey | ListKeys | RevokeKey, Target::ServiceAccount) => admin,
        (CreateKey | ListKeys | RevokeKey, Target::OtherUser) => false,
        (CreateServiceAccount | DeleteServiceAccount, Target::ServiceAccount) => admin,
        (CreateServiceAccount | DeleteServiceAccount, _) => false,
        (ChangeRole | RemoveMember, _) => admin,
    }
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

    /// Every (role, action, target) combination and its expected answer.
    #[rustfmt::skip]
    const TABLE: &[(Role, Action, Target, bool)] = &[
        (TenantAdmin, CreateKey, Myself, true),   (User, CreateKey, Myself, true),   (ReadOnlyUser, CreateKey, Myself, true),
        (TenantAdmin, CreateKey, ServiceAccount, true), (User, CreateKey, ServiceAccount, false), (ReadOnlyUser, CreateKey, ServiceAccount, false),
        (TenantAdmin, CreateKey, OtherUser, false), (User, CreateKey, OtherUser, false), (ReadOnlyUser, CreateKey, OtherUser, false),
        (TenantAdmin, ListKeys, Myself, true),    (User, ListKeys, Myself, true),    (ReadOnlyUser, ListKeys, Myself, true),
        (TenantAdmin, ListKeys, ServiceAccount, true), (User, ListKeys, ServiceAccount, false), (ReadOnlyUser, ListKeys, ServiceAccount, false),
        (TenantAdmin, ListKeys, OtherUser, false), (User, ListKeys, OtherUser, false), (ReadOnlyUser, ListKeys, OtherUser, false),
        (TenantAdmin, RevokeKey, Myself, true),   (User, RevokeKey, Myself, true),   (ReadOnlyUser, RevokeKey, Myself, true),
        (TenantAdmin, RevokeKey, ServiceAccount, true), (User, RevokeKey, ServiceAccount, false), (ReadOnlyUser, RevokeKey, ServiceAccount, false),
        (TenantAdmin, RevokeKey, OtherUser, false), (User, RevokeKey, OtherUser, false), (ReadOnlyUser, RevokeKey, OtherUser, false),
        (TenantAdmin, CreateServiceAccount, Myself, false), (User, CreateServiceAccount, Myself, false), (ReadOnlyUser, CreateServiceAccount, Myself, false),
        (TenantAdmin, CreateServiceAccount, ServiceAccount, true), (User, CreateServiceAccount, ServiceAccount, false), (ReadOnlyUser, CreateServiceAccount, ServiceAccount, false),
        (TenantAdmin, CreateServiceAccount, OtherUser, false), (User, CreateServiceAccount, OtherUser, false), (ReadOnlyUser, CreateServiceAccount, OtherUser, false),
        (TenantAdmin, DeleteServiceAccount, Myself, false), (User, DeleteServiceAccount, Myself, false), (ReadOnlyUser, DeleteServiceAccount, Myself, false),
        (TenantAdmin, DeleteServiceAccount, ServiceAccount, true), (User, DeleteServiceAccount, ServiceAccount, false), (ReadOnlyUser, DeleteServiceAccount, ServiceAccount, false),
        (TenantAdmin, DeleteServiceAccount, OtherUser, false), (User, DeleteServiceAccount, OtherUser, false), (ReadOnlyUser, DeleteServiceAccount, OtherUser, false),
        (TenantAdmin, ChangeRole, Myself, true),  (User, ChangeRole, Myself, false),  (ReadOnlyUser, ChangeRole, Myself, false),
        (TenantAdmin, ChangeRole, ServiceAccount, true), (User, ChangeRole, ServiceAccount, false), (ReadOnlyUser, ChangeRole, ServiceAccount, false),
        (TenantAdmin, ChangeRole, OtherUser, true), (User, ChangeRole, OtherUser, false), (ReadOnlyUser, ChangeRole, OtherUser, false),
        (TenantAdmin, RemoveMember, Myself, true), (User, RemoveMember, Myself, false), (ReadOnlyUser, RemoveMember, Myself, false),
        (TenantAdmin, RemoveMember, ServiceAccount, true), (User, RemoveMember, ServiceAccount, false), (ReadOnlyUser, RemoveMember, ServiceAccount, false),
        (TenantAdmin, RemoveMember, OtherUser, true), (User, RemoveMember, OtherUser, false), (ReadOnlyUser, RemoveMember, OtherUser, false),
        (TenantAdmin, ReadTenant, Myself, true),  (User, ReadTenant, Myself, true),  (ReadOnlyUser, ReadTenant, Myself, true),
        (TenantAdmin, ReadTenant, ServiceAccount, true), (User, ReadTenant, ServiceAccount, true), (ReadOnlyUser, ReadTenant, ServiceAccount, true),
        (TenantAdmin, ReadTenant, OtherUser, true), (User, ReadTenant, OtherUser, true), (ReadOnlyUser, ReadTenant, OtherUser, true),
    ];

    #[test]
    fn every_role_action_target_combination_matches_the_table() {
        for role in Role::ALL {
            for action in Action::ALL {
                for target in Target::ALL {
                    let expected = TABLE
                        .iter()
                        .find(|(r, a, t, _)| (*r, *a, *t) == (role, action, target))
                        .map(|row| row.3)
                        .unwrap_or_else(|| panic!("table lacks {role:?} {action:?} {target:?}"));
                    assert_eq!(
                        authorize(role, action, target),
                        expected,
                        "{role:?} {action:?} {target:?}"
                    );
                }
            }
        }
        assert_eq!(
            TABLE.len(),
            Role::ALL.len() * Action::ALL.len() * Target::ALL.len()
        );
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
