//! Least privilege beyond the role: a key's scopes (what it may do on the
//! platform's other APIs, and on this one), and a tenant's key policy (the
//! rules every key of the tenant must meet, at creation and at every use).
//! Pure functions: the store copies what they need onto the item that
//! authentication reads.

use time::OffsetDateTime;

use crate::domain::{network_allows, AccountType};

/// The most scopes one key may carry.
pub const MAX_KEY_SCOPES: usize = 32;
/// The longest scope, in bytes (all ASCII).
pub const MAX_SCOPE_LEN: usize = 64;

/// The scope that lets a scoped key read through this service's own API.
pub const SCOPE_APIKEYS_READ: &str = "apikeys:read";
/// The scope that lets a scoped key change things through this service's
/// own API (within its role); it also grants reading.
pub const SCOPE_APIKEYS_WRITE: &str = "apikeys:write";

/// One part of a scope: a lower-case letter, then up to 40 lower-case
/// letters, digits, `_`, `-` or `.`.
fn valid_part(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some('a'..='z'))
        && part.len() <= 41
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
}

/// Checks one scope: `resource:action` (each part as [`valid_part`]), or
/// `resource:*` for every action on the resource.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    let shown: String = scope.chars().take(MAX_SCOPE_LEN).collect();
    let shown = shown.escape_debug();
    if scope.len() > MAX_SCOPE_LEN {
        return Err(format!(
            "scope \"{shown}…\" is longer than {MAX_SCOPE_LEN} characters"
        ));
    }
    let Some((resource, action)) = scope.split_once(':') else {
        return Err(format!(
            "scope \"{shown}\" is not of the form resource:action (e.g. orders:read)"
        ));
    };
    if !valid_part(resource) || !(action == "*" || valid_part(action)) {
        return Err(format!(
            "scope \"{shown}\" is not of the form resource:action: each part starts with a \
             lower-case letter and holds only a-z, 0-9, '_', '-' and '.'; the action may be '*'"
        ));
    }
    Ok(())
}

/// Reads a key's scopes: each checked ([`validate_scope`]), repeats
/// dropped, sorted; at most [`MAX_KEY_SCOPES`]. An empty list is refused:
/// leaving scopes out is how a key is made without scope limits, and an
/// empty list would read as "nothing" to one person and "everything" to
/// another.
pub fn parse_scopes(given: &[String]) -> Result<Vec<String>, String> {
    if given.is_empty() {
        return Err(
            "scopes must not be empty: leave the field out for a key without scope limits".into(),
        );
    }
    if given.len() > MAX_KEY_SCOPES {
        return Err(format!("a key may carry at most {MAX_KEY_SCOPES} scopes"));
    }
    let mut scopes = Vec::with_capacity(given.len());
    for scope in given {
        let scope = scope.trim();
        validate_scope(scope)?;
        scopes.push(scope.to_string());
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// Does the scope `held` grant `needed` (a scope without a wildcard)?
pub fn scope_grants(held: &str, needed: &str) -> bool {
    if held == needed {
        return true;
    }
    match (held.split_once(':'), needed.split_once(':')) {
        (Some((resource, "*")), Some((wanted, _))) => resource == wanted,
        _ => false,
    }
}

/// Do a key's scopes grant `needed`? A key without scopes is not limited
/// by them (`true`).
pub fn scopes_grant(held: &[String], needed: &str) -> bool {
    held.is_empty() || held.iter().any(|h| scope_grants(h, needed))
}

/// The scopes a new key may carry, made by a key with the scopes `creator`
/// (empty: none): what was asked when each is granted by the creator's, the
/// creator's when nothing was asked (a scoped key never makes an unscoped
/// one), refused otherwise.
pub fn narrow_scopes(asked: &[String], creator: &[String]) -> Result<Vec<String>, String> {
    if creator.is_empty() {
        return Ok(asked.to_vec());
    }
    if asked.is_empty() {
        return Ok(creator.to_vec());
    }
    // `orders:*` asked needs `orders:*` held; `orders:read` asked needs it
    // or `orders:*`.
    let granted = |scope: &String| creator.iter().any(|c| scope_grants(c, scope));
    match asked.iter().find(|s| !granted(s)) {
        None => Ok(asked.to_vec()),
        Some(missing) => Err(format!(
            "this API key may only make keys within its own scopes, and \"{missing}\" is not \
             one of them"
        )),
    }
}

/// The longest maximum lifetime a tenant may set, in days (as GitHub's
/// organisations: 1 to 366).
pub const MAX_POLICY_DAYS: u32 = 366;
/// The most networks a tenant's allowlist may hold.
pub const MAX_TENANT_NETWORKS: usize = 64;

/// What happens to a key of the tenant reported as leaked (by secret
/// scanning): revoked at once (the default), or recorded and reported only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeakAction {
    #[default]
    Revoke,
    Notify,
}

impl LeakAction {
    pub fn name(self) -> &'static str {
        match self {
            LeakAction::Revoke => "REVOKE",
            LeakAction::Notify => "NOTIFY",
        }
    }
}

