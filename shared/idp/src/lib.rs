//! Identity providers and what they sign: people's ID tokens (OpenID
//! Connect, verified here against the provider's published keys), and the
//! signatures GitHub puts on secret scanning reports; each with its own
//! settings and errors. A key set is fetched over `apikeys-platform`'s
//! HTTPS and kept by the instance.

pub mod github;
pub mod keyset;
pub mod oidc;
