//! The function as built once per cold start: its settings (what it reads
//! of the environment beyond the service's), the service, the schema, the
//! identity provider's verifier and GitHub's keys (each built when first
//! needed), and the warm-up that runs the request path once at init.

use std::sync::Arc;

use apikeys_core::clock::SystemClock;
use apikeys_service::config::{Config, ConfigError};
use apikeys_service::ApiKeys;
use lambda_http::{Request, RequestExt};

use crate::schema::{schema, Schema};

/// What the GraphQL function reads of the environment beyond the
/// service's settings: introspection, and its own entrances (sign-in with
/// an identity provider, secret scanning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Allow schema introspection (`ENABLE_INTROSPECTION`, default false;
    /// `ENABLE_GRAPHIQL`, its former name, is still read).
    pub introspection: bool,
    /// The identity provider people sign in with; unset: keys only.
    pub oidc: Option<apikeys_idp::oidc::OidcSettings>,
    pub scanning: apikeys_idp::github::ScanningSettings,
}

impl Settings {
    pub fn from_env(env: &apikeys_platform::Env) -> Result<Self, ConfigError> {
        Ok(Self {
            introspection: env.switch("ENABLE_INTROSPECTION", false)?
                || env.switch("ENABLE_GRAPHIQL", false)?,
            oidc: apikeys_idp::oidc::OidcSettings::from_env(env)?,
            scanning: apikeys_idp::github::ScanningSettings::from_env(env),
        })
    }
}

/// Everything built once per cold start and shared by every request.
pub struct App {
    pub(crate) service: Arc<ApiKeys>,
    pub(crate) settings: Settings,
    pub(crate) schema: Schema,
    /// GitHub's secret scanning keys: their client built, and the keys
    /// fetched, when a report first needs them (never at cold start).
    pub(crate) github_keys: std::sync::OnceLock<Option<apikeys_idp::github::GithubKeys>>,
    /// The identity provider's ID-token verifier: built, and its keys
    /// fetched, when a sign-in first needs them (never at cold start).
    pub(crate) verifier: std::sync::OnceLock<Option<Arc<apikeys_idp::oidc::IdTokenVerifier>>>,
}

impl App {
    pub fn new(service: ApiKeys, settings: Settings) -> Self {
        Self {
            service: Arc::new(service),
            schema: schema(settings.introspection),
            settings,
            github_keys: std::sync::OnceLock::new(),
            verifier: std::sync::OnceLock::new(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let env = apikeys_platform::Env::from_process();
        let config = Config::from_env()?;
        let service = ApiKeys::from_config(config, Arc::new(SystemClock))?;
        Ok(Self::new(service, Settings::from_env(&env)?))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn service(&self) -> &ApiKeys {
        &self.service
    }

    /// The ID-token verifier, when an identity provider is configured
    /// (with a client id from the API Gateway stage variable the
    /// configuration names, read from the first request that needs it).
    pub(crate) fn verifier(
        &self,
        request: &Request,
    ) -> Option<Arc<apikeys_idp::oidc::IdTokenVerifier>> {
        if let Some(built) = self.verifier.get() {
            return built.clone();
        }
        let mut settings = self.settings.oidc.clone()?;
        if let Some(name) = &settings.client_stage_variable {
            let from_stage = request
                .stage_variables_ref()
                .and_then(|variables| variables.first(name))
                .filter(|c| !c.is_empty() && c.len() <= 256);
            let Some(client) = from_stage else {
                // Not remembered: a request of the stage that has it may come.
                tracing::error!(
                    variable = %name,
                    "the stage variable that holds the client id is missing: no sign-in"
                );
                return None;
            };
            settings.client_id = client.to_string();
        }
        let built = match apikeys_idp::oidc::IdTokenVerifier::new(settings) {
            Ok(verifier) => Some(Arc::new(verifier)),
            Err(e) => {
                tracing::error!(error = %e, "identity provider not usable: sign-in off");
                None
            }
        };
        self.verifier.get_or_init(|| built).clone()
    }
}
