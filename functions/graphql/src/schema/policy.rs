//! The tenant's key policy: `key_policy` and `set_key_policy`.

use apikeys_core::policy::LeakAction;
use apikeys_service::{PolicyChange, PolicyView};
use juniper::{GraphQLEnum, GraphQLInputObject, GraphQLObject};

/// What a leak report (secret scanning) does to a key of the tenant.
#[derive(Clone, Copy, Debug, GraphQLEnum, PartialEq, Eq)]
#[graphql(name = "leak_action")]
pub enum LeakActionValue {
    /// Revoked at once (the default).
    #[graphql(name = "REVOKE")]
    Revoke,
    /// Kept working, marked leaked and recorded.
    #[graphql(name = "NOTIFY")]
    Notify,
}

impl From<LeakActionValue> for LeakAction {
    fn from(v: LeakActionValue) -> Self {
        match v {
            LeakActionValue::Revoke => LeakAction::Revoke,
            LeakActionValue::Notify => LeakAction::Notify,
        }
    }
}

impl From<LeakAction> for LeakActionValue {
    fn from(v: LeakAction) -> Self {
        match v {
            LeakAction::Revoke => LeakActionValue::Revoke,
            LeakAction::Notify => LeakActionValue::Notify,
        }
    }
}

#[derive(GraphQLInputObject)]
#[graphql(name = "set_key_policy_input", rename_all = "none")]
pub struct SetKeyPolicyInput {
    /// The longest a person's key may live, in days (1 to 366; null: no
    /// limit). Keys made before that live longer are refused from then on.
    pub max_user_key_days: Option<i32>,
    /// The longest a service account's key may live, in days.
    pub max_service_key_days: Option<i32>,
    /// Every key must carry scopes (null: false).
    pub scopes_required: Option<bool>,
    /// Every key of the tenant may be used only from these networks
    /// (IPv4/IPv6 addresses or CIDRs, at most 64; null or empty: anywhere).
    pub allowed_networks: Option<Vec<String>>,
    /// What a leak report does to a key (null: REVOKE).
    pub leak_action: Option<LeakActionValue>,
}

impl From<SetKeyPolicyInput> for PolicyChange {
    fn from(input: SetKeyPolicyInput) -> Self {
        Self {
            max_user_key_days: input.max_user_key_days.map(i64::from),
            max_service_key_days: input.max_service_key_days.map(i64::from),
            scopes_required: input.scopes_required.unwrap_or(false),
            allowed_networks: input.allowed_networks.unwrap_or_default(),
            leak_action: input.leak_action.map_or(LeakAction::Revoke, Into::into),
        }
    }
}

/// The rules every key of the tenant must meet, at creation and at every use.
#[derive(GraphQLObject)]
#[graphql(name = "key_policy", rename_all = "none")]
pub struct KeyPolicyObject {
    pub max_user_key_days: Option<i32>,
    pub max_service_key_days: Option<i32>,
    pub scopes_required: bool,
    pub allowed_networks: Vec<String>,
    pub leak_action: LeakActionValue,
    /// Every key of the tenant carries this policy (false only while a
    /// change is being applied, or after one failed part way: setting the
    /// same policy again finishes it).
    pub applied: bool,
}

impl From<PolicyView> for KeyPolicyObject {
    fn from(view: PolicyView) -> Self {
        let days = |d: Option<u32>| d.and_then(|d| i32::try_from(d).ok());
        Self {
            max_user_key_days: days(view.policy.max_user_key_days),
            max_service_key_days: days(view.policy.max_service_key_days),
            scopes_required: view.policy.scopes_required,
            allowed_networks: view
                .policy
                .networks
                .iter()
                .map(ToString::to_string)
                .collect(),
            leak_action: view.policy.leak_action.into(),
            applied: view.applied,
        }
    }
}
