//! The audit log's records: who did what to which key, service account,
//! member or tenant. A record is written in the same DynamoDB transaction as
//! the change it describes, so there is no change without its record and no
//! record without its change. It never holds a secret or a hash.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::principal::Principal;

/// An expiry as a record's detail says it: RFC 3339, or "never".
pub fn describe_expiry(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "never".into())
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    KeyCreated,
    KeyRotated,
    KeyRevoked,
    KeyExpired,
    KeyDisabled,
    KeyEnabled,
    ServiceAccountCreated,
    ServiceAccountRemoved,
    MemberAdded,
    RoleChanged,
    MemberRemoved,
    TenantCreated,
    KeyPolicyChanged,
    KeyLeaked,
    /// A key will expire within 7 days, or within 1 day (the sweeper's
    /// warning, once per window).
    KeyExpiringSoon,
    /// A tenant admin (or the operator) invited a person by email.
    InvitationCreated,
    /// The invited person accepted: a member now.
    InvitationAccepted,
    /// An admin withdrew an invitation.
    InvitationWithdrawn,
}

impl AuditAction {
    pub const ALL: [AuditAction; 18] = [
        AuditAction::KeyCreated,
        AuditAction::KeyRotated,
        AuditAction::KeyRevoked,
        AuditAction::KeyExpired,
        AuditAction::KeyDisabled,
        AuditAction::KeyEnabled,
        AuditAction::ServiceAccountCreated,
        AuditAction::ServiceAccountRemoved,
        AuditAction::MemberAdded,
        AuditAction::RoleChanged,
        AuditAction::MemberRemoved,
        AuditAction::TenantCreated,
        AuditAction::KeyPolicyChanged,
        AuditAction::KeyLeaked,
        AuditAction::KeyExpiringSoon,
        AuditAction::InvitationCreated,
        AuditAction::InvitationAccepted,
        AuditAction::InvitationWithdrawn,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuditAction::KeyCreated => "KEY_CREATED",
            AuditAction::KeyRotated => "KEY_ROTATED",
            AuditAction::KeyRevoked => "KEY_REVOKED",
            AuditAction::KeyExpired => "KEY_EXPIRED",
            AuditAction::KeyDisabled => "KEY_DISABLED",
            AuditAction::KeyEnabled => "KEY_ENABLED",
            AuditAction::ServiceAccountCreated => "SERVICE_ACCOUNT_CREATED",
            AuditAction::ServiceAccountRemoved => "SERVICE_ACCOUNT_REMOVED",
            AuditAction::MemberAdded => "MEMBER_ADDED",
            AuditAction::RoleChanged => "ROLE_CHANGED",
            AuditAction::MemberRemoved => "MEMBER_REMOVED",
            AuditAction::TenantCreated => "TENANT_CREATED",
            AuditAction::KeyPolicyChanged => "KEY_POLICY_CHANGED",
            AuditAction::KeyLeaked => "KEY_LEAKED",
            AuditAction::KeyExpiringSoon => "KEY_EXPIRING_SOON",
            AuditAction::InvitationCreated => "INVITATION_CREATED",
            AuditAction::InvitationAccepted => "INVITATION_ACCEPTED",
            AuditAction::InvitationWithdrawn => "INVITATION_WITHDRAWN",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetType {
    ApiKey,
    ServiceAccount,
    Member,
    Tenant,
    Invitation,
}

impl TargetType {
    pub fn name(self) -> &'static str {
        match self {
            TargetType::ApiKey => "API_KEY",
            TargetType::ServiceAccount => "SERVICE_ACCOUNT",
            TargetType::Member => "MEMBER",
            TargetType::Tenant => "TENANT",
            TargetType::Invitation => "INVITATION",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::ApiKey,
            Self::ServiceAccount,
            Self::Member,
            Self::Tenant,
            Self::Invitation,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }
}

/// Who acted: a caller with its key, the operator CLI, or the sweeper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditActor {
    pub user_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    /// The caller's username, `operator` or `sweeper`.
    pub name: String,
    /// Whether the caller is a person or a service account (`None`: the
    /// operator or the sweeper, and records written before this was kept).
    pub account_type: Option<crate::domain::AccountType>,
    /// The hash of the session the caller acted with (a person signed in
    /// with the identity provider): the change's transaction checks it is
    /// still there. Never stored in the record.
    pub session: Option<crate::token::TokenHash>,
}

impl AuditActor {
    pub fn of(p: &Principal) -> Self {
        Self {
            user_id: Some(p.user_id),
            // A session is no key: its own check instead.
            key_id: p.session.is_none().then_some(p.api_key_id),
            name: p.username.clone(),
            account_type: Some(p.account_type),
            session: p.session.as_ref().map(|s| s.hash.clone()),
        }
    }

