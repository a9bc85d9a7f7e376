//! Invitations: human tenant admins (and the operator) invite a person by
//! email with a role; the person, signed in with the identity provider
//! with that email verified, accepts. Rules:
//! - an invitation lives [`INVITATION_DAYS`] days;
//! - at most [`MAX_PENDING_INVITATIONS`] pending per tenant, one per email
//!   per tenant, and [`INVITATIONS_PER_HOUR`] made by one admin an hour;
//! - service accounts, read-only members, users and limited keys cannot
//!   invite or withdraw; an invitation is accepted only by a person whose
//!   verified email is the one invited (another email, an unverified one,
//!   or none all see "not found", as for an invitation that never was);
//! - accepting makes the user at a first sign-in (username: the email),
//!   links the identity (issuer, `sub`) and adds the membership, in one
//!   transaction with its audit record; every step is recorded.

use uuid::Uuid;

use super::*;
use apikeys_core::audit::{AuditAction, AuditActor, AuditEvent, TargetType};
use apikeys_core::authz::{authorize, within, Action, Made, Maker, Target};
use apikeys_core::domain::{AccountType, Role};
use apikeys_core::principal::Person;
use apikeys_store::{Invitation, InvitationAccept, InvitationDelete, InvitationInsert, UserRecord};

/// How long an invitation waits to be accepted.
pub const INVITATION_DAYS: i64 = 7;
/// Pending invitations a tenant may have.
pub const MAX_PENDING_INVITATIONS: usize = 50;
/// Invitations one admin may make in an hour (per tenant).
pub const INVITATIONS_PER_HOUR: u32 = 20;

/// An email as invitations hold it: trimmed, lowercase, of a plain form
/// (ASCII, one `@`, a dotted domain, at most 254 characters).
pub fn normalize_email(raw: &str) -> Result<String> {
    apikeys_core::domain::plain_email(raw).ok_or_else(|| {
        let shown: String = raw.chars().take(64).filter(|c| !c.is_control()).collect();
        Error::BadInput(format!(
            "{shown:?} is not an email address this service can invite (name@example.com)"
        ))
    })
}

/// Who may see, make and withdraw the tenant's invitations: a person who is
/// a tenant admin (the rules' [`Action::Invite`]), with a credential that
/// may change things.
fn may_invite(p: &Principal) -> Result<()> {
    if !authorize(p.actor(), Action::Invite, Target::Myself) {
        return Err(Error::Forbidden(
            "only a tenant admin who is a person may invite or withdraw invitations (not a \
             service account, a user or a read-only member)"
                .into(),
        ));
    }
    may_change(p)
}

impl ApiKeys {
    /// Invites `email` to the caller's tenant (`tenant`, which must be it:
    /// another looks like one that does not exist) with `role`.
    pub async fn create_invitation(
        &self,
        p: &Principal,
        tenant: Uuid,
        email: &str,
        role: &str,
    ) -> Result<Invitation> {
        if tenant != p.tenant_id {
            return Err(Error::NotFound("tenant"));
        }
        may_invite(p)?;
        let role = parse_role(role)?;
        // The invited person's sessions and keys will carry none of the
        // inviting credential's limits: only an unlimited one invites.
        within(
            &Maker::of(p),
            Made::Role {
                from: None,
                to: role,
            },
        )
        .map_err(|w| wider_than_credential(p, w))?;
        let email = normalize_email(email)?;
        let actor = AuditActor::of(p);
        self.invite(p.tenant_id, &email, role, actor, Some(p.user_id))
            .await
    }

    /// The operator's invitation, by tenant slug: no hourly limit.
    pub async fn operator_invite(
        &self,
        tenant_slug: &str,
        email: &str,
        role: Role,
    ) -> Result<Invitation> {
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let email = normalize_email(email)?;
        self.invite(tenant.id, &email, role, AuditActor::operator(), None)
            .await
    }

