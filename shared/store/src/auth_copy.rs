//! The authentication copy: what a hash item carries besides the key (the
//! owner's role, membership and tenant), so that one read authenticates.

use apikeys_core::domain::Tenant;
use apikeys_core::policy::KeyPolicy;

use super::*;

/// What authentication learns from a hash lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashRecord {
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub expires_at: Option<OffsetDateTime>,
    /// When the key was last recorded as used.
    pub last_used: Option<OffsetDateTime>,
    /// Replaced by a rotation: it works only until its grace ends.
    pub replaced: bool,
    /// The key's role ceiling (see [`apikeys_core::domain::ApiKey::role_ceiling`]).
    pub ceiling: Option<Role>,
    /// Disabled: it authenticates nothing until enabled.
    pub disabled: bool,
    /// Reported leaked, and kept working by its tenant's leak policy.
    pub leaked: bool,
    /// The networks the key may be used from (empty: any).
    pub networks: Vec<ipnet::IpNet>,
    /// The key's scopes (empty: not limited by scopes).
    pub scopes: Vec<String>,
    /// When the key was made (`None` on an item written before this was
    /// copied; every application of a key policy writes it).
    pub created: Option<OffsetDateTime>,
    /// The tenant's key policy as last applied to this key (generation 0:
    /// none ever was).
    pub policy: KeyPolicy,
    /// What authentication needs beyond the key, copied onto the hash item
    /// so that one read decides it; `None` on an item written before the
    /// copies existed (authentication then reads the membership too).
    pub copy: Option<AuthCopy>,
}

/// The owner's membership and tenant as copied onto each of its hash items.
/// The membership stays the source of truth: every write that changes a
/// copied value (a role change) rewrites the owner's hash items in its own
/// transaction, and a key is only written while its owner's role is still
/// the one copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthCopy {
    pub role: Role,
    pub membership_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub tenant: Tenant,
    /// The tenant's key policy the key was made under: written with a new
    /// key (whose transaction checks it is still the tenant's), and by
    /// every application of a new policy; never by a backfill (see
    /// [`policy_attributes`]).
    pub policy: KeyPolicy,
}

impl AuthCopy {
    pub fn of(owner: &apikeys_core::domain::Member, tenant: Tenant, policy: KeyPolicy) -> Self {
        Self {
            policy,
            role: owner.role,
            membership_id: owner.membership_id,
            username: owner.username.clone(),
            email: owner.email.clone(),
            tenant,
        }
    }
}

/// Marks a hash item that carries a complete [`AuthCopy`].
const COPY_VERSION: i64 = 1;

/// The attributes of an [`AuthCopy`] on a hash item.
pub(super) fn copy_attributes(copy: &AuthCopy) -> Item {
    let mut item = values([
        ("copy_v", n(COPY_VERSION)),
        ("member_role", s(copy.role.name())),
        ("membership_id", s(copy.membership_id.to_string())),
        ("username", s(&copy.username)),
        ("tenant_name", s(&copy.tenant.name)),
        ("tenant_slug", s(&copy.tenant.slug)),
        ("tenant_created", n(copy.tenant.created.unix_timestamp())),
    ]);
    if let Some(email) = &copy.email {
        item.insert("email".into(), s(email));
    }
    item
}

/// The [`AuthCopy`] an item carries (its policy left at the default: a
/// key's is read apart, see [`HashRecord::policy`]).
pub(super) fn copy_from(f: &Fields<'_>, tenant_id: Uuid) -> Result<AuthCopy> {
    Ok(AuthCopy {
        role: f.role("member_role")?,
        membership_id: f.uuid("membership_id")?,
        username: f.s("username")?.to_string(),
        email: f.opt_s("email")?.map(str::to_string),
        tenant: Tenant {
            id: tenant_id,
            name: f.s("tenant_name")?.to_string(),
            slug: f.s("tenant_slug")?.to_string(),
            created: f.time("tenant_created")?,
        },
        policy: KeyPolicy::default(),
    })
}

