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
    Busy(apikeys_core::domain::LeaseKind, time::OffsetDateTime),
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
    /// The request's time ran out before it was done (the function's
    /// deadline, not the database's answer): a query changed nothing; a
    /// change (`unknown_outcome`) may or may not have been applied.
    #[error("the request ran out of time")]
    Deadline { unknown_outcome: bool },
    /// The storage layer failed; the message is logged, never shown.
    #[error("internal error")]
    Store(#[from] apikeys_store::StoreError),
}

fn busy_message(kind: apikeys_core::domain::LeaseKind, until: time::OffsetDateTime) -> String {
    let what = match kind {
        apikeys_core::domain::LeaseKind::Removing => "being removed",
        apikeys_core::domain::LeaseKind::ChangingRole => "having its role changed",
        apikeys_core::domain::LeaseKind::Recounting => "having its keys counted",
    };
    let until = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "this member is {what} by another request (or was, by one that failed): nothing was \
         changed; try again in a moment (the hold ends by {until} at the latest)"
    )
}

pub use apikeys_core::refusal::Refusal;

/// A change the store halted is told as what it is: the credential that
/// made it stopped working, or a limit reached (with when to try again).
impl From<apikeys_store::Failure> for Error {
    fn from(failure: apikeys_store::Failure) -> Self {
        use apikeys_store::{Failure, Halt};
        match failure {
            Failure::Database(e) => Error::Store(e),
            Failure::Halted(Halt::KeyStopped) => Error::Unauthenticated(Refusal::KeyStopped),
            Failure::Halted(Halt::RateLimited { retry_after, limit }) => Error::RateLimited {
                retry_after,
                message: format!(
                    "too many changes: a member may make {limit} key and account changes a \
                     minute in a tenant; nothing was changed, try again in {retry_after} s"
                ),
            },
            Failure::Halted(Halt::InvitationsLimited { retry_after, limit }) => {
                Error::RateLimited {
                    retry_after,
                    message: format!(
                        "too many invitations: an admin may send {limit} an hour; nothing was \
                         sent, try again in {retry_after} s"
                    ),
                }
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The refusal of a key past [`apikeys_core::authz::MAX_KEYS_PER_OWNER`], said one way wherever
/// it is met (`owner`: who, when the caller is not the owner).
pub fn key_limit_reached(owner: Option<&str>) -> Error {
    let who = owner.map_or_else(|| "an owner".to_string(), |name| format!("'{name}'"));
    Error::BadInput(format!(
        "{who} may hold at most {} keys in a tenant: revoke one first",
        apikeys_core::authz::MAX_KEYS_PER_OWNER
    ))
}

/// The refusal of a change that would leave the tenant without an admin
/// user (`verb`: "removed", "demoted"). Checked by
/// [`apikeys_core::authz::leaves_tenant_without_admin`] on what the request read, and enforced
/// by the store's condition on the tenant's `admin_users` count.
pub fn last_admin(verb: &str) -> Error {
    Error::BadInput(format!("the last admin user of a tenant cannot be {verb}"))
}
