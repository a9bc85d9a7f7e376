//! Why a credential was refused: one stable code per reason.

/// Why a key was refused: a stable, machine-readable code for the logs,
/// the audit and the error's `extensions.reason`. Never a help to someone
/// guessing keys: a key of the right shape that was never made and a
/// revoked one are the same answer (a revoked key is deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No key, or one of the wrong shape, prefix or checksum (no read).
    Malformed,
    /// Well formed, and no such key: never made, or revoked.
    UnknownOrRevoked,
    Expired,
    Disabled,
    /// The key's owner is no longer a member (an item of an earlier version).
    OwnerRemoved,
    /// A tenant header naming another tenant than the key's.
    WrongTenant,
    /// The key that made a change was revoked, disabled or replaced while
    /// the change was being made.
    KeyStopped,
    /// A valid key used from a network it, or its tenant, does not allow.
    NetworkNotAllowed,
    /// A scoped key asking for something none of its scopes grants.
    ScopeMissing,
    /// The key lives longer than its tenant's policy allows (or never
    /// expires under a limit).
    PolicyMaxLifetime,
    /// The tenant requires scopes, and the key has none.
    PolicyScopesRequired,
    /// The caller's address is outside the tenant's network allowlist.
    PolicyNetwork,
    /// A session whose access token expired: refresh it, or sign in again.
    SessionExpired,
    /// A session that ended (logged out, replaced by a refresh or a switch
    /// of tenant, its member removed or given another role) or never was.
    SessionEnded,
    /// A console session presented as an API key.
    SessionNotKey,
    /// A limited credential (a key with scopes, networks, a role ceiling or
    /// an expiry) asked to make or give something wider than itself: a key
    /// beyond its limits, a role (which reaches credentials that carry
    /// none of them), or a looser key policy (see `authz::within`).
    WiderThanCredential,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownOrRevoked => "unknown_or_revoked",
            Refusal::Expired => "expired",
            Refusal::Disabled => "disabled",
            Refusal::OwnerRemoved => "owner_removed",
            Refusal::WrongTenant => "wrong_tenant",
            Refusal::KeyStopped => "key_stopped",
            Refusal::NetworkNotAllowed => "network_not_allowed",
            Refusal::ScopeMissing => "scope_missing",
            Refusal::PolicyMaxLifetime => "policy_max_lifetime",
            Refusal::PolicyScopesRequired => "policy_scopes_required",
            Refusal::PolicyNetwork => "policy_network",
            Refusal::SessionExpired => "session_expired",
            Refusal::SessionEnded => "session_ended",
            Refusal::SessionNotKey => "session_not_key",
            Refusal::WiderThanCredential => "wider_than_credential",
        }
    }

    /// Every reason, for tests and the documentation.
    pub const ALL: [Refusal; 16] = [
        Refusal::Malformed,
        Refusal::UnknownOrRevoked,
        Refusal::Expired,
        Refusal::Disabled,
        Refusal::OwnerRemoved,
        Refusal::WrongTenant,
        Refusal::KeyStopped,
        Refusal::NetworkNotAllowed,
        Refusal::ScopeMissing,
        Refusal::PolicyMaxLifetime,
        Refusal::PolicyScopesRequired,
        Refusal::PolicyNetwork,
        Refusal::SessionExpired,
        Refusal::SessionEnded,
        Refusal::SessionNotKey,
        Refusal::WiderThanCredential,
    ];

    /// What the caller is told beyond "Unauthenticated", for the reasons
    /// a person can act on (keys say nothing more: no help to a guesser).
    pub fn advice(self) -> Option<&'static str> {
        match self {
            Refusal::SessionExpired => {
                Some("your session has expired: refresh it, or sign in again")
            }
            Refusal::SessionEnded => Some("your session has ended: sign in again"),
            Refusal::SessionNotKey => Some(
                "this is a console session, not an API key: create an API key in the console \
                 (User > API Keys) for the Prefect CLI and other clients",
            ),
            _ => None,
        }
    }
}
