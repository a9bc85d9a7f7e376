//! Tenants: the tenant item with its counters, and the unique slug.

use super::Membership;
use apikeys_core::domain::Tenant;

use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: Tenant,
    /// USER-type members with TENANT_ADMIN: never allowed to reach zero.
    pub admin_users: u32,
    /// The version of the tenant's invitations (every new one moves it).
    pub invite_version: i64,
    /// The tenant's key policy (its networks also bind people's sessions).
    pub policy: apikeys_core::policy::KeyPolicy,
}

fn tenant_from(item: &Item) -> Result<TenantRecord> {
    let f = Fields(item);
    Ok(TenantRecord {
        tenant: Tenant {
            id: f.uuid("pk")?,
            name: f.s("name")?.to_string(),
            slug: f.s("slug")?.to_string(),
            created: f.time("created")?,
        },
        admin_users: u32::try_from(f.n("admin_users")?)
            .map_err(|_| StoreError::Corrupt(f.name(), "admin_users"))?,
        invite_version: f.opt_n("invite_v")?.unwrap_or(0),
        policy: super::policy::policy_from(&f)?,
    })
}

/// What [`Store::insert_tenant`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a refusal is an answer: read it"]
pub enum TenantInsert {
    Written,
    /// Another tenant has the slug.
    SlugTaken,
    /// The new admin user's record or username was written meanwhile.
    UserTaken,
}

impl TenantInsert {
    pub(super) fn of(outcome: Outcome) -> Result<Self> {
        match outcome {
            Ok(()) => Ok(Self::Written),
            Err(r) if r.has(Part::Slug) => Ok(Self::SlugTaken),
            Err(r) if r.has(Part::User) => Ok(Self::UserTaken),
            Err(r) => Err(r.unexplained("insert_tenant")),
        }
    }
}

impl Store {
    pub async fn tenant(&self, tenant: Uuid) -> Result<Option<TenantRecord>> {
        self.get(tenant_pk(tenant), "tenant".into())
            .await?
            .as_ref()
            .map(tenant_from)
            .transpose()
    }

    pub async fn tenant_id_by_slug(&self, slug: &str) -> Result<Option<Uuid>> {
        match self.get(format!("slug#{slug}"), "slug".into()).await? {
            Some(item) => Ok(Some(Fields(&item).uuid("tenant_id")?)),
            None => Ok(None),
        }
    }

    /// Creates a tenant, its slug, its first admin's membership and first key,
    /// and the admin user itself when `new_user` is set: all or nothing.
    pub async fn insert_tenant(
        &self,
        tenant: &Tenant,
        admin: &Membership,
        new_user: Option<&UserRecord>,
        first_key: &StoredKey,
        audits: &[&apikeys_core::audit::AuditRecord],
    ) -> Changed<TenantInsert> {
        let mut tenant_item = key_of(tenant_pk(tenant.id), "tenant".into());
        tenant_item.extend(values([
            ("name", s(&tenant.name)),
            ("slug", s(&tenant.slug)),
            ("created", n(tenant.created.unix_timestamp())),
            ("admin_users", n(1)),
        ]));
        let mut slug_item = key_of(format!("slug#{}", tenant.slug), "slug".into());
        slug_item.insert("tenant_id".into(), s(tenant.id.to_string()));
        let (listing, lookup) = key_items(first_key);
        let mut tx = Tx::new();
        tx.push(Part::NewTenant, put(&self.table, tenant_item)?);
        tx.push(Part::Slug, put(&self.table, slug_item)?);
        tx.push(
            Part::NewMember,
            put(
                &self.table,
                membership_item(&Membership {
                    key_count: 1,
                    ..admin.clone()
                }),
            )?,
        );
        tx.push(Part::NewKey, put(&self.table, lookup)?);
        tx.push(Part::NewKey, put(&self.table, listing)?);
        tx.push(
            Part::Absent,
            self.user_tenant_put(admin.user_id, tenant.id, tenant.created)?,
        );
        if let Some(user) = new_user {
            for item in self.user_items(user)? {
                tx.push(Part::User, item);
            }
        }
        let outcome = self.commit(tx, tenant.id, None, audits).await?;
        Ok(TenantInsert::of(outcome)?)
    }
}
