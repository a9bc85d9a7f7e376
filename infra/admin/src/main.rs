//! apikeys-admin: the operator's CLI (AWS credentials, not the public API).
//! Creates tables locally, tenants with their first admin, members and keys.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use apikeys_core::clock::SystemClock;
use apikeys_core::domain::{ApiKey, Role};
use apikeys_service::config::Config;
use apikeys_service::operator::NewUser;
use apikeys_service::ApiKeys;
use apikeys_service::KeyRequest;
use apikeys_store::Store;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "apikeys-admin",
    version,
    about = "Operator commands for apikeys: tables, tenants, members and keys.",
    after_help = "Talks to DynamoDB with your AWS credentials (or DYNAMODB_ENDPOINT for a local one).\nSecrets are printed once: store them right away."
)]
struct Cli {
    /// DynamoDB table holding apikeys' items.
    #[arg(long, env = "TABLE_NAME", global = true)]
    table: Option<String>,
    /// Endpoint of a local DynamoDB, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "DYNAMODB_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the table(s) from template.yaml's definitions, if missing.
    CreateTables {
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
    },
    /// Create a tenant with its first admin user and print that user's first key.
    CreateTenant {
        /// Display name, e.g. "Acme Inc".
        #[arg(long)]
        name: String,
        /// Unique URL-safe handle, e.g. acme.
        #[arg(long)]
        slug: String,
        /// The first admin's username (created if new).
        #[arg(long)]
        admin: String,
        #[arg(long)]
        admin_email: Option<String>,
        /// Name of the admin's first key.
        #[arg(long, default_value = "first key")]
        key_name: String,
    },
    /// Add a user (created if new) to a tenant with a role.
    AddUser {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
    },
    /// Invite a person by email to a tenant: they accept after signing in
    /// with the identity provider (with that email verified), so a first
    /// admin is seeded without anyone handling a key.
    Invite {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value_t = RoleArg::User)]
        role: RoleArg,
    },
    /// Issue a key to a member of a tenant and print it (e.g. their first key).
    IssueKey {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "issued by operator")]
        name: String,
        /// Expiry, RFC 3339 (e.g. 2031-01-02T03:04:05Z); never by default.
        #[arg(long)]
        expires_at: Option<String>,
        /// The most the key may do (it acts with the lower of this and the
        /// member's role); the member's role by default.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// A network the key may be used from (an address or CIDR; repeat
        /// for several; any by default).
        #[arg(long = "network")]
        networks: Vec<String>,
        /// A scope the key carries, `resource:action` (repeat for several;
        /// not limited by scopes by default).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Set a tenant's key policy (every rule given; a rule left out is no
    /// rule): acknowledged once every key of the tenant carries it.
    SetPolicy {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The longest a person's key may live, in days (1 to 366).
        #[arg(long)]
        max_user_key_days: Option<i64>,
        /// The longest a service account's key may live, in days (1 to 366).
        #[arg(long)]
        max_service_key_days: Option<i64>,
        /// Every key must carry scopes.
        #[arg(long)]
        scopes_required: bool,
        /// A network every key of the tenant may be used from (repeat for
        /// several; anywhere by default).
        #[arg(long = "network")]
        networks: Vec<String>,
        /// What a leak report (secret scanning) does to a key: revoke it
        /// (the default) or notify only.
        #[arg(long, value_enum, default_value = "revoke")]
        leak_action: LeakArg,
    },
    /// Print a tenant's key policy.
    ShowPolicy {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Replace a key with a new one (same name, owner and expiry); the old
    /// one keeps working for the grace period. Prints the new key once.
    RotateKey {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The key's id (as listed).
        #[arg(long)]
        key_id: Uuid,
        /// Seconds the old key keeps working (0, the default: none; at most 604800).
        #[arg(long, default_value_t = 0)]
        grace_seconds: i64,
    },
    /// Print a tenant's audit log, newest first.
    Audit {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Records to print (1 to 100).
        #[arg(long, default_value_t = 50)]
        limit: i32,
        /// Only records older than this cursor (the last one printed).
        #[arg(long)]
        before: Option<String>,
    },
    /// Remove expired keys now: what the scheduled sweeper Lambda does.
    Sweep,
    /// Check a tenant's counters, leases and keys against what the table
    /// holds (after items were deleted outside the service: TTL, a hand
    /// edit, a restore). A dry run unless --apply.
    Repair {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Set right what the check finds (each write conditioned on what it read).
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::enum_variant_names)]
enum RoleArg {
    TenantAdmin,
    User,
    ReadOnlyUser,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::TenantAdmin => Role::TenantAdmin,
            RoleArg::User => Role::User,
            RoleArg::ReadOnlyUser => Role::ReadOnlyUser,
        }
    }
}

