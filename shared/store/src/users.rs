//! People, as the operator creates them, and their unique usernames.

use super::*;

/// A person, as created by the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub created: OffsetDateTime,
}

impl Store {
    pub async fn user(&self, id: Uuid) -> Result<Option<UserRecord>> {
        match self.get(format!("user#{id}"), "user".into()).await? {
            Some(item) => {
                let f = Fields(&item);
                Ok(Some(UserRecord {
                    id: f.uuid("user_id")?,
                    username: f.s("username")?.to_string(),
                    email: f.opt_s("email")?.map(str::to_string),
                    created: f.time("created")?,
                }))
            }
            None => Ok(None),
        }
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let pointer = self
            .get(
                format!("username#{}", username.to_lowercase()),
                "username".into(),
            )
            .await?;
        match pointer {
            Some(item) => self.user(Fields(&item).uuid("user_id")?).await,
            None => Ok(None),
        }
    }

    pub(super) fn user_items(&self, user: &UserRecord) -> Result<Vec<TransactWriteItem>> {
        let mut record = key_of(format!("user#{}", user.id), "user".into());
        record.extend(values([
            ("user_id", s(user.id.to_string())),
            ("username", s(&user.username)),
            ("created", n(user.created.unix_timestamp())),
        ]));
        if let Some(email) = &user.email {
            record.insert("email".into(), s(email));
        }
        let mut pointer = key_of(
            format!("username#{}", user.username.to_lowercase()),
            "username".into(),
        );
        pointer.insert("user_id".into(), s(user.id.to_string()));
        Ok(vec![put(&self.table, record)?, put(&self.table, pointer)?])
    }
}