/// The rules every key of a tenant must meet, set by its human admins.
/// Checked when a key is made (a key that would break them is refused) and
/// at every use (a key made before a rule was tightened is refused, not
/// deleted, and works again when the rule is loosened).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Counts the policy's changes: what a key's copy of the policy is
    /// checked against (0: never set).
    pub generation: i64,
    /// The longest a person's key may live, in days (`None`: no limit).
    pub max_user_key_days: Option<u32>,
    /// The longest a service account's key may live, in days.
    pub max_service_key_days: Option<u32>,
    /// Every key must carry scopes.
    pub scopes_required: bool,
    /// Every key of the tenant may be used only from these networks (empty:
    /// anywhere), besides its own limits.
    pub networks: Vec<ipnet::IpNet>,
    /// What a leak report does to a key of the tenant.
    pub leak_action: LeakAction,
}

/// Which rule of the tenant's policy a key breaks: a stable code, and a
/// message that names the rule (and no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The key never expires, and the tenant limits its keys' lifetime.
    NoExpiry { max_days: u32 },
    /// The key lives longer than the tenant's limit.
    TooLong { max_days: u32 },
    /// The key carries no scopes, and the tenant requires them.
    ScopesRequired,
}

impl Violation {
    pub fn code(&self) -> &'static str {
        match self {
            Violation::NoExpiry { .. } | Violation::TooLong { .. } => "policy_max_lifetime",
            Violation::ScopesRequired => "policy_scopes_required",
        }
    }

    /// The rule, as the caller is told it.
    pub fn message(&self, owner_type: AccountType) -> String {
        let whose = match owner_type {
            AccountType::User => "people's",
            AccountType::Service => "service accounts'",
        };
        match self {
            Violation::NoExpiry { max_days } => format!(
                "this tenant's key policy limits {whose} keys to {max_days} days, and this key \
                 never expires"
            ),
            Violation::TooLong { max_days } => format!(
                "this tenant's key policy limits {whose} keys to {max_days} days, and this key \
                 lives longer"
            ),
            Violation::ScopesRequired => {
                "this tenant's key policy requires every key to carry scopes, and this key has \
                 none"
                    .into()
            }
        }
    }
}

impl KeyPolicy {
    /// The longest a key of `owner_type` may live, in days.
    pub fn max_days(&self, owner_type: AccountType) -> Option<u32> {
        match owner_type {
            AccountType::User => self.max_user_key_days,
            AccountType::Service => self.max_service_key_days,
        }
    }

    /// Does the policy set any rule?
    pub fn is_empty(&self) -> bool {
        self.max_user_key_days.is_none()
            && self.max_service_key_days.is_none()
            && !self.scopes_required
            && self.networks.is_empty()
            && self.leak_action == LeakAction::Revoke
    }

    /// The first rule a key of `owner_type`, made at `created`, expiring at
    /// `expires_at`, with `scopes`, breaks (`None`: it complies).
    pub fn violation(
        &self,
        owner_type: AccountType,
        created: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        scopes: &[String],
    ) -> Option<Violation> {
        if let Some(max_days) = self.max_days(owner_type) {
            let Some(expires_at) = expires_at else {
                return Some(Violation::NoExpiry { max_days });
            };
            let limit = time::Duration::days(i64::from(max_days));
            if created
                .checked_add(limit)
                .is_none_or(|latest| expires_at > latest)
            {
                return Some(Violation::TooLong { max_days });
            }
        }
        if self.scopes_required && scopes.is_empty() {
            return Some(Violation::ScopesRequired);
        }
        None
    }

