//! People's sessions: signing in with the identity provider's ID token,
//! refreshing, switching tenant, signing out, and authenticating a session
//! with the same one read as a key.
//!
//! A session is two opaque tokens of the key format (`apses_…` to act,
//! `apref_…` to refresh), stored only as hashes (see `store::sessions`):
//! - the access token works for [`SESSION_ACCESS`] (1 hour);
//! - a refresh is accepted until [`SESSION_IDLE`] (2 hours) after the
//!   access token was issued, and gives both tokens anew (the old ones
//!   stop at once: single use);
//! - nothing extends a session past [`SESSION_MAX`] (12 hours) after its
//!   sign-in.
//!
//! It ends at once when its person logs out, is removed from the tenant,
//! or is given another role (the role a session carries is always the
//! member's current one).

use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use apikeys_core::domain::{AccountType, Role, Tenant};
use apikeys_core::identity::{Identity, VerifyIdToken};
use apikeys_core::principal::{Person, SessionRef};
use apikeys_core::token::NewKey;
use apikeys_store::{AuthCopy, ListedOn, SessionHome, SessionRecord, SessionWrite};

/// The access token's prefix.
pub const SESSION_PREFIX: &str = "apses";
/// The refresh token's prefix.
pub const REFRESH_PREFIX: &str = "apref";
/// How long an access token works.
pub const SESSION_ACCESS: time::Duration = time::Duration::hours(1);
/// How long after an access token was issued its refresh is accepted:
/// a session nobody used (refreshed) for this long ends.
pub const SESSION_IDLE: time::Duration = time::Duration::hours(2);
/// The most tenants listed for one person.
pub const MAX_TENANTS_LISTED: usize = 50;
/// The longest a session lives after its sign-in, refreshed or not.
pub const SESSION_MAX: time::Duration = time::Duration::hours(12);

/// A session's tokens, shown once to the person who signed in.
pub struct SessionTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: OffsetDateTime,
    /// `None`: a person in no tenant yet (see [`Authenticated::Person`]).
    pub tenant_id: Option<Uuid>,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

/// Who a session token authenticates.
#[derive(Clone, Debug)]
pub enum Authenticated {
    /// A member of a tenant (its role, copied, is the member's current one).
    Member(Box<Principal>),
    /// A person in no tenant yet, whom an invitation waits for.
    Person(SessionRef),
}

fn sign_in_refused(reason: &'static str, message: impl Into<String>) -> Error {
    tracing::info!(reason, "sign-in refused");
    Error::SignIn {
        reason,
        message: message.into(),
    }
}

/// A verified person with no tenant here and nothing to accept.
fn not_a_member(person: &Person) -> Error {
    let who = person
        .email
        .clone()
        .unwrap_or_else(|| "the email you sign in with".to_string());
    sign_in_refused(
        "not_a_member",
        format!("you are not a member of any team yet: ask an admin of your team to invite {who}"),
    )
}

fn ended() -> Error {
    refused(Refusal::SessionEnded)
}

/// The session being replaced by a refresh or a switch of tenant.
struct Replacing {
    hash: TokenHash,
    id: Uuid,
    tenant: Option<Uuid>,
}

impl ApiKeys {
    /// Signs a person in: verifies the provider's ID token (no database
    /// request for a refused one), finds the user its identity is linked
    /// to, and starts a session in `tenant` (or the first tenant they
    /// joined). A person in no tenant gets a session in none when an
    /// invitation waits for their verified email; otherwise they are told
    /// to ask for an invitation.
    pub async fn log_in(
        &self,
        verifier: &dyn VerifyIdToken,
        id_token: &str,
        tenant: Option<Uuid>,
    ) -> Result<SessionTokens> {
        let identity = self.verify_identity(verifier, id_token).await?;
        // A verified token costs reads: bounded per identity and per
        // instance before any (a replayed token, a stranger's retries).
        let who = TokenHash::of(&format!("{}\n{}", identity.issuer, identity.subject));
        if let Err(retry_after) = self.sign_ins.admit(who.as_str(), self.clock.now()) {
            tracing::info!(reason = "sign_in_rate_limited", "sign-in refused");
            return Err(Error::RateLimited {
                retry_after,
                message: format!(
                    "too many sign-ins just now: nobody was signed in; try again in \
                     {retry_after} s"
                ),
            });
        }
        let user = self
            .store
            .identity_user(&identity.issuer, &identity.subject)
            .await?;
        let person = Person {
            issuer: identity.issuer,
            subject: identity.subject,
            email: identity.email,
            user_id: user,
        };
        let until = self.now().saturating_add(SESSION_MAX);
        let tenant = match (tenant, user) {
            (Some(tenant), _) => Some(tenant),
            (None, Some(user)) => self.store.user_tenants(user).await?.first().copied(),
            (None, None) => None,
        };
        if tenant.is_none() && !self.may_enter_without_tenant(&person).await? {
            return Err(not_a_member(&person));
        }
        self.start_session(person, tenant, until, None).await
    }