    async fn invite(
        &self,
        tenant: Uuid,
        email: &str,
        role: Role,
        actor: AuditActor,
        inviter: Option<Uuid>,
    ) -> Result<Invitation> {
        for _ in 0..CONFLICT_RETRIES {
            let now = self.now();
            let record = self
                .store
                .tenant(tenant)
                .await?
                .ok_or(Error::NotFound("tenant"))?;
            let all = self.store.tenant_invitations(tenant).await?;
            let (pending, expired): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|i| i.expires_at > now);
            if let Some(same) = pending.iter().find(|i| i.email == email) {
                return Err(already_invited(same));
            }
            if pending.len() >= MAX_PENDING_INVITATIONS {
                return Err(Error::BadInput(format!(
                    "this tenant has {MAX_PENDING_INVITATIONS} pending invitations, the most it \
                     may have: withdraw some, or wait for them to be accepted or to expire"
                )));
            }
            let invitation = Invitation {
                id: Uuid::new_v4(),
                tenant_id: tenant,
                tenant_name: record.tenant.name.clone(),
                tenant_slug: record.tenant.slug.clone(),
                email: email.to_string(),
                role,
                created: now,
                expires_at: now.saturating_add(time::Duration::days(INVITATION_DAYS)),
                invited_by: actor.user_id.unwrap_or_default(),
                invited_by_name: actor.name.clone(),
            };
            let audit = self.audit(
                tenant,
                AuditEvent::new(
                    AuditAction::InvitationCreated,
                    actor.clone(),
                    TargetType::Invitation,
                    invitation.id,
                    Some(email),
                )
                .with_detail(format!("role {}", role.name())),
            );
            // Expired ones go with it (a bounded number a time).
            let expired: Vec<Invitation> = expired.into_iter().take(20).collect();
            match self
                .store
                .insert_invitation(
                    &invitation,
                    record.invite_version,
                    &expired,
                    inviter,
                    inviter.map(|user| (user, INVITATIONS_PER_HOUR)),
                    &audit,
                )
                .await?
            {
                InvitationInsert::Written => return Ok(invitation),
                InvitationInsert::CallerNotAdmin => {
                    return Err(Error::Forbidden(
                        "the inviter is no longer an admin of this tenant".into(),
                    ))
                }
                InvitationInsert::Pending | InvitationInsert::Changed => continue,
            }
        }
        Err(kept_changing("the tenant's invitations"))
    }

    /// The invitations the caller sees: a human admin, the tenant's pending
    /// ones; a person signed in with a verified email, those addressed to
    /// it in any tenant. Nobody else sees any.
    pub async fn visible_invitations(
        &self,
        admin_of: Option<&Principal>,
        person: Option<&Person>,
    ) -> Result<Vec<Invitation>> {
        let now = self.now();
        let mut seen = Vec::new();
        if let Some(p) = admin_of.filter(|p| may_invite(p).is_ok()) {
            seen.extend(self.store.tenant_invitations(p.tenant_id).await?);
        }
        if let Some(email) = person.and_then(|p| p.email.as_deref()) {
            for i in self.store.invitations_to(email).await? {
                if !seen.iter().any(|s: &Invitation| s.id == i.id) {
                    seen.push(i);
                }
            }
        }
        seen.retain(|i| i.expires_at > now);
        seen.sort_by_key(|i| (i.created, i.id));
        Ok(seen)
    }

    /// Withdraws an invitation of the caller's tenant. When it was the last
    /// one waiting for its email, the sessions of people in no tenant who
    /// signed in with that email end with it (they had nothing else to
    /// do).
    pub async fn withdraw_invitation(&self, p: &Principal, id: Uuid) -> Result<()> {
        may_invite(p)?;
        for _ in 0..CONFLICT_RETRIES {
            let Some(invitation) = self
                .store
                .tenant_invitations(p.tenant_id)
                .await?
                .into_iter()
                .find(|i| i.id == id)
            else {
                return Err(Error::NotFound("invitation"));
            };
            let now = self.now();
            // The email's sessions first, then its invitations: a sign-in
            // or another withdrawal between the two moves the listing's
            // version, and this transaction is refused and read again.
            let listing = self.store.invitee_sessions(&invitation.email).await?;
            let last = !self
                .store
                .invitations_to(&invitation.email)
                .await?
                .iter()
                .any(|i| i.id != id && i.expires_at > now);
            let audit = self.audit(
                p.tenant_id,
                AuditEvent::new(
                    AuditAction::InvitationWithdrawn,
                    AuditActor::of(p),
                    TargetType::Invitation,
                    id,
                    Some(&invitation.email),
                ),
            );
            match self
                .store
                .delete_invitation(&invitation, Some(p.user_id), &listing, last, now, &audit)
                .await?
            {
                InvitationDelete::Deleted => return Ok(()),
                InvitationDelete::Gone => return Err(Error::NotFound("invitation")),
                InvitationDelete::CallerNotAdmin => {
                    return Err(Error::Forbidden(
                        "you are no longer an admin of this tenant: nothing was withdrawn".into(),
                    ))
                }
                // Someone signed in meanwhile: read their sessions again.
                InvitationDelete::SessionsChanged => continue,
            }
        }
        Err(kept_changing("the invited person's sessions"))
    }

    /// Accepts an invitation addressed to the person's verified email:
    /// their membership (and, at a first sign-in, their user and the link
    /// of their identity). Answers the membership's id and tenant.
    pub async fn accept_invitation(
        &self,
        person: &Person,
        session: Option<(&apikeys_core::token::TokenHash, Uuid)>,
        id: Uuid,
    ) -> Result<(Uuid, Uuid)> {
        let not_found = || Error::NotFound("invitation");
        let Some(email) = person.email.as_deref() else {
            return Err(not_found());
        };
        for attempt in 0..CONFLICT_RETRIES {
            let now = self.now();
            let Some(invitation) = self
                .store
                .invitations_to(email)
                .await?
                .into_iter()
                .find(|i| i.id == id && i.expires_at > now)
            else {
                return Err(not_found());
            };
            let linked = match person.user_id {
                Some(user) => Some(user),
                None => {
                    self.store
                        .identity_user(&person.issuer, &person.subject)
                        .await?
                }
            };
            let (user, new_user) =
                match linked {
                    Some(user) => {
                        let record = self.store.user(user).await?.ok_or(Error::Store(
                            StoreError::Corrupt(format!("user#{user}"), "linked user"),
                        ))?;
                        (record, None)
                    }
                    None => {
                        // The email as username; taken (by someone else's
                        // operator-made user): with a suffix.
                        let username = if attempt == 0 {
                            email.to_string()
                        } else {
                            let suffix: u16 = rand::random();
                            format!("{email}~{suffix:04x}")
                        };
                        let record = UserRecord {
                            id: Uuid::new_v4(),
                            username,
                            email: Some(email.to_string()),
                            created: now,
                        };
                        (record.clone(), Some(record))
                    }
                };
            // The admin who sent it, to their own address: a member already
            // (and the transaction's check that they still are an admin
            // would be a second operation on the new membership's item).
            if user.id == invitation.invited_by {
                return Err(already_member());
            }
            // A person never joins under the name of a service account of
            // the tenant (they would pass for each other in its lists and
            // its audit log), as the operator's `add-user` refuses too.
            let folded = apikeys_core::domain::folded_name(&user.username);
            let taken = self
                .store
                .members(invitation.tenant_id)
                .await?
                .into_iter()
                .any(|m| {
                    m.account_type == AccountType::Service
                        && apikeys_core::domain::folded_name(&m.username) == folded
                });
            if taken {
                return Err(Error::BadInput(format!(
                    "this tenant has a service account named '{}', your username: ask an admin \
                     of the tenant to delete that service account before you join",
                    user.username
                )));
            }
            let membership = Membership {
                id: Uuid::new_v4(),
                tenant_id: invitation.tenant_id,
                user_id: user.id,
                username: user.username.clone(),
                email: user.email.clone().or_else(|| Some(email.to_string())),
                account_type: AccountType::User,
                role: invitation.role,
                key_count: 0,
                created: now,
                lease: None,
                legacy_mark: false,
                key_ids: Default::default(),
                keys_indexed: false,
                sessions: Vec::new(),
                sessions_version: 0,
            };
            let actor = AuditActor {
                user_id: Some(user.id),
                key_id: None,
                name: user.username.clone(),
                account_type: Some(AccountType::User),
                session: session.map(|(hash, _)| hash.clone()),
            };
            let audit = self.audit(
                invitation.tenant_id,
                AuditEvent::new(
                    AuditAction::InvitationAccepted,
                    actor,
                    TargetType::Member,
                    membership.id,
                    Some(&user.username),
                )
                .with_detail(format!(
                    "role {}, invited by {}",
                    invitation.role.name(),
                    invitation.invited_by_name
                )),
            );
            let new = new_user
                .as_ref()
                .map(|u| (u, person.issuer.as_str(), person.subject.as_str()));
            // The session that accepts, when it began before its person
            // was linked to a user: linked now, with the membership.
            let linking = session.filter(|_| person.user_id.is_none());
            match self
                .store
                .accept_invitation(&invitation, &membership, new, linking, now, &audit)
                .await?
            {
                InvitationAccept::Accepted => return Ok((membership.id, invitation.tenant_id)),
                InvitationAccept::Gone | InvitationAccept::TenantGone => return Err(not_found()),
                InvitationAccept::InviterNotAdmin => {
                    return Err(Error::Forbidden(
                        "the admin who sent this invitation is no longer an admin of the tenant: \
                         ask an admin for a new invitation"
                            .into(),
                    ))
                }
                InvitationAccept::AlreadyMember => return Err(already_member()),
                // The username (or the identity, linked by a racing
                // accept) was taken: read again.
                InvitationAccept::UserTaken => continue,
            }
        }
        Err(kept_changing("the invitation"))
    }
}

fn already_member() -> Error {
    Error::BadInput("you are a member of this tenant already".into())
}

fn parse_role(role: &str) -> Result<Role> {
    Role::from_name(role.trim()).ok_or_else(|| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        Error::BadInput(format!("role must be one of {}", names.join(", ")))
    })
}

fn already_invited(same: &Invitation) -> Error {
    let until = same
        .expires_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Error::BadInput(format!(
        "{} has a pending invitation to this tenant (until {until}): withdraw it first to \
         invite them again",
        same.email
    ))
}