    /// The first rule of `self` (the policy in force) that `next` loosens,
    /// by name (`None`: `next` is as strict or stricter in every rule): a
    /// lifetime limit raised or removed, scopes no longer required, an
    /// allowlist that lets in an address `self`'s did not (or none at
    /// all), leaked keys reported instead of revoked.
    pub fn loosened_by(&self, next: &KeyPolicy) -> Option<&'static str> {
        let longer = |now: Option<u32>, then: Option<u32>| match (now, then) {
            (Some(_), None) => true,
            (Some(now), Some(then)) => then > now,
            (None, _) => false,
        };
        if longer(self.max_user_key_days, next.max_user_key_days) {
            return Some("max_user_key_days");
        }
        if longer(self.max_service_key_days, next.max_service_key_days) {
            return Some("max_service_key_days");
        }
        if self.scopes_required && !next.scopes_required {
            return Some("scopes_required");
        }
        let inside = |n: &ipnet::IpNet| self.networks.iter().any(|own| own.contains(n));
        if !self.networks.is_empty()
            && (next.networks.is_empty() || !next.networks.iter().all(inside))
        {
            return Some("allowed_networks");
        }
        if self.leak_action == LeakAction::Revoke && next.leak_action == LeakAction::Notify {
            return Some("leak_action");
        }
        None
    }

    /// May any key of the tenant be used from `source`?
    pub fn allows_source(&self, source: Option<std::net::IpAddr>) -> bool {
        network_allows(&self.networks, source)
    }
}