    /// May a person in no tenant have a session: does an invitation wait
    /// for their verified email, or (one accepted in this session) do they
    /// belong to a tenant they may switch into?
    async fn may_enter_without_tenant(&self, person: &Person) -> Result<bool> {
        if let Some(user) = person.user_id {
            if !self.store.user_tenants(user).await?.is_empty() {
                return Ok(true);
            }
        }
        let Some(email) = &person.email else {
            return Ok(false);
        };
        let now = self.now();
        Ok(self
            .store
            .invitations_to(email)
            .await?
            .iter()
            .any(|i| i.expires_at > now))
    }

    /// The person an ID token vouches for, or why not (UNAUTHENTICATED with
    /// the reason; the provider's keys out of reach: retryable).
    pub async fn verify_identity(
        &self,
        verifier: &dyn VerifyIdToken,
        id_token: &str,
    ) -> Result<Identity> {
        match verifier.verify(id_token, self.now()).await {
            Ok(Ok(identity)) => Ok(identity),
            Ok(Err(refusal)) => Err(sign_in_refused(refusal.code(), refusal.message())),
            Err(e) => {
                tracing::warn!(error = %e, "identity provider's keys unavailable");
                Err(Error::Unavailable(
                    "the identity provider's keys could not be fetched just now: nobody was \
                     signed in; try again in a moment"
                        .into(),
                ))
            }
        }
    }

    /// A new session of `person` in `tenant` (`None`: in none), ending at
    /// `until`, replacing another one (a refresh, a switch) in the same
    /// transaction.
    async fn start_session(
        &self,
        person: Person,
        tenant: Option<Uuid>,
        until: OffsetDateTime,
        replacing: Option<Replacing>,
    ) -> Result<SessionTokens> {
        // A tenant that is not the person's looks like one that does not exist.
        let not_yours = || Error::NotFound("tenant");
        for _ in 0..CONFLICT_RETRIES {
            let now = self.now();
            // A person in no tenant: listed by the email their invitations
            // wait for (capped like a member's sessions).
            let listing = match (tenant, &person.email) {
                (None, Some(email)) => {
                    let listing = self.store.invitee_sessions(email).await?;
                    // Read after the listing: the withdrawal of the last
                    // invitation between the two moves the listing's
                    // version, and this session's write is refused.
                    if !self.may_enter_without_tenant(&person).await? {
                        return Err(not_a_member(&person));
                    }
                    Some(listing)
                }
                (None, None) => return Err(not_a_member(&person)),
                (Some(_), _) => None,
            };
            let (membership, member) = match (tenant, person.user_id) {
                (None, _) => (None, None),
                (Some(_), None) => return Err(not_yours()),
                (Some(tenant), Some(user)) => {
                    let Some(m) = self.store.membership(tenant, user).await? else {
                        return Err(not_yours());
                    };
                    if m.account_type != AccountType::User {
                        return Err(not_yours());
                    }
                    if let Some(lease) = m.lease.as_ref().filter(|l| l.until > now) {
                        return Err(Error::Busy(lease.kind, lease.until));
                    }
                    let Some(record) = self.store.tenant(tenant).await? else {
                        return Err(not_yours());
                    };
                    let member = AuthCopy::of(
                        &apikeys_core::domain::Member::from(m.clone()),
                        record.tenant,
                        record.policy,
                    );
                    (Some(m), Some(member))
                }
            };
            let access = NewKey::generate(SESSION_PREFIX);
            let refresh = NewKey::generate(REFRESH_PREFIX);
            // A refresh keeps the session's id (a log-out racing it ends
            // what it became); a new sign-in or a switch makes a new one.
            let id = match &replacing {
                Some(r) if r.tenant == tenant => r.id,
                _ => Uuid::new_v4(),
            };
            let session = SessionRecord {
                id,
                person: person.clone(),
                member,
                expires_at: now.saturating_add(SESSION_ACCESS).min(until),
                refresh_hash: refresh.hash(),
                refresh_until: now.saturating_add(SESSION_IDLE).min(until),
                until,
            };
            let replaced = replacing.as_ref().map(|r| (&r.hash, r.id, r.tenant));
            let home = match (&membership, &listing, &person.email) {
                (Some(m), _, _) => SessionHome::Member(m),
                (None, Some(listing), Some(email)) => SessionHome::Invitee { email, listing },
                _ => return Err(not_a_member(&person)),
            };
            match self
                .store
                .write_session(home, &access.hash(), &session, replaced, now)
                .await?
            {
                SessionWrite::Written => {
                    tracing::info!(session_id = %session.id, tenant_id = ?tenant, "session started");
                    return Ok(SessionTokens {
                        access_token: access.expose_secret().to_string(),
                        refresh_token: refresh.expose_secret().to_string(),
                        expires_at: session.expires_at,
                        tenant_id: tenant,
                    });
                }
                SessionWrite::Replaced => return Err(ended()),
                SessionWrite::MemberChanged => continue,
            }
        }
        Err(kept_changing("the membership"))
    }

