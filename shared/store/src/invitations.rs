//! Invitations: a tenant admin invites a person by email with a role; the
//! person, signed in with a verified email that matches, accepts, which
//! makes the user (at a first sign-in), links their identity, and adds the
//! membership, all in one transaction with its audit record.
//!
//! | pk | sk | item |
//! |----|----|------|
//! | `<tenant id>` | `invite#<invitation id>` | the invitation (the tenant's listing) |
//! | `invitee#<email>` | `invite#<tenant id>` | the same, by the email it is addressed to (one pending per email per tenant) |
//!
//! Both expire with a `ttl` a day after the invitation does; until then an
//! expired one is refused by every read and replaced by a new one.

use super::Membership;
use apikeys_core::domain::Role;

use super::*;

/// An invitation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_name: String,
    pub tenant_slug: String,
    /// Lowercase.
    pub email: String,
    pub role: Role,
    pub created: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Who invited (a user id; nil: the operator).
    pub invited_by: Uuid,
    pub invited_by_name: String,
}

fn invitation_attributes(i: &Invitation) -> Item {
    values([
        ("invitation_id", s(i.id.to_string())),
        ("tenant_id", s(i.tenant_id.to_string())),
        ("tenant_name", s(&i.tenant_name)),
        ("tenant_slug", s(&i.tenant_slug)),
        ("email", s(&i.email)),
        ("member_role", s(i.role.name())),
        ("created", n(i.created.unix_timestamp())),
        ("expires_at", n(i.expires_at.unix_timestamp())),
        ("invited_by", s(i.invited_by.to_string())),
        ("invited_by_name", s(&i.invited_by_name)),
        (
            "ttl",
            n(i.expires_at.unix_timestamp().saturating_add(86_400)),
        ),
    ])
}

fn invitation_from(item: &Item) -> Result<Invitation> {
    let f = Fields(item);
    Ok(Invitation {
        id: f.uuid("invitation_id")?,
        tenant_id: f.uuid("tenant_id")?,
        tenant_name: f.s("tenant_name")?.to_string(),
        tenant_slug: f.s("tenant_slug")?.to_string(),
        email: f.s("email")?.to_string(),
        role: f.role("member_role")?,
        created: f.time("created")?,
        expires_at: f.time("expires_at")?,
        invited_by: f.uuid("invited_by")?,
        invited_by_name: f.s("invited_by_name")?.to_string(),
    })
}

fn invite_sk(id: Uuid) -> String {
    format!("invite#{id}")
}

fn invitee_pk(email: &str) -> String {
    format!("invitee#{email}")
}

fn invitee_sk(tenant: Uuid) -> String {
    format!("invite#{tenant}")
}

/// What [`Store::insert_invitation`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum InvitationInsert {
    Written,
    /// A pending invitation to this email in this tenant exists.
    Pending,
    /// Another invitation was made or withdrawn meanwhile: read again.
    Changed,
    /// The inviter is no longer an admin of the tenant.
    CallerNotAdmin,
}

/// What [`Store::delete_invitation`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum InvitationDelete {
    Deleted,
    /// Accepted, withdrawn or expired meanwhile.
    Gone,
    /// The sessions of the email changed since they were read: read again.
    SessionsChanged,
    /// The caller is no longer an admin of the tenant.
    CallerNotAdmin,
}

/// What [`Store::accept_invitation`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum InvitationAccept {
    Accepted,
    /// Withdrawn, accepted, or expired meanwhile.
    Gone,
    /// The person is a member of the tenant already.
    AlreadyMember,
    /// The tenant is gone.
    TenantGone,
    /// The new user's username, or the identity, was taken meanwhile.
    UserTaken,
    /// The admin who invited is no longer one: the invitation no longer
    /// stands.
    InviterNotAdmin,
}

impl Store {
    /// The tenant's invitations (pending and expired), oldest first.
    pub async fn tenant_invitations(&self, tenant: Uuid) -> Result<Vec<Invitation>> {
        self.invitations_in(tenant_pk(tenant)).await
    }

    /// The invitations addressed to `email` (pending and expired).
    pub async fn invitations_to(&self, email: &str) -> Result<Vec<Invitation>> {
        self.invitations_in(invitee_pk(email)).await
    }

    /// The invitation items of a partition, oldest first.
    async fn invitations_in(&self, pk: String) -> Result<Vec<Invitation>> {
        let mut all = self
            .query_prefix(pk, "invite#".into())
            .await?
            .iter()
            .map(invitation_from)
            .collect::<Result<Vec<_>>>()?;
        all.sort_by_key(|i| (i.created, i.id));
        Ok(all)
    }

