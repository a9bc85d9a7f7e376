//! The warm-up at init: the request path run once before the first real
//! request, so that it finds warm code and a warm connection.

use std::sync::Arc;
use std::time::Duration;

use apikeys_core::domain::{AccountType, Role, Tenant};
use apikeys_core::principal::Principal;
use apikeys_core::token::NewKey;
use juniper::Variables;

use crate::app::App;
use crate::handler::handle;
use crate::schema::{Caller, Context};

impl App {
    /// What init does beyond building, unless configured not to: one request
    /// through the whole edge with a well-formed key nobody holds (the event,
    /// parsing, the cost check, the hash lookup, which opens the DynamoDB
    /// connection, TCP and TLS, and the answer), then one GraphQL execution,
    /// so the first real request runs on warm code and a warm connection.
    /// Costs one strongly consistent GetItem of an item that does not exist
    /// per cold start; bounded by two seconds, never fatal.
    pub async fn warm_up(&self) {
        if !self.service.config().warm_connection {
            return;
        }
        // An API Gateway event, parsed the way the runtime parses the real
        // ones, so that code is warm too.
        let key = NewKey::generate(&self.service.config().user_key_prefix);
        let event = WARM_UP_EVENT.replace("KEY", key.expose_secret());
        if let Ok(request) = lambda_http::request::from_str(&event) {
            let answered =
                tokio::time::timeout(Duration::from_secs(2), handle(self, request)).await;
            if answered.is_err() {
                tracing::warn!("the warm-up request took over two seconds");
            }
        }
        let context = Context::new(
            Arc::clone(&self.service),
            Caller::Member(Box::new(warm_up_principal())),
            None,
        );
        let _ = juniper::execute(
            "{ hello auth_info { role permissions } }",
            None,
            &self.schema,
            &Variables::new(),
            &context,
        )
        .await;
    }
}

/// A REST API event for the warm-up request; `KEY` is replaced by a key.
pub(crate) const WARM_UP_EVENT: &str = include_str!("warm_up_event.json");

/// A caller that exists nowhere, for executing a query that reads nothing.
pub(crate) fn warm_up_principal() -> Principal {
    let nil = uuid::Uuid::nil();
    Principal {
        user_id: nil,
        tenant_id: nil,
        api_key_id: nil,
        username: String::new(),
        account_type: AccountType::User,
        role: Role::ReadOnlyUser,
        membership_id: nil,
        email: None,
        tenant: Tenant {
            id: nil,
            name: String::new(),
            slug: String::new(),
            created: time::OffsetDateTime::UNIX_EPOCH,
        },
        key_last_used: None,
        key_replaced: false,
        key_ceiling: None,
        key_networks: Vec::new(),
        key_scopes: Vec::new(),
        key_created: None,
        key_expires_at: None,
        policy: apikeys_core::policy::KeyPolicy::default(),
        session: None,
    }
}