    /// A session's access token and refresh token give both anew: the old
    /// ones stop at once (two refreshes of one session: one wins).
    pub async fn refresh_session(
        &self,
        access_token: &str,
        refresh_token: Option<&str>,
    ) -> Result<SessionTokens> {
        let (Some(hash), Some(refresh)) = (
            verify_presented(access_token.trim(), &[SESSION_PREFIX]),
            refresh_token.and_then(|t| verify_presented(t, &[REFRESH_PREFIX])),
        ) else {
            return Err(refused(Refusal::Malformed));
        };
        let Some(record) = self.store.session_by_hash(&hash).await? else {
            return Err(ended());
        };
        if !record.refresh_hash.matches_hex(refresh.as_str()) {
            return Err(ended());
        }
        let now = self.now();
        if now >= record.refresh_until || now >= record.until {
            return Err(sign_in_refused(
                Refusal::SessionExpired.code(),
                "this session has ended (unused too long, or at its longest): sign in again",
            ));
        }
        let from = record.member.as_ref().map(|m| m.tenant.id);
        let mut person = record.person;
        // A person in no tenant who belongs to one since (an invitation
        // accepted, in this session or another): into the first they
        // joined, as a sign-in would. Otherwise they keep a session only
        // while an invitation still waits for them (withdrawn or expired:
        // it ends here).
        let tenant = match from {
            Some(tenant) => Some(tenant),
            None => {
                if person.user_id.is_none() {
                    person.user_id = self
                        .store
                        .identity_user(&person.issuer, &person.subject)
                        .await?;
                }
                match person.user_id {
                    Some(user) => self.store.user_tenants(user).await?.first().copied(),
                    None => None,
                }
            }
        };
        if tenant.is_none() && !self.may_enter_without_tenant(&person).await? {
            return Err(not_a_member(&person));
        }
        let replacing = Replacing {
            hash,
            id: record.id,
            tenant: from,
        };
        self.start_session(person, tenant, record.until, Some(replacing))
            .await
    }

    /// A session moved to another of the person's tenants (a tenant that
    /// is not theirs looks like one that does not exist): a member's, or a
    /// person's in no tenant who just accepted an invitation.
    pub async fn switch_tenant(
        &self,
        session: Option<&SessionRef>,
        tenant: Uuid,
    ) -> Result<SessionTokens> {
        let Some(session) = session else {
            return Err(Error::Forbidden(
                "switch_tenant moves a person's session: an API key belongs to one tenant \
                 (use a key of the other tenant)"
                    .into(),
            ));
        };
        let Some(record) = self.store.session_by_hash(&session.hash).await? else {
            return Err(ended());
        };
        // Linked since (an invitation accepted in this session).
        let mut person = record.person;
        if person.user_id.is_none() {
            person.user_id = self
                .store
                .identity_user(&person.issuer, &person.subject)
                .await?;
        }
        let replacing = Replacing {
            hash: session.hash.clone(),
            id: record.id,
            tenant: record.member.as_ref().map(|m| m.tenant.id),
        };
        self.start_session(person, Some(tenant), record.until, Some(replacing))
            .await
    }

