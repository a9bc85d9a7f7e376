//! Sessions of people signed in with the identity provider, and the links
//! from an identity (issuer, `sub`) to a user.
//!
//! A session is a hash item like a key's (`hash#<sha256 of the access
//! token>`, `kind = session`), read by the same one strongly consistent
//! GetItem, carrying what authentication needs (the member's role and
//! tenant, copied). Each session is also listed on its membership
//! (`sess_<session id>` = `<hash> <end>`, at most [`MAX_SESSIONS`],
//! serialised by `sess_v`), so that removing the member or changing its
//! role deletes every session in its own transaction; every write of a
//! session refuses while a removal or a role change holds the member's
//! lease (and clears a lease that ran out, so its holder can no longer
//! commit with a stale list). A person in no tenant yet has no membership:
//! their sessions are listed the same way on an item of the email they
//! signed in with (the address their invitations wait for), capped alike,
//! and ended when the last invitation to it is withdrawn. Each entry
//! carries the listing's version at which it was written: the order its
//! tokens were issued in, so "the oldest ends" is exact, whatever the
//! clock's resolution.
//!
//! | pk | sk | item |
//! |----|----|------|
//! | `hash#<sha256>` | `hash` | a session (`kind = session`) |
//! | `invitee#<email>` | `sessions` | the sessions of people in no tenant yet who signed in with that (invited) email |
//! | `ident#<sha256 of issuer, sub>` | `ident` | identity -> user id |
//! | `user#<user id>` | `tenant#<tenant id>` | a person's tenants (for sign-in and the switcher) |

use aws_sdk_dynamodb::types::Delete;

use super::auth_copy::is_session;
use super::membership::sessions_from;
use super::Membership;
use apikeys_core::principal::Person;

use super::members::{NO_LEASE_HELD, REMOVE_LEASE};
use super::*;

/// The most sessions one member holds in one tenant: signing in once more
/// ends the oldest.
pub const MAX_SESSIONS: usize = 5;

/// A session's hash item, as authentication reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    /// The person, as the identity provider vouched at sign-in.
    pub person: Person,
    /// The membership the session acts in; `None`: a person who belongs
    /// to no tenant yet (it may read and accept its invitations, and
    /// nothing else).
    /// What a session in a tenant carries: the member and the tenant,
    /// copied as onto a key's hash item (rewritten by nothing: a change of
    /// role or a removal ends the session instead), and the tenant's key
    /// policy (written with the session, checked still current by its
    /// transaction, rewritten by every application of a new policy: its
    /// networks bind the session).
    pub member: Option<AuthCopy>,
    /// When the access token stops working.
    pub expires_at: OffsetDateTime,
    /// The refresh token's hash: refreshing needs it.
    pub refresh_hash: TokenHash,
    /// The last moment a refresh is accepted (the idle timeout).
    pub refresh_until: OffsetDateTime,
    /// When the session ends, whatever happens (the absolute lifetime).
    pub until: OffsetDateTime,
}

fn session_from(item: &Item) -> Result<SessionRecord> {
    let f = Fields(item);
    let member = match f.opt_uuid("tenant_id")? {
        None => None,
        Some(tenant_id) => Some(AuthCopy {
            policy: super::policy::policy_from(&f)?,
            ..super::auth_copy::copy_from(&f, tenant_id)?
        }),
    };
    Ok(SessionRecord {
        id: f.uuid("session_id")?,
        person: Person {
            issuer: f.s("issuer")?.to_string(),
            subject: f.s("subject")?.to_string(),
            email: f.opt_s("id_email")?.map(str::to_string),
            user_id: f.opt_uuid("user_id")?,
        },
        member,
        expires_at: f.time("expires_at")?,
        refresh_hash: TokenHash::from_stored(f.s("refresh_hash")?.to_string()),
        refresh_until: f.time("refresh_until")?,
        until: f.time("until")?,
    })
}