/// Checks a maximum lifetime in days: 1 to [`MAX_POLICY_DAYS`].
pub fn check_policy_days(what: &str, days: Option<i64>) -> Result<Option<u32>, String> {
    match days {
        None => Ok(None),
        Some(d) if (1..=i64::from(MAX_POLICY_DAYS)).contains(&d) => Ok(u32::try_from(d).ok()),
        Some(_) => Err(format!(
            "{what} must be from 1 to {MAX_POLICY_DAYS} days (leave it out for no limit)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_are_checked_sorted_and_deduplicated() {
        assert_eq!(
            parse_scopes(&strings(&["orders:write", " orders:read", "orders:write"])),
            Ok(strings(&["orders:read", "orders:write"]))
        );
        assert_eq!(
            parse_scopes(&strings(&["orders:*"])),
            Ok(strings(&["orders:*"]))
        );
        assert!(parse_scopes(&[]).is_err());
        for bad in [
            "",
            "orders",
            ":read",
            "orders:",
            "Orders:read",
            "orders:Read",
            "*:*",
            "*:read",
            "orders:read:more",
            "or ders:read",
            "orders:re*d",
            "1orders:read",
            "orders:rèad",
            "orders:read\u{202e}",
            "orders:\nread",
        ] {
            assert!(parse_scopes(&strings(&[bad])).is_err(), "{bad:?}");
        }
        let long = format!("a:{}", "b".repeat(MAX_SCOPE_LEN));
        let err = parse_scopes(&[long]).unwrap_err();
        assert!(err.len() < 200, "{err}");
        let many: Vec<String> = (0..=MAX_KEY_SCOPES).map(|i| format!("r{i}:read")).collect();
        assert!(parse_scopes(&many).is_err());
        assert!(parse_scopes(&many[..MAX_KEY_SCOPES]).is_ok());
    }

    #[test]
    fn wildcards_grant_one_resource_only() {
        assert!(scope_grants("orders:*", "orders:read"));
        assert!(scope_grants("orders:read", "orders:read"));
        assert!(!scope_grants("orders:read", "orders:write"));
        assert!(!scope_grants("orders:*", "ordersx:read"));
        assert!(!scope_grants("order:*", "orders:read"));
        assert!(scopes_grant(&[], "anything:at-all"));
        assert!(!scopes_grant(&strings(&["a:b"]), "a:c"));
    }

    #[test]
    fn a_scoped_key_makes_only_keys_within_its_scopes() {
        let creator = strings(&["orders:*", "apikeys:write"]);
        assert_eq!(narrow_scopes(&[], &creator), Ok(creator.clone()));
        assert!(narrow_scopes(&strings(&["orders:read"]), &creator).is_ok());
        assert!(narrow_scopes(&strings(&["orders:*"]), &creator).is_ok());
        assert!(narrow_scopes(&strings(&["users:read"]), &creator).is_err());
        let narrow = strings(&["orders:read"]);
        assert!(narrow_scopes(&strings(&["orders:*"]), &narrow).is_err());
        assert_eq!(narrow_scopes(&narrow, &[]), Ok(narrow.clone()));
    }

    #[test]
    fn a_looser_policy_names_the_first_rule_it_loosens() {
        let nets = |v: &[&str]| v.iter().map(|n| n.parse().unwrap()).collect();
        let strict = KeyPolicy {
            generation: 3,
            max_user_key_days: Some(30),
            max_service_key_days: Some(7),
            scopes_required: true,
            networks: nets(&["10.0.0.0/8"]),
            leak_action: LeakAction::Revoke,
        };
        assert_eq!(strict.loosened_by(&strict), None);
        let tighter = KeyPolicy {
            max_user_key_days: Some(1),
            networks: nets(&["10.1.0.0/16"]),
            ..strict.clone()
        };
        assert_eq!(strict.loosened_by(&tighter), None);
        let cases: [(KeyPolicy, &str); 7] = [
            (
                KeyPolicy {
                    max_user_key_days: Some(31),
                    ..strict.clone()
                },
                "max_user_key_days",
            ),
            (
                KeyPolicy {
                    max_user_key_days: None,
                    ..strict.clone()
                },
                "max_user_key_days",
            ),
            (
                KeyPolicy {
                    max_service_key_days: None,
                    ..strict.clone()
                },
                "max_service_key_days",
            ),
            (
                KeyPolicy {
                    scopes_required: false,
                    ..strict.clone()
                },
                "scopes_required",
            ),
            (
                KeyPolicy {
                    networks: vec![],
                    ..strict.clone()
                },
                "allowed_networks",
            ),
            (
                KeyPolicy {
                    networks: nets(&["0.0.0.0/0"]),
                    ..strict.clone()
                },
                "allowed_networks",
            ),
            (
                KeyPolicy {
                    leak_action: LeakAction::Notify,
                    ..strict.clone()
                },
                "leak_action",
            ),
        ];
        for (next, rule) in cases {
            assert_eq!(strict.loosened_by(&next), Some(rule), "{next:?}");
        }
        // From no policy, every rule tightens.
        assert_eq!(KeyPolicy::default().loosened_by(&strict), None);
    }

    #[test]
    fn a_policy_judges_lifetime_and_scopes() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = time::Duration::days(1);
        let policy = KeyPolicy {
            max_user_key_days: Some(30),
            scopes_required: true,
            ..KeyPolicy::default()
        };
        let scoped = strings(&["a:b"]);
        assert_eq!(
            policy.violation(AccountType::User, t, None, &scoped),
            Some(Violation::NoExpiry { max_days: 30 })
        );
        assert_eq!(
            policy.violation(AccountType::User, t, Some(t + day * 30), &scoped),
            None
        );
        assert_eq!(
            policy.violation(
                AccountType::User,
                t,
                Some(t + day * 30 + time::Duration::SECOND),
                &scoped
            ),
            Some(Violation::TooLong { max_days: 30 })
        );
        assert_eq!(
            policy.violation(AccountType::User, t, Some(t + day), &[]),
            Some(Violation::ScopesRequired)
        );
        // The service accounts' limit is apart.
        assert_eq!(
            policy.violation(AccountType::Service, t, None, &scoped),
            None
        );
        assert!(KeyPolicy::default().is_empty());
        assert!(check_policy_days("x", Some(0)).is_err());
        assert!(check_policy_days("x", Some(367)).is_err());
        assert!(check_policy_days("x", Some(-1)).is_err());
        assert_eq!(check_policy_days("x", Some(366)), Ok(Some(366)));
    }
}