    /// Writes an invitation: its two items, only while no unexpired one
    /// to the same email is pending in the tenant (an expired one, given
    /// in `expired`, is replaced), serialised with every other invitation
    /// of the tenant by `invite_v` on the tenant item (read as `version`:
    /// the count the caller checked stays true), counted against the
    /// inviter's hourly limit, with its audit record.
    pub async fn insert_invitation(
        &self,
        invitation: &Invitation,
        version: i64,
        expired: &[Invitation],
        caller_admin: Option<Uuid>,
        hourly: Option<(Uuid, u32)>,
        audit: &apikeys_core::audit::AuditRecord,
    ) -> Changed<InvitationInsert> {
        let mut tx = Tx::new();
        let mut listing = key_of(tenant_pk(invitation.tenant_id), invite_sk(invitation.id));
        listing.extend(invitation_attributes(invitation));
        tx.push(Part::NewKey, put(&self.table, listing)?);
        let mut by_email = key_of(
            invitee_pk(&invitation.email),
            invitee_sk(invitation.tenant_id),
        );
        by_email.extend(invitation_attributes(invitation));
        let replaced = expired.iter().find(|e| e.email == invitation.email);
        let by_email_put = match replaced {
            // Only the expired one read may be replaced.
            Some(old) => aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(by_email))
                .condition_expression("attribute_not_exists(pk) OR invitation_id = :old")
                .expression_attribute_values(":old", s(old.id.to_string()))
                .build()?,
            None => aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.table)
                .set_item(Some(by_email))
                .condition_expression("attribute_not_exists(pk)")
                .build()?,
        };
        tx.push(
            Part::Absent,
            TransactWriteItem::builder().put(by_email_put).build(),
        );
        for old in expired {
            tx.push(
                Part::KeyAt(0),
                self.plain_delete(key_of(tenant_pk(old.tenant_id), invite_sk(old.id)))?,
            );
            if old.email != invitation.email {
                // Its email item, only while it is still this one.
                let delete = aws_sdk_dynamodb::types::Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_of(
                        invitee_pk(&old.email),
                        invitee_sk(old.tenant_id),
                    )))
                    .condition_expression("attribute_not_exists(pk) OR invitation_id = :old")
                    .expression_attribute_values(":old", s(old.id.to_string()))
                    .build()?;
                tx.push(
                    Part::Invitation,
                    TransactWriteItem::builder().delete(delete).build(),
                );
            }
        }
        let version_check = if version == 0 {
            "attribute_exists(pk) AND (attribute_not_exists(invite_v) OR invite_v = :v)"
        } else {
            "attribute_exists(pk) AND invite_v = :v"
        };
        tx.push(
            Part::Tenant,
            update(
                &self.table,
                key_of(tenant_pk(invitation.tenant_id), "tenant".into()),
                "SET invite_v = :v1",
                version_check,
                values([(":v", n(version)), (":v1", n(version.saturating_add(1)))]),
            )?,
        );
        if let Some((inviter, max)) = hourly {
            let hour = invitation.created.unix_timestamp().div_euclid(3600);
            tx.push(
                Part::HourlyLimit,
                update_setting_ttl(
                    &self.table,
                    key_of(
                        tenant_pk(invitation.tenant_id),
                        format!("irate#{inviter}#{hour}"),
                    ),
                    "ADD invites :one SET #ttl = :ttl",
                    "attribute_not_exists(invites) OR invites < :max",
                    values([
                        (":one", n(1)),
                        (":max", n(i64::from(max))),
                        (":ttl", n(hour.saturating_add(2).saturating_mul(3600))),
                    ]),
                    true,
                )?,
            );
        }
        let outcome = self
            .commit(tx, invitation.tenant_id, caller_admin, &[audit])
            .await?;
        match outcome {
            Ok(()) => Ok(InvitationInsert::Written),
            Err(r) if r.has(Part::Caller) => Ok(InvitationInsert::CallerNotAdmin),
            Err(r) if r.has(Part::HourlyLimit) => Err(Failure::Halted(Halt::InvitationsLimited {
                retry_after: u64::try_from(
                    3600i64.saturating_sub(invitation.created.unix_timestamp().rem_euclid(3600)),
                )
                .unwrap_or(3600),
                limit: hourly.map_or(0, |(_, max)| max),
            })),
            Err(r) if r.has(Part::Absent) => Ok(InvitationInsert::Pending),
            Err(r) if r.has(Part::Tenant) || r.has(Part::Invitation) => {
                Ok(InvitationInsert::Changed)
            }
            Err(r) => Err(r.unexplained("insert_invitation").into()),
        }
    }

    /// Deletes an invitation (withdrawn, by an admin still one), with the
    /// sessions item of its email as `listing` read it (before the
    /// invitations were read): moved on, only while it is that version, so
    /// that two withdrawals of one email, or a withdrawal and a sign-in,
    /// are serialised; with `last` (no other invitation waited for that
    /// email), every session of a person in no tenant listed there ends in
    /// the same transaction.
    pub async fn delete_invitation(
        &self,
        invitation: &Invitation,
        caller_admin: Option<Uuid>,
        listing: &super::sessions::Listing,
        last: bool,
        now: OffsetDateTime,
        audit: &apikeys_core::audit::AuditRecord,
    ) -> Changed<InvitationDelete> {
        let mut tx = Tx::new();
        self.push_invitation_deletes(&mut tx, invitation, None)?;
        self.invitee_listing_change(&mut tx, &invitation.email, listing, last, now)?;
        match self
            .commit(tx, invitation.tenant_id, caller_admin, &[audit])
            .await?
        {
            Ok(()) => Ok(InvitationDelete::Deleted),
            Err(r) if r.has(Part::Caller) => Ok(InvitationDelete::CallerNotAdmin),
            Err(r) if r.has(Part::Invitation) => Ok(InvitationDelete::Gone),
            Err(r) if r.has(Part::Member) => Ok(InvitationDelete::SessionsChanged),
            Err(r) => Err(r.unexplained("delete_invitation").into()),
        }
    }

    /// The deletes of an invitation's two items, while it is still there
    /// (and, with `now`, unexpired).
    fn push_invitation_deletes(
        &self,
        tx: &mut Tx,
        invitation: &Invitation,
        now: Option<OffsetDateTime>,
    ) -> Result<()> {
        let (condition, mut vals) = match now {
            Some(now) => (
                "invitation_id = :id AND expires_at > :now",
                values([
                    (":id", s(invitation.id.to_string())),
                    (":now", n(now.unix_timestamp())),
                ]),
            ),
            None => (
                "invitation_id = :id",
                values([(":id", s(invitation.id.to_string()))]),
            ),
        };
        for key in [
            key_of(tenant_pk(invitation.tenant_id), invite_sk(invitation.id)),
            key_of(
                invitee_pk(&invitation.email),
                invitee_sk(invitation.tenant_id),
            ),
        ] {
            let delete = aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .condition_expression(condition)
                .set_expression_attribute_values(Some(vals.clone()))
                .build()?;
            tx.push(
                Part::Invitation,
                TransactWriteItem::builder().delete(delete).build(),
            );
        }
        vals.clear();
        Ok(())
    }

    /// Accepts an invitation: the membership `m` (of a new user `new_user`,
    /// whose identity is linked too, when the person has none yet), the
    /// person's index of tenants, the invitation's deletion (while it is
    /// unexpired at `now`), and the audit record, in one transaction. With
    /// `linking` (the hash and id of a session whose person was not linked
    /// to a user when it started), that session is linked to `m`'s user in
    /// the same transaction, only while it lasts, and taken off the sessions
    /// of people in no tenant: it sees its new tenant and may switch into
    /// it and refresh, with no second sign-in.
    pub async fn accept_invitation(
        &self,
        invitation: &Invitation,
        m: &Membership,
        new_user: Option<(&UserRecord, &str, &str)>,
        linking: Option<(&TokenHash, Uuid)>,
        now: OffsetDateTime,
        audit: &apikeys_core::audit::AuditRecord,
    ) -> Changed<InvitationAccept> {
        let mut tx = Tx::new();
        if let Some((session, id)) = linking {
            // A member's now: no longer one of the sessions of people in no
            // tenant, which the last invitation's withdrawal ends.
            tx.push(Part::Absent, self.invitee_unlisting(&invitation.email, id)?);
            // The acting session's own check (still there) is this write's.
            tx.push(
                Part::ActingKey,
                update(
                    &self.table,
                    key_of(hash_pk(session), "hash".into()),
                    "SET user_id = :user",
                    "attribute_exists(pk) AND kind = :session \
                     AND (attribute_not_exists(user_id) OR user_id = :user)",
                    values([
                        (":user", s(m.user_id.to_string())),
                        (":session", s("session")),
                    ]),
                )?,
            );
        }
        self.push_invitation_deletes(&mut tx, invitation, Some(now))?;
        // Whoever invited is still an admin (the operator's stand).
        if !invitation.invited_by.is_nil() {
            tx.push(
                Part::Caller,
                check_admin(&self.table, invitation.tenant_id, invitation.invited_by)?,
            );
        }
        tx.push(
            Part::NewMember,
            put(&self.table, super::members::membership_item(m))?,
        );
        tx.push(Part::Tenant, self.tenant_counter_item(m, 1, 0)?);
        tx.push(
            Part::Absent,
            self.user_tenant_put(m.user_id, m.tenant_id, m.created)?,
        );
        if let Some((user, issuer, subject)) = new_user {
            for item in self.user_items(user)? {
                tx.push(Part::User, item);
            }
            tx.push(Part::User, self.identity_put(issuer, subject, user.id)?);
        }
        match self.commit(tx, m.tenant_id, None, &[audit]).await? {
            Ok(()) => Ok(InvitationAccept::Accepted),
            Err(r) if r.has(Part::Invitation) => Ok(InvitationAccept::Gone),
            Err(r) if r.has(Part::Caller) => Ok(InvitationAccept::InviterNotAdmin),
            Err(r) if r.has(Part::NewMember) => Ok(InvitationAccept::AlreadyMember),
            Err(r) if r.has(Part::Tenant) => Ok(InvitationAccept::TenantGone),
            Err(r) if r.has(Part::User) => Ok(InvitationAccept::UserTaken),
            Err(r) => Err(r.unexplained("accept_invitation").into()),
        }
    }
}