    /// Ends a session (`member`: its tenant and user, when it is a
    /// member's; otherwise it is listed by its person's email).
    /// `Ok(false)`: it had ended already.
    pub async fn log_out(
        &self,
        session: Option<&SessionRef>,
        member: Option<(Uuid, Uuid)>,
    ) -> Result<bool> {
        let Some(session) = session else {
            return Err(Error::Forbidden(
                "log_out ends a person's session: an API key is revoked instead".into(),
            ));
        };
        let listed_on = match (member, &session.person.email) {
            (Some((tenant, user)), _) => Some(ListedOn::Member(tenant, user)),
            (None, Some(email)) => Some(ListedOn::Invitee(email)),
            (None, None) => None,
        };
        Ok(self
            .store
            .end_session(&session.hash, session.id, listed_on)
            .await?)
    }

    /// Who a session token authenticates: one strongly consistent read
    /// (none for a token of the wrong shape), like a key's.
    pub async fn authenticate_session(
        &self,
        token: &str,
        tenant_header: Option<&str>,
    ) -> Result<Authenticated> {
        let Some(hash) = verify_presented(token.trim(), &[SESSION_PREFIX]) else {
            return Err(refused(Refusal::Malformed));
        };
        let wanted_tenant = match tenant_header.map(|value| Uuid::parse_str(value.trim())) {
            Some(Ok(tenant)) => Some(tenant),
            Some(Err(_)) => return Err(refused(Refusal::WrongTenant)),
            None => None,
        };
        let Some(record) = self.store.session_by_hash(&hash).await? else {
            return Err(ended());
        };
        let now = self.now();
        if now >= record.expires_at {
            return Err(refused(Refusal::SessionExpired));
        }
        let session = SessionRef {
            id: record.id,
            hash,
            expires_at: record.expires_at,
            person: record.person,
        };
        let (Some(member), Some(user)) = (record.member, session.person.user_id) else {
            if wanted_tenant.is_some() {
                return Err(refused(Refusal::WrongTenant));
            }
            return Ok(Authenticated::Person(session));
        };
        if wanted_tenant.is_some_and(|t| t != member.tenant.id) {
            return Err(refused(Refusal::WrongTenant));
        }
        Ok(Authenticated::Member(Box::new(Principal {
            user_id: user,
            tenant_id: member.tenant.id,
            api_key_id: Uuid::nil(),
            username: member.username,
            account_type: AccountType::User,
            role: member.role,
            membership_id: member.membership_id,
            email: member.email,
            tenant: member.tenant,
            key_last_used: None,
            key_replaced: false,
            key_ceiling: None,
            key_networks: Vec::new(),
            key_scopes: Vec::new(),
            key_created: None,
            key_expires_at: Some(record.expires_at),
            policy: member.policy,
            session: Some(session),
        })))
    }

    /// The tenants a person belongs to, with their role in each (for the
    /// console's switcher): the person's index, then each membership and
    /// tenant (at most [`MAX_TENANTS_LISTED`]).
    pub async fn person_tenants(&self, person: &Person) -> Result<Vec<(Tenant, Role)>> {
        let Some(user) = person.user_id else {
            return Ok(Vec::new());
        };
        let ids = self.store.user_tenants(user).await?;
        let reads = ids
            .into_iter()
            .take(MAX_TENANTS_LISTED)
            .map(|tenant| async move {
                let member = self.store.membership(tenant, user).await?;
                let record = self.store.tenant(tenant).await?;
                Ok::<_, Error>(member.zip(record).map(|(m, t)| (t.tenant, m.role)))
            });
        let found = futures_util::future::join_all(reads).await;
        found
            .into_iter()
            .filter_map(|r| r.transpose())
            .collect::<Result<Vec<_>>>()
    }

    /// Is `presented` (a bearer) shaped like a session's token?
    pub fn is_session_token(&self, presented: &str) -> bool {
        verify_presented(presented.trim(), &[SESSION_PREFIX, REFRESH_PREFIX]).is_some()
    }
}
