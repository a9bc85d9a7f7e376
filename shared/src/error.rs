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
    /// The storage layer failed; the message is logged, never shown.
    #[error("internal error")]
    Store(#[from] crate::store::StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
