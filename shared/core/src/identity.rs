//! A person as an identity provider vouches for them, and why an ID token
//! was refused: what signing in needs to know, apart from how tokens are
//! verified (the `apikeys-idp` crate).

/// A person as the provider vouches for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// Only when the provider says it is verified; lowercase.
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Why an ID token was refused (no database request was made).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    TooLarge,
    Malformed,
    /// `none`, a symmetric algorithm, or one the key does not declare.
    Algorithm,
    UnknownKey,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    /// An access token (or another use) where an ID token is required.
    NotAnIdToken,
    Expired,
    NotYetValid,
    /// The email is unverified or of a domain the deployment does not allow.
    EmailNotAllowed,
    /// The header names a `crit` extension (RFC 7515, 4.1.11: a token
    /// with an extension the recipient does not understand is refused;
    /// this service understands none).
    CriticalHeader,
    /// Issued to several audiences, or authorized for another party
    /// (`azp`), than this application.
    WrongAuthorizedParty,
}

impl TokenRefusal {
    pub fn code(self) -> &'static str {
        match self {
            TokenRefusal::TooLarge => "id_token_too_large",
            TokenRefusal::Malformed => "id_token_malformed",
            TokenRefusal::Algorithm => "id_token_algorithm",
            TokenRefusal::UnknownKey => "id_token_unknown_key",
            TokenRefusal::BadSignature => "id_token_bad_signature",
            TokenRefusal::WrongIssuer => "id_token_wrong_issuer",
            TokenRefusal::WrongAudience => "id_token_wrong_audience",
            TokenRefusal::NotAnIdToken => "id_token_not_an_id_token",
            TokenRefusal::Expired => "id_token_expired",
            TokenRefusal::NotYetValid => "id_token_not_yet_valid",
            TokenRefusal::EmailNotAllowed => "id_token_email_not_allowed",
            TokenRefusal::CriticalHeader => "id_token_critical_header",
            TokenRefusal::WrongAuthorizedParty => "id_token_wrong_authorized_party",
        }
    }

    /// What the person is told.
    pub fn message(self) -> &'static str {
        match self {
            TokenRefusal::TooLarge => "the identity token is larger than any ID token",
            TokenRefusal::Malformed => "the identity token is not a well-formed ID token",
            TokenRefusal::Algorithm => {
                "the identity token is not signed with an algorithm the provider's key declares"
            }
            TokenRefusal::UnknownKey => "the identity token names no key the provider publishes",
            TokenRefusal::BadSignature => "the identity token's signature does not verify",
            TokenRefusal::WrongIssuer => "the identity token is from another identity provider",
            TokenRefusal::WrongAudience => "the identity token was issued to another application",
            TokenRefusal::NotAnIdToken => {
                "this is not an ID token (an access token?): sign in with the ID token"
            }
            TokenRefusal::Expired => "the identity token has expired: sign in again",
            TokenRefusal::NotYetValid => "the identity token is not valid yet",
            TokenRefusal::EmailNotAllowed => {
                "this deployment signs in only people with a verified email of its allowed domains"
            }
            TokenRefusal::CriticalHeader => {
                "the identity token requires a header extension this service does not support"
            }
            TokenRefusal::WrongAuthorizedParty => {
                "the identity token was authorized for another application"
            }
        }
    }
}

/// Why no answer could be given: the provider's keys could not be fetched
/// (retryable; never a refusal, never a sign-in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysUnavailable(pub String);

impl std::fmt::Display for KeysUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the identity provider's keys could not be fetched: {}",
            self.0
        )
    }
}

impl std::error::Error for KeysUnavailable {}

/// What verifying an ID token answers: the person, a refusal and why, or
/// no answer ([`KeysUnavailable`]).
pub type Verified = Result<Result<Identity, TokenRefusal>, KeysUnavailable>;

/// Verifies one identity provider's ID tokens at `now` (the `apikeys-idp`
/// crate's verifier; what signing in asks of it).
pub trait VerifyIdToken: Send + Sync {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        now: time::OffsetDateTime,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Verified> + Send + 'a>>;
}
