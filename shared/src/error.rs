//! The errors of the service layer; the GraphQL edge maps each to a code once.

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Missing, malformed, unknown, expired, disabled or revoked key, or a
    /// foreign tenant: the reason goes to the logs and `extensions.reason`.
    #[error("Unauthenticated")]
    Unauthenticated(Refusal),
    /// A key that authenticates, refused where it is used or for what it
    /// asks (its networks, its scopes, its tenant's key policy): FORBIDDEN
    /// with the reason and a message naming the rule, never the key.
    #[error("{message}")]
    Denied {
        reason: Refusal,
        message: String,
        /// The scope the request needed (for [`Refusal::ScopeMissing`]).
        needed_scope: Option<String>,
    },
    /// Absent, in another tenant, or not the caller's to touch: all look alike.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may see the object but not do this to it.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadInput(String),
    /// Another request is removing the member, changing its role or
    /// counting its keys (it holds the member's lease, which ends by itself
    /// at the time given at the latest): nothing was changed.
    #[error("{}", busy_message(*.0, *.1))]
    Busy(crate::domain::LeaseKind, time::OffsetDateTime),
    /// What the request worked on kept changing under it (concurrent
    /// requests won every race), or a lease it held ran out before it
    /// wrote: nothing was changed, and the same request may simply be sent
    /// again. A state of the data, not a failure of the storage.
    #[error("{0}: nothing was changed; try again")]
    Contended(String),
    /// A change that was recorded but is not yet in force everywhere (a
    /// tenant's key policy written, not yet copied onto every key): sending
    /// the same change again finishes it.
    #[error("{0}")]
    Incomplete(String),
    /// A sign-in refused (an ID token, a refresh token, a person with no
    /// tenant): UNAUTHENTICATED with the reason and what to do, never a
    /// token.
    #[error("{message}")]
    SignIn {
        reason: &'static str,
        message: String,
    },
    /// Something this request needs from elsewhere (the identity
    /// provider's keys) could not be had now: retryable, nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests of this kind (sign-ins of one identity, or of one
    /// instance): nothing was done; `retry_after` seconds from now it may
    /// be.
    #[error("{message}")]
    RateLimited { retry_after: u64, message: String },
    /// The storage layer failed; the message is logged, never shown.
    #[error("internal error")]
    Store(#[from] crate::store::StoreError),
}

fn busy_message(kind: crate::domain::LeaseKind, until: time::OffsetDateTime) -> String {
    let what = match kind {
        crate::domain::LeaseKind::Removing => "being removed",
        crate::domain::LeaseKind::ChangingRole => "having its role changed",
        crate::domain::LeaseKind::Recounting => "having its keys counted",
    };
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "this member is {what} by another request (or was, by one that failed): nothing was \
         changed; try again in a moment (the hold ends by {until} at the latest)"
    )
}

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

pub type Result<T, E = Error> = std::result::Result<T, E>;