fn config(cli: &Cli) -> Result<Config> {
    let mut env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let table = cli
        .table
        .clone()
        .ok_or_else(|| anyhow!("no table: pass --table or set TABLE_NAME"))?;
    env.insert("TABLE_NAME".into(), table);
    match &cli.endpoint {
        Some(endpoint) => env.insert("DYNAMODB_ENDPOINT".into(), endpoint.clone()),
        None => env.remove("DYNAMODB_ENDPOINT"),
    };
    Ok(Config::from_map(&env)?)
}

/// The operator's client: aws-config's full chain (profiles, SSO, roles).
async fn client(config: &Config) -> Result<aws_sdk_dynamodb::Client> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(apikeys_platform::https::https_client()?);
    if let Some(endpoint) = &config.store.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    // Say what is missing in one line, before the SDK's own account of every
    // provider it tried (IMDS among them) reaches the operator.
    if shared.region().is_none() {
        return Err(anyhow!(
            "no AWS region: set AWS_REGION (or AWS_PROFILE naming a profile with a region)"
        ));
    }
    let no_credentials = || {
        anyhow!(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
             (aws configure / aws sso login); for a local DynamoDB any values do, with \
             --endpoint or DYNAMODB_ENDPOINT"
        )
    };
    let provider = shared.credentials_provider().ok_or_else(no_credentials)?;
    let found = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        aws_sdk_dynamodb::config::ProvideCredentials::provide_credentials(&provider),
    )
    .await;
    if !matches!(found, Ok(Ok(_))) {
        return Err(no_credentials());
    }
    let sdk = aws_sdk_dynamodb::config::Builder::from(&shared);
    Ok(aws_sdk_dynamodb::Client::from_conf(
        apikeys_store::with_limits(sdk, &config.store).build(),
    ))
}