    pub fn operator() -> Self {
        Self {
            user_id: None,
            key_id: None,
            name: "operator".into(),
            account_type: None,
            session: None,
        }
    }

    pub fn sweeper() -> Self {
        Self {
            user_id: None,
            key_id: None,
            name: "sweeper".into(),
            account_type: None,
            session: None,
        }
    }

    /// A secret scanning service reporting a leak (e.g. "GitHub secret
    /// scanning").
    pub fn reporter(name: &str) -> Self {
        Self {
            user_id: None,
            key_id: None,
            name: name.into(),
            account_type: None,
            session: None,
        }
    }
}

/// One record of a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Time-ordered (UUID v7): orders records written in the same millisecond.
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub at: OffsetDateTime,
    pub action: AuditAction,
    pub actor: AuditActor,
    pub target_type: TargetType,
    pub target_id: Uuid,
    /// The key's, account's, member's or tenant's name, when known.
    pub target_name: Option<String>,
    /// What else there is to say: a role change's old and new role, the key
    /// a rotation made, the grace it gave, how many keys went with a member.
    pub detail: Option<String>,
    /// When DynamoDB's TTL may remove the record.
    pub expires: OffsetDateTime,
}

/// A record about to be written: everything but the tenant, time and id,
/// which the service fills in.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub action: AuditAction,
    pub actor: AuditActor,
    pub target_type: TargetType,
    pub target_id: Uuid,
    pub target_name: Option<String>,
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(
        action: AuditAction,
        actor: AuditActor,
        target_type: TargetType,
        target_id: Uuid,
        target_name: Option<&str>,
    ) -> Self {
        Self {
            action,
            actor,
            target_type,
            target_id,
            target_name: target_name.map(str::to_string),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The record of this event in `tenant` at `at`, kept `retention`.
    pub fn record(
        self,
        tenant_id: Uuid,
        at: OffsetDateTime,
        retention: time::Duration,
    ) -> AuditRecord {
        AuditRecord {
            id: Uuid::now_v7(),
            tenant_id,
            at,
            action: self.action,
            actor: self.actor,
            target_type: self.target_type,
            target_id: self.target_id,
            target_name: self.target_name,
            detail: self.detail,
            expires: at.checked_add(retention).unwrap_or(at),
        }
    }
}

/// A position in a tenant's log: records strictly older than it come next.
/// Opaque to clients: the `cursor` of the last record of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditCursor(String);

impl AuditCursor {
    /// The cursor of a record stored under the sort key `sk` (what the
    /// store answers beside each record it reads).
    pub fn of_sort_key(sk: &str) -> Self {
        Self(sk.to_string())
    }

    /// The sort key records strictly older than this cursor sort below.
    pub fn sort_key(&self) -> &str {
        &self.0
    }

    /// A cursor as a client sent it back: `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let (millis, id) = text.split_once('.')?;
        let valid = millis.len() == 13
            && millis.bytes().all(|b| b.is_ascii_digit())
            && Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
        valid.then(|| Self(format!("{millis}#{id}")))
    }

    pub fn as_text(&self) -> String {
        self.0.replacen('#', ".", 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.name()), Some(action));
        }
        for t in [
            TargetType::ApiKey,
            TargetType::ServiceAccount,
            TargetType::Member,
            TargetType::Tenant,
        ] {
            assert_eq!(TargetType::parse(t.name()), Some(t));
        }
    }

    #[test]
    fn a_cursor_is_exactly_what_the_log_hands_out() {
        let id = Uuid::now_v7();
        let cursor = AuditCursor::parse(&format!("1764115200000.{id}")).unwrap();
        assert_eq!(cursor.as_text(), format!("1764115200000.{id}"));
        for bad in [
            "",
            ".",
            "1764115200000",
            "176411520000.00000000-0000-0000-0000-000000000000",
            "17641152000000.00000000-0000-0000-0000-000000000000",
            "1764115200000.not-a-uuid",
            "1764115200000.00000000-0000-0000-0000-00000000000Z",
            "1764115200000#00000000-0000-0000-0000-000000000000",
            "+764115200000.00000000-0000-0000-0000-000000000000",
            "1764115200000.{00000000-0000-0000-0000-000000000000}",
            "1764115200000.00000000000000000000000000000000",
        ] {
            assert!(AuditCursor::parse(bad).is_none(), "{bad:?}");
        }
    }
}