fn session_item(hash: &TokenHash, r: &SessionRecord) -> Item {
    let mut item = key_of(hash_pk(hash), "hash".into());
    item.extend(values([
        ("kind", s("session")),
        ("session_id", s(r.id.to_string())),
        ("issuer", s(&r.person.issuer)),
        ("subject", s(&r.person.subject)),
        ("expires_at", n(r.expires_at.unix_timestamp())),
        ("refresh_hash", s(r.refresh_hash.as_str())),
        ("refresh_until", n(r.refresh_until.unix_timestamp())),
        ("until", n(r.until.unix_timestamp())),
        // Deleted by DynamoDB a day after it ended.
        ("ttl", n(r.until.unix_timestamp().saturating_add(86_400))),
    ]));
    if let Some(email) = &r.person.email {
        item.insert("id_email".into(), s(email));
    }
    if let Some(user) = r.person.user_id {
        item.insert("user_id".into(), s(user.to_string()));
    }
    if let Some(m) = &r.member {
        item.insert("tenant_id".into(), s(m.tenant.id.to_string()));
        item.extend(super::auth_copy::copy_attributes(m));
        item.extend(super::policy::policy_attributes(&m.policy));
    }
    item
}

fn identity_pk(issuer: &str, subject: &str) -> String {
    // Both hashed into the key: an issuer URL and a `sub` of any length
    // make a key of one length; the item keeps them readable.
    let hash = TokenHash::of(&format!("{issuer}\n{subject}"));
    format!("ident#{}", hash.as_str())
}

/// The sessions listed on one item, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<SessionEntry>,
    pub version: i64,
}

/// Where a session is listed: its membership, or, for a person in no
/// tenant yet, the sessions item of the email they signed in with.
#[derive(Clone, Copy, Debug)]
pub enum SessionHome<'a> {
    Member(&'a Membership),
    Invitee {
        email: &'a str,
        listing: &'a Listing,
    },
}

/// The item a session is listed on, by its key alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedOn<'a> {
    /// The membership of (tenant, user).
    Member(Uuid, Uuid),
    /// The sessions item of an email.
    Invitee(&'a str),
}

impl ListedOn<'_> {
    fn pk_sk(&self) -> (String, String) {
        match self {
            ListedOn::Member(tenant, user) => (tenant_pk(*tenant), member_sk(*user)),
            ListedOn::Invitee(email) => (format!("invitee#{email}"), "sessions".into()),
        }
    }

    fn key(&self) -> Item {
        let (pk, sk) = self.pk_sk();
        key_of(pk, sk)
    }
}

fn invitee_sessions_key(email: &str) -> Item {
    ListedOn::Invitee(email).key()
}

/// What [`Store::write_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum SessionWrite {
    Written,
    /// The membership changed since it was read (its role, its sessions,
    /// a removal or a role change holding it, or it is gone): read again.
    MemberChanged,
    /// The session being replaced was ended or refreshed meanwhile.
    Replaced,
}

impl Store {
    /// A session's hash item (`None`: no such item, or a key's).
    pub async fn session_by_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>> {
        match self.get(hash_pk(hash), "hash".into()).await? {
            Some(item) if is_session(&item) => Ok(Some(session_from(&item)?)),
            _ => Ok(None),
        }
    }

    /// The user an identity is linked to.
    pub async fn identity_user(&self, issuer: &str, subject: &str) -> Result<Option<Uuid>> {
        match self
            .get(identity_pk(issuer, subject), "ident".into())
            .await?
        {
            Some(item) => Ok(Some(Fields(&item).uuid("user_id")?)),
            None => Ok(None),
        }
    }

    /// Links an identity to a user; `Ok(false)`: it is linked already.
    pub async fn link_identity(&self, issuer: &str, subject: &str, user: Uuid) -> Result<bool> {
        let mut tx = Tx::new();
        tx.push(Part::Absent, self.identity_put(issuer, subject, user)?);
        Ok(self.transact(tx).await?.is_ok())
    }

    /// The new link of an identity to a user (refused when it exists).
    pub(super) fn identity_put(
        &self,
        issuer: &str,
        subject: &str,
        user: Uuid,
    ) -> Result<TransactWriteItem> {
        let mut item = key_of(identity_pk(issuer, subject), "ident".into());
        item.extend(values([
            ("user_id", s(user.to_string())),
            ("issuer", s(issuer)),
            ("subject", s(subject)),
        ]));
        put(&self.table, item)
    }

    /// The sessions of people in no tenant who signed in with `email`.
    pub async fn invitee_sessions(&self, email: &str) -> Result<Listing> {
        let (pk, sk) = ListedOn::Invitee(email).pk_sk();
        Ok(match self.get(pk, sk).await? {
            Some(item) => {
                let (entries, version) = sessions_from(&item);
                Listing { entries, version }
            }
            None => Listing::default(),
        })
    }