fn hash_record_from(item: &Item) -> Result<HashRecord> {
    let f = Fields(item);
    let tenant_id = f.uuid("tenant_id")?;
    let copy = match f.opt_n("copy_v")? {
        Some(COPY_VERSION) => Some(copy_from(&f, tenant_id)?),
        // Written before the copies, or by a version that copies more: the
        // membership decides.
        _ => None,
    };
    Ok(HashRecord {
        tenant_id,
        key_id: f.uuid("key_id")?,
        owner_id: f.uuid("owner_id")?,
        owner_type: f.account_type("owner_type")?,
        expires_at: f.opt_time("expires_at")?,
        last_used: f.opt_time("last_used")?,
        replaced: f.opt_s("replaced_by")?.is_some(),
        ceiling: f.opt_role("role_ceiling")?,
        disabled: item.contains_key("disabled_at"),
        leaked: item.contains_key("leaked_at"),
        networks: f.networks("networks")?,
        scopes: f.strings("scopes")?,
        created: f.opt_time("created")?,
        policy: policy_from(&f)?,
        copy,
    })
}

impl Store {
    /// Authentication's read: one strongly consistent GetItem.
    pub async fn key_by_hash(&self, hash: &TokenHash) -> Result<Option<HashRecord>> {
        self.get(hash_pk(hash), "hash".into())
            .await?
            .as_ref()
            // A session is no key (see `store::sessions`).
            .filter(|item| !is_session(item))
            .map(hash_record_from)
            .transpose()
    }

    /// The hash items of `hashes` (strongly consistent, a hundred a
    /// request), by hash; hashes with no item are left out.
    pub async fn keys_by_hash(&self, hashes: &[TokenHash]) -> Result<HashMap<String, HashRecord>> {
        let keys: Vec<Item> = hashes
            .iter()
            .map(|h| key_of(hash_pk(h), "hash".into()))
            .collect();
        let mut found = HashMap::with_capacity(keys.len());
        for item in self.batch_get(keys).await? {
            if is_session(&item) {
                continue;
            }
            let hash = Fields(&item)
                .s("pk")?
                .strip_prefix("hash#")
                .unwrap_or_default()
                .to_string();
            found.insert(hash, hash_record_from(&item)?);
        }
        Ok(found)
    }

    /// Writes the [`AuthCopy`] onto the hash item of a key written before the
    /// copies existed, only while the owner's membership still has the role
    /// copied (a role change in between makes this a no-op, not a stale copy).
    /// `Ok(false)`: not written (the key or the role changed meanwhile).
    pub async fn backfill_copy(
        &self,
        hash: &TokenHash,
        owner: Uuid,
        copy: &AuthCopy,
    ) -> Result<bool> {
        let attributes = copy_attributes(copy);
        let assignments: Vec<String> = attributes
            .keys()
            .enumerate()
            .map(|(i, _)| format!("#a{i} = :a{i}"))
            .collect();
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(hash_pk(hash), "hash".into())))
            .update_expression(format!("SET {}", assignments.join(", ")))
            .condition_expression("attribute_exists(pk) AND owner_id = :owner")
            .expression_attribute_values(":owner", s(owner.to_string()));
        for (i, (name, value)) in attributes.into_iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":a{i}"), value);
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key_of(tenant_pk(copy.tenant.id), member_sk(owner))))
            .condition_expression("member_role = :role")
            .expression_attribute_values(":role", s(copy.role.name()))
            .build()?;
        let mut tx = Tx::new();
        tx.push(
            Part::Key,
            TransactWriteItem::builder().update(update.build()?).build(),
        );
        tx.push(
            Part::Member,
            TransactWriteItem::builder().condition_check(check).build(),
        );
        match self.transact(tx).await? {
            Ok(()) => Ok(true),
            Err(r) if r.has(Part::Key) || r.has(Part::Member) => Ok(false),
            Err(r) => Err(r.unexplained("backfill_copy")),
        }
    }
}

/// A session's item (kind `session`), beside the hash items that carry a
/// copy of their member too.
pub(super) fn is_session(item: &Item) -> bool {
    item.get("kind")
        .and_then(|k| k.as_s().ok())
        .map(String::as_str)
        == Some("session")
}