fn key_json(key: &ApiKey, secret: &str) -> serde_json::Value {
    json!({
        "id": key.id,
        "name": key.name,
        "user_id": key.owner_id,
        "tenant_id": key.tenant_id,
        "expires_at": key.expires_at.and_then(|t| t.format(&Rfc3339).ok()),
        "key": secret,
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LeakArg {
    Revoke,
    Notify,
}

fn print_policy(json: bool, tenant: &str, view: &apikeys_service::PolicyView) {
    let p = &view.policy;
    let networks: Vec<String> = p.networks.iter().map(ToString::to_string).collect();
    if json {
        println!(
            "{}",
            json!({
                "tenant": tenant,
                "max_user_key_days": p.max_user_key_days,
                "max_service_key_days": p.max_service_key_days,
                "scopes_required": p.scopes_required,
                "allowed_networks": networks,
                "leak_action": p.leak_action.name(),
                "applied": view.applied,
            })
        );
        return;
    }
    let days = |d: Option<u32>| d.map_or_else(|| "no limit".to_string(), |d| format!("{d} days"));
    println!("key policy of {tenant}:");
    println!(
        "  people's keys live at most:           {}",
        days(p.max_user_key_days)
    );
    println!(
        "  service accounts' keys live at most:  {}",
        days(p.max_service_key_days)
    );
    println!(
        "  scopes required:                      {}",
        if p.scopes_required { "yes" } else { "no" }
    );
    println!(
        "  networks:                             {}",
        if networks.is_empty() {
            "any".to_string()
        } else {
            networks.join(", ")
        }
    );
    println!(
        "  a leaked key is:                      {}",
        match p.leak_action {
            apikeys_core::policy::LeakAction::Revoke => "revoked",
            apikeys_core::policy::LeakAction::Notify => "reported only",
        }
    );
    if !view.applied {
        println!("  not yet on every key: set it again to finish");
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = config(&cli)?;
    if let Command::CreateTables { template } = &cli.command {
        let text = std::fs::read_to_string(template)
            .with_context(|| format!("reading {}", template.display()))?;
        let spec = apikeys_admin::tables::table_spec(&text, apikeys_admin::tables::KEYS_TABLE)?;
        let client = client(&config).await?;
        let created =
            apikeys_admin::tables::create_table(&client, &config.store.table_name, &spec).await?;
        if cli.json {
            println!(
                "{}",
                json!({"table": config.store.table_name, "created": created})
            );
        } else if created {
            println!("created table {}", config.store.table_name);
        } else {
            println!("table {} exists already", config.store.table_name);
        }
        return Ok(());
    }
    let store = Store::new(client(&config).await?, config.store.table_name.clone());
    if let Command::Sweep = &cli.command {
        let sweeper = apikeys_service::sweep::Sweeper::new(store)
            .with_audit_retention(config.audit_retention);
        let report = sweeper.sweep(OffsetDateTime::now_utc(), None).await?;
        if cli.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "swept {} expired keys ({} skipped, {} failed) in {} ms; {} pages, next sweep starts at {}",
                report.swept, report.skipped, report.failed, report.duration_ms, report.pages, report.checkpoint
            );
        }
        return Ok(());
    }
    let service = ApiKeys::new(store, Arc::new(SystemClock), config);
    match cli.command {
        Command::CreateTables { .. } | Command::Sweep => unreachable!("handled above"),
        Command::CreateTenant {
            name,
            slug,
            admin,
            admin_email,
            key_name,
        } => {
            let user = NewUser {
                username: &admin,
                email: admin_email.as_deref(),
            };
            let made = service.create_tenant(&name, &slug, user, &key_name).await?;
            let secret = made.secret.expose_secret();
            if cli.json {
                let out = json!({
                    "tenant": {"id": made.tenant.id, "name": made.tenant.name, "slug": made.tenant.slug},
                    "user": {"id": made.admin.user_id, "username": made.admin.username,
                             "membership_id": made.admin.id, "role": made.admin.role.name()},
                    "key": key_json(&made.key, secret),
                });
                println!("{out}");
            } else {
                println!(
                    "Tenant '{}' ({}) created: {}",
                    made.tenant.name, made.tenant.slug, made.tenant.id
                );
                println!(
                    "Admin user '{}': {}",
                    made.admin.username, made.admin.user_id
                );
                println!("API key (shown once, store it now):\n{secret}");
            }
        }
        Command::AddUser {
            tenant,
            username,
            email,
            role,
        } => {
            let user = NewUser {
                username: &username,
                email: email.as_deref(),
            };
            let member = service.add_member(&tenant, user, role.into()).await?;
            if cli.json {
                let out = json!({"user_id": member.user_id, "username": member.username,
                    "membership_id": member.id, "tenant_id": member.tenant_id,
                    "role": member.role.name()});
                println!("{out}");
            } else {
                println!(
                    "User '{}' ({}) added to '{tenant}' as {}",
                    member.username,
                    member.user_id,
                    member.role.name()
                );
            }
        }
        Command::Invite {
            tenant,
            email,
            role,
        } => {
            let made = service
                .operator_invite(&tenant, &email, role.into())
                .await?;
            let until = made
                .expires_at
                .format(&time::format_description::well_known::Rfc3339)?;
            if cli.json {
                let out = json!({"invitation_id": made.id, "tenant_id": made.tenant_id,
                    "email": made.email, "role": made.role.name(), "expires_at": until});
                println!("{out}");
            } else {
                println!(
                    "Invited {} to '{tenant}' as {} (invitation {}, until {until}): they sign in \
                     with the identity provider and accept it",
                    made.email,
                    made.role.name(),
                    made.id
                );
            }
        }
        Command::IssueKey {
            tenant,
            username,
            name,
            expires_at,
            role,
            networks,
            scopes,
        } => {
            let allowed_networks =
                apikeys_core::domain::parse_networks(&networks).map_err(|e| anyhow::anyhow!(e))?;
            let scopes = if scopes.is_empty() {
                Vec::new()
            } else {
                apikeys_core::policy::parse_scopes(&scopes).map_err(|e| anyhow::anyhow!(e))?
            };
            let expires_at = expires_at
                .map(|t| {
                    OffsetDateTime::parse(&t, &Rfc3339)
                        .with_context(|| format!("--expires-at {t:?} is not RFC 3339"))
                })
                .transpose()?;
            let request = KeyRequest {
                name: &name,
                expires_at,
                role_ceiling: role.map(Role::from),
                allowed_networks,
                scopes,
            };
            let (key, secret) = service.issue_key(&tenant, &username, request).await?;
            print_new_key(cli.json, &key, secret.expose_secret(), &tenant, &username);
        }
        Command::SetPolicy {
            tenant,
            max_user_key_days,
            max_service_key_days,
            scopes_required,
            networks,
            leak_action,
        } => {
            let change = apikeys_service::PolicyChange {
                max_user_key_days,
                max_service_key_days,
                scopes_required,
                allowed_networks: networks,
                leak_action: match leak_action {
                    LeakArg::Revoke => apikeys_core::policy::LeakAction::Revoke,
                    LeakArg::Notify => apikeys_core::policy::LeakAction::Notify,
                },
            };
            let view = service.set_key_policy_as_operator(&tenant, &change).await?;
            print_policy(cli.json, &tenant, &view);
        }
        Command::ShowPolicy { tenant } => {
            let view = service.key_policy_as_operator(&tenant).await?;
            print_policy(cli.json, &tenant, &view);
        }
        Command::RotateKey {
            tenant,
            key_id,
            grace_seconds,
        } => {
            let rotated = service
                .rotate_key_as_operator(&tenant, key_id, Some(grace_seconds))
                .await?;
            let old_until = rotated.old_key_expires_at.format(&Rfc3339)?;
            if cli.json {
                let mut answer = key_json(&rotated.key, rotated.secret.expose_secret());
                answer["rotated_from"] = json!(key_id);
                answer["old_key_expires_at"] = json!(old_until);
                println!("{answer}");
            } else {
                println!(
                    "Key '{}' ({}) replaces {key_id} in '{tenant}'; the old key works until {old_until}",
                    rotated.key.name, rotated.key.id
                );
                println!(
                    "API key (shown once, store it now):\n{}",
                    rotated.secret.expose_secret()
                );
            }
        }
        Command::Repair { tenant, apply } => {
            let findings = service.check_tenant(&tenant, apply).await?;
            if cli.json {
                let rows: Vec<_> = findings
                    .iter()
                    .map(|f| json!({"finding": f.what, "repaired": f.repaired}))
                    .collect();
                println!(
                    "{}",
                    json!({"tenant": tenant, "apply": apply, "findings": rows})
                );
            } else if findings.is_empty() {
                println!("tenant {tenant}: consistent, nothing to repair");
            } else {
                for f in &findings {
                    let state = match (apply, f.repaired) {
                        (false, _) => "would repair",
                        (true, true) => "repaired",
                        (true, false) => "not repaired (changed meanwhile, or in progress)",
                    };
                    println!("{state}: {}", f.what);
                }
                if !apply {
                    println!("dry run: nothing was changed; run again with --apply to repair");
                }
            }
        }
        Command::Audit {
            tenant,
            limit,
            before,
        } => {
            let records = service
                .audit_log_of(&tenant, limit, before.as_deref())
                .await?;
            for (record, cursor) in &records {
                let at = record.at.format(&Rfc3339)?;
                if cli.json {
                    println!(
                        "{}",
                        json!({
                            "id": record.id,
                            "cursor": cursor.as_text(),
                            "at": at,
                            "action": record.action.name(),
                            "actor_user_id": record.actor.user_id,
                            "actor_key_id": record.actor.key_id,
                            "actor_name": record.actor.name,
                            "actor_type": record.actor.account_type.map(|a| a.name()),
                            "target_type": record.target_type.name(),
                            "target_id": record.target_id,
                            "target_name": record.target_name,
                            "detail": record.detail,
                        })
                    );
                } else {
                    let who = match record.actor.account_type {
                        Some(apikeys_core::domain::AccountType::Service) => {
                            format!("service account {}", record.actor.name)
                        }
                        _ => record.actor.name.clone(),
                    };
                    let by = match record.actor.key_id {
                        Some(key) => format!("{who} (key {key})"),
                        None => who,
                    };
                    println!(
                        "{at}  {:<24} by {by}  {} {} {}{}",
                        record.action.name(),
                        record.target_type.name(),
                        record.target_id,
                        record
                            .target_name
                            .as_deref()
                            .map(|n| format!("'{n}'"))
                            .unwrap_or_default(),
                        record
                            .detail
                            .as_deref()
                            .map(|d| format!("  ({d})"))
                            .unwrap_or_default(),
                    );
                }
            }
            if !cli.json {
                match records.last() {
                    Some((_, cursor)) if records.len() == usize::try_from(limit).unwrap_or(0) => {
                        println!("more: --before {}", cursor.as_text())
                    }
                    None => println!("no records"),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn print_new_key(json: bool, key: &ApiKey, secret: &str, tenant: &str, username: &str) {
    if json {
        println!("{}", key_json(key, secret));
    } else {
        println!(
            "Key '{}' ({}) for '{username}' in '{tenant}'",
            key.name, key.id
        );
        println!("API key (shown once, store it now):\n{secret}");
    }
}
