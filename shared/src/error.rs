//! The errors of the service layer; the GraphQL edge maps each to a code once.

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Missing, malformed, unknown, expired or revoked key, or a foreign tenant.
    #[error("Unauthenticated")]
    Unauthenticated,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
