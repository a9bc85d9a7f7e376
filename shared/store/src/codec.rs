//! The item codec: attribute values, typed reads of an item's fields, and
//! the keys of items every aggregate uses.

use super::*;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn key_of(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

pub(super) fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Typed reads of one item's attributes, naming the item when one is wrong.
pub(super) struct Fields<'a>(pub(super) &'a Item);

impl Fields<'_> {
    pub(super) fn name(&self) -> String {
        let get = |k: &str| match self.0.get(k) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => "?".into(),
        };
        // A hash item's key is the secret's hash: never in a message or log.
        let pk = get("pk");
        let pk = if pk.starts_with("hash#") {
            "hash#…".to_string()
        } else {
            pk
        };
        format!("{pk}/{}", get("sk"))
    }

    pub(super) fn opt_s(&self, attr: &'static str) -> Result<Option<&str>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    pub(super) fn s(&self, attr: &'static str) -> Result<&str> {
        self.opt_s(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    pub(super) fn opt_n(&self, attr: &'static str) -> Result<Option<i64>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(self.name(), attr)),
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    pub(super) fn n(&self, attr: &'static str) -> Result<i64> {
        self.opt_n(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    pub(super) fn opt_uuid(&self, attr: &'static str) -> Result<Option<Uuid>> {
        self.opt_s(attr)?
            .map(|v| Uuid::parse_str(v).map_err(|_| StoreError::Corrupt(self.name(), attr)))
            .transpose()
    }

    pub(super) fn uuid(&self, attr: &'static str) -> Result<Uuid> {
        Uuid::parse_str(self.s(attr)?).map_err(|_| StoreError::Corrupt(self.name(), attr))
    }

    pub(super) fn time(&self, attr: &'static str) -> Result<OffsetDateTime> {
        self.opt_time(attr)?
            .ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    pub(super) fn opt_time(&self, attr: &'static str) -> Result<Option<OffsetDateTime>> {
        self.opt_n(attr)?
            .map(|secs| {
                OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|_| StoreError::Corrupt(self.name(), attr))
            })
            .transpose()
    }

    pub(super) fn account_type(&self, attr: &'static str) -> Result<AccountType> {
        AccountType::from_name(self.s(attr)?).ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }

    /// A string set of networks (absent: none), each as written by us.
    pub(super) fn networks(&self, attr: &'static str) -> Result<Vec<ipnet::IpNet>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(nets)) => nets
                .iter()
                .map(|n| {
                    n.parse()
                        .map_err(|_| StoreError::Corrupt(self.name(), attr))
                })
                .collect(),
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    /// A string set (absent: empty), sorted.
    pub(super) fn strings(&self, attr: &'static str) -> Result<Vec<String>> {
        match self.0.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(values)) => {
                let mut values = values.clone();
                values.sort();
                Ok(values)
            }
            Some(_) => Err(StoreError::Corrupt(self.name(), attr)),
        }
    }

    pub(super) fn opt_role(&self, attr: &'static str) -> Result<Option<Role>> {
        self.opt_s(attr)?
            .map(|v| Role::from_name(v).ok_or_else(|| StoreError::Corrupt(self.name(), attr)))
            .transpose()
    }

    pub(super) fn role(&self, attr: &'static str) -> Result<Role> {
        Role::from_name(self.s(attr)?).ok_or_else(|| StoreError::Corrupt(self.name(), attr))
    }
}

pub(super) fn tenant_pk(tenant: Uuid) -> String {
    tenant.to_string()
}

pub(super) fn member_sk(user: Uuid) -> String {
    format!("member#{user}")
}

pub(super) fn hash_pk(hash: &TokenHash) -> String {
    format!("hash#{}", hash.as_str())
}