    /// Adds to a withdrawal's transaction the sessions item of `email` as
    /// `listing` read it: its version moved on, only while it is still that
    /// version (so that sign-ins and other withdrawals of the same email
    /// are serialised with this one), and, with `end` (the last invitation
    /// to that email goes), every session listed there deleted.
    pub(super) fn invitee_listing_change(
        &self,
        tx: &mut Tx,
        email: &str,
        listing: &Listing,
        end: bool,
        now: OffsetDateTime,
    ) -> Result<()> {
        let mut names = vec![("#ttl".to_string(), "ttl".to_string())];
        if end {
            for (i, e) in listing.entries.iter().enumerate() {
                tx.push(
                    Part::KeyAt(i),
                    self.plain_delete(key_of(hash_pk(&e.hash), "hash".into()))?,
                );
                names.push((format!("#e{i}"), format!("sess_{}", e.id)));
            }
        }
        let removal: Vec<&str> = names.iter().skip(1).map(|(p, _)| p.as_str()).collect();
        let removal = if removal.is_empty() {
            String::new()
        } else {
            format!(" REMOVE {}", removal.join(", "))
        };
        let condition = if listing.version == 0 {
            "attribute_not_exists(sess_v) OR sess_v = :v"
        } else {
            "sess_v = :v"
        };
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                invitee_sessions_key(email),
                &format!("SET sess_v = :v1, #ttl = if_not_exists(#ttl, :ttl){removal}"),
                condition,
                values([
                    (":v", n(listing.version)),
                    (":v1", n(listing.version.saturating_add(1))),
                    // No session outlives 12 hours: nor this item, empty.
                    (":ttl", n(now.unix_timestamp().saturating_add(13 * 3600))),
                ]),
                names,
            )?,
        );
        Ok(())
    }

    /// The update that takes session `id` off the sessions item of
    /// `email` (unconditional: a session started before such listings
    /// existed is listed nowhere), moving its version on.
    pub(super) fn invitee_unlisting(&self, email: &str, id: Uuid) -> Result<TransactWriteItem> {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(invitee_sessions_key(email)))
            .update_expression("REMOVE #s ADD sess_v :one")
            .expression_attribute_names("#s", format!("sess_{id}"))
            .expression_attribute_values(":one", n(1))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The tenants a person belongs to, by the index written with each of
    /// their memberships, oldest first.
    pub async fn user_tenants(&self, user: Uuid) -> Result<Vec<Uuid>> {
        let mut found: Vec<(i64, Uuid)> = self
            .query_prefix(format!("user#{user}"), "tenant#".into())
            .await?
            .iter()
            .map(|item| {
                let f = Fields(item);
                Ok((f.opt_n("joined")?.unwrap_or(0), f.uuid("tenant_id")?))
            })
            .collect::<Result<_>>()?;
        found.sort();
        Ok(found.into_iter().map(|(_, t)| t).collect())
    }

    /// The index item of a person's membership of `tenant`.
    pub(super) fn user_tenant_put(
        &self,
        user: Uuid,
        tenant: Uuid,
        joined: OffsetDateTime,
    ) -> Result<TransactWriteItem> {
        let mut item = key_of(format!("user#{user}"), format!("tenant#{tenant}"));
        item.extend(values([
            ("tenant_id", s(tenant.to_string())),
            ("joined", n(joined.unix_timestamp())),
        ]));
        // Overwrites an index item a crash may have left (no condition).
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn user_tenant_delete(&self, user: Uuid, tenant: Uuid) -> Result<TransactWriteItem> {
        self.plain_delete(key_of(format!("user#{user}"), format!("tenant#{tenant}")))
    }

    pub(super) fn plain_delete(&self, key: Item) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .build()?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Writes a new session, listing it at `home` (its membership as read,
    /// with its role and sessions; or, for a person in no tenant, the
    /// sessions item of their email as read); ends sessions there past
    /// their end and, at [`MAX_SESSIONS`], the oldest issued; with
    /// `replacing` (a refresh, a switch of tenant: its hash, id and
    /// tenant), deletes that session in the same transaction, only while it
    /// is still there. Refused while a removal or a role change holds the
    /// member, and when the listing changed since it was read.
    pub async fn write_session(
        &self,
        home: SessionHome<'_>,
        hash: &TokenHash,
        session: &SessionRecord,
        replacing: Option<(&TokenHash, Uuid, Option<Uuid>)>,
        now: OffsetDateTime,
    ) -> Result<SessionWrite> {
        let mut tx = Tx::new();
        tx.push(Part::NewKey, put(&self.table, session_item(hash, session))?);
        let replaced_id = replacing.map(|(_, id, _)| id);
        self.list_session(&mut tx, home, hash, session, replaced_id, now)?;
        // The tenant's policy is still the one copied (a change meanwhile
        // reads the memberships again: read again).
        if let Some(member) = &session.member {
            tx.push(
                Part::Policy,
                super::policy::policy_check(
                    &self.table,
                    member.tenant.id,
                    member.policy.generation,
                )?,
            );
        }
        if let Some((old_hash, old_id, old_tenant)) = replacing {
            // Still there: of two refreshes of one session, one wins.
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(hash_pk(old_hash), "hash".into())))
                .condition_expression("attribute_exists(pk)")
                .build()?;
            tx.push(
                Part::Key,
                TransactWriteItem::builder().delete(delete).build(),
            );
            // Moved from another tenant: off that membership's listing;
            // from no tenant into one: off the email's listing.
            let old_home = match (old_tenant, session.person.user_id, &session.person.email) {
                (Some(old_tenant), Some(user), _) => Some(ListedOn::Member(old_tenant, user)),
                (None, _, Some(email)) => Some(ListedOn::Invitee(email)),
                _ => None,
            };
            let new_home = match home {
                SessionHome::Member(m) => ListedOn::Member(m.tenant_id, m.user_id),
                SessionHome::Invitee { email, .. } => ListedOn::Invitee(email),
            };
            match old_home.filter(|o| *o != new_home) {
                Some(ListedOn::Member(tenant, user)) => tx.push(
                    Part::Absent,
                    update_named(
                        &self.table,
                        key_of(tenant_pk(tenant), member_sk(user)),
                        "REMOVE #s ADD sess_v :one",
                        "attribute_exists(pk)",
                        values([(":one", n(1))]),
                        vec![("#s".into(), format!("sess_{old_id}"))],
                    )?,
                ),
                Some(ListedOn::Invitee(email)) => {
                    tx.push(Part::Absent, self.invitee_unlisting(email, old_id)?)
                }
                None => {}
            }
        }
        match self.transact(tx).await? {
            Ok(()) => Ok(SessionWrite::Written),
            Err(r) if r.has(Part::Key) => Ok(SessionWrite::Replaced),
            Err(r) if r.has(Part::Member) || r.has(Part::Policy) => Ok(SessionWrite::MemberChanged),
            Err(r) => Err(r.unexplained("write_session")),
        }
    }

    /// Lists a new session at its home (see [`Store::write_session`]).
    fn list_session(
        &self,
        tx: &mut Tx,
        home: SessionHome<'_>,
        hash: &TokenHash,
        session: &SessionRecord,
        replaced_id: Option<Uuid>,
        now: OffsetDateTime,
    ) -> Result<()> {
        let (entries, version) = match home {
            SessionHome::Member(m) => (&m.sessions, m.sessions_version),
            SessionHome::Invitee { listing, .. } => (&listing.entries, listing.version),
        };
        let mut ended: Vec<&SessionEntry> = Vec::new();
        let mut live: Vec<&SessionEntry> = entries
            .iter()
            .filter(|e| {
                if e.until <= now || Some(e.id) == replaced_id {
                    ended.push(e);
                    false
                } else {
                    true
                }
            })
            .collect();
        while live.len() >= MAX_SESSIONS {
            ended.push(live.remove(0));
        }
        let mut names = vec![("#new".to_string(), format!("sess_{}", session.id))];
        let mut remove: Vec<String> = Vec::new();
        for (i, e) in ended.iter().enumerate() {
            // The session keeps its id across a refresh: its entry is set
            // anew below, not removed.
            if e.id == session.id {
                continue;
            }
            names.push((format!("#e{i}"), format!("sess_{}", e.id)));
            remove.push(format!("#e{i}"));
            // The replaced session's own item is deleted on condition.
            if Some(e.id) != replaced_id {
                tx.push(
                    Part::KeyAt(i),
                    self.plain_delete(key_of(hash_pk(&e.hash), "hash".into()))?,
                );
            }
        }
        let version_check = if version == 0 {
            "(attribute_not_exists(sess_v) OR sess_v = :v)"
        } else {
            "sess_v = :v"
        };
        let issued = version.saturating_add(1);
        let mut vals = values([
            (
                ":entry",
                s(format!(
                    "{} {} {issued}",
                    hash.as_str(),
                    session.until.unix_timestamp()
                )),
            ),
            (":v", n(version)),
            (":v1", n(issued)),
        ]);
        let (key, removals, condition) = match home {
            SessionHome::Member(m) => {
                vals.extend(values([
                    (":role", s(m.role.name())),
                    (":now", n(now.unix_timestamp())),
                ]));
                remove.push(REMOVE_LEASE.trim_start_matches("REMOVE ").to_string());
                (
                    key_of(tenant_pk(m.tenant_id), member_sk(m.user_id)),
                    remove,
                    format!("member_role = :role AND {NO_LEASE_HELD} AND {version_check}"),
                )
            }
            SessionHome::Invitee { email, .. } => {
                // Gone by itself a day after its last session could end.
                vals.insert(
                    ":ttl".into(),
                    n(session.until.unix_timestamp().saturating_add(86_400)),
                );
                names.push(("#ttl".into(), "ttl".into()));
                (
                    invitee_sessions_key(email),
                    remove,
                    version_check.to_string(),
                )
            }
        };
        let ttl = if names.iter().any(|(p, _)| p == "#ttl") {
            ", #ttl = :ttl"
        } else {
            ""
        };
        let removal = if removals.is_empty() {
            String::new()
        } else {
            format!(" REMOVE {}", removals.join(", "))
        };
        tx.push(
            Part::Member,
            update_named(
                &self.table,
                key,
                &format!("SET #new = :entry, sess_v = :v1{ttl}{removal}"),
                &condition,
                vals,
                names,
            )?,
        );
        Ok(())
    }

    /// Ends a session: the item presented, and whatever item its listing
    /// (`listed_on`: its membership, or its email's sessions item) holds
    /// now (a refresh keeps the session's id and moves it to new tokens: a
    /// log-out that raced one still ends it) with the listing itself.
    /// `Ok(false)`: it had ended already.
    pub async fn end_session(
        &self,
        hash: &TokenHash,
        session_id: Uuid,
        listed_on: Option<ListedOn<'_>>,
    ) -> Result<bool> {
        let presented = || -> Result<TransactWriteItem> {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(hash_pk(hash), "hash".into())))
                .condition_expression("attribute_exists(pk)")
                .build()?;
            Ok(TransactWriteItem::builder().delete(delete).build())
        };
        let alone = || async {
            let mut tx = Tx::new();
            tx.push(Part::Key, presented()?);
            Ok::<bool, StoreError>(self.transact(tx).await?.is_ok())
        };
        let Some(listed_on) = listed_on else {
            return alone().await;
        };
        let name = format!("sess_{session_id}");
        for _ in 0..3 {
            let (pk, sk) = listed_on.pk_sk();
            let listed = self
                .get(pk, sk)
                .await?
                .and_then(|item| item.get(&name).and_then(|v| v.as_s().ok()).cloned());
            // Not listed (ended, or the member is gone with its listing).
            let Some(entry) = listed else {
                return alone().await;
            };
            let mut tx = Tx::new();
            tx.push(
                Part::Key,
                self.plain_delete(key_of(hash_pk(hash), "hash".into()))?,
            );
            let current = entry.split(' ').next().unwrap_or_default();
            if current != hash.as_str() {
                tx.push(
                    Part::KeyAt(0),
                    self.plain_delete(key_of(format!("hash#{current}"), "hash".into()))?,
                );
            }
            tx.push(
                Part::Member,
                update_named(
                    &self.table,
                    listed_on.key(),
                    "REMOVE #s ADD sess_v :one",
                    "#s = :entry",
                    values([(":one", n(1)), (":entry", s(entry.clone()))]),
                    vec![("#s".into(), name.clone())],
                )?,
            );
            match self.transact(tx).await? {
                Ok(()) => return Ok(true),
                // Refreshed again, or ended, meanwhile: read again.
                Err(r) if r.has(Part::Member) => continue,
                Err(r) => return Err(r.unexplained("end_session")),
            }
        }
        Err(StoreError::Transient {
            message: "the session kept changing while it was being ended".into(),
            unknown_outcome: false,
        })
    }

    /// Deletes of every session listed on `m`, for a change that ends them
    /// (a removal, a role change), with the names to remove from `m`.
    pub(super) fn session_deletes(&self, m: &Membership) -> Result<Vec<TransactWriteItem>> {
        m.sessions
            .iter()
            .map(|e| self.plain_delete(key_of(hash_pk(&e.hash), "hash".into())))
            .collect()
    }
}
