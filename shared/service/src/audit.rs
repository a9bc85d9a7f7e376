//! Reading the audit log (its records are written by each change's own
//! transaction, see `apikeys_core::audit`).

use crate::error::{Error, Result};
use apikeys_core::audit::{AuditCursor, AuditRecord};
use apikeys_core::authz::{authorize, Action, Target};
use apikeys_core::principal::Principal;

use super::ApiKeys;

/// Records one page holds when the caller does not say.
pub const AUDIT_PAGE_DEFAULT: i32 = 50;
/// The most records one page holds.
pub const AUDIT_PAGE_MAX: i32 = 100;

/// A `before` cursor as a client sent it back.
fn cursor(before: Option<&str>) -> Result<Option<AuditCursor>> {
    before
        .map(|text| {
            AuditCursor::parse(text).ok_or_else(|| {
                Error::BadInput("before must be the cursor of an audit_log record".into())
            })
        })
        .transpose()
}

impl ApiKeys {
    /// The caller's tenant's log, newest first: up to `limit` records older
    /// than `before` (the cursor of a record of the previous page). Tenant
    /// admins only; never another tenant's (the partition is the caller's).
    pub async fn audit_log(
        &self,
        p: &Principal,
        limit: Option<i32>,
        before: Option<&str>,
    ) -> Result<Vec<(AuditRecord, AuditCursor)>> {
        if !authorize(p.actor(), Action::ReadAuditLog, Target::Myself) {
            return Err(Error::Forbidden(
                "only a tenant admin may read the audit log".into(),
            ));
        }
        let limit = limit.unwrap_or(AUDIT_PAGE_DEFAULT);
        if !(1..=AUDIT_PAGE_MAX).contains(&limit) {
            return Err(Error::BadInput(format!(
                "limit must be from 1 to {AUDIT_PAGE_MAX}"
            )));
        }
        let before = cursor(before)?;
        Ok(self
            .store
            .audit_page(p.tenant_id, limit, before.as_ref())
            .await?)
    }

    /// The operator's view of a tenant's log (no caller to authorize).
    pub async fn audit_log_of(
        &self,
        tenant_slug: &str,
        limit: i32,
        before: Option<&str>,
    ) -> Result<Vec<(AuditRecord, AuditCursor)>> {
        let tenant = self.tenant_by_slug(tenant_slug).await?;
        let before = cursor(before)?;
        Ok(self
            .store
            .audit_page(tenant.id, limit.clamp(1, AUDIT_PAGE_MAX), before.as_ref())
            .await?)
    }
}
