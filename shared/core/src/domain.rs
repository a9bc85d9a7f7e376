//! Domain types: tenants, principals, roles, memberships and API keys.

use time::OffsetDateTime;
use uuid::Uuid;

/// A tenant's role. Each has a stable id, returned as `role_detail.id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    TenantAdmin,
    User,
    ReadOnlyUser,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::TenantAdmin, Role::User, Role::ReadOnlyUser];

    pub fn name(self) -> &'static str {
        match self {
            Role::TenantAdmin => "TENANT_ADMIN",
            Role::User => "USER",
            Role::ReadOnlyUser => "READ_ONLY_USER",
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Role::TenantAdmin => Uuid::from_u128(0x6f0a_3c52_7d1e_4b55_9a3e_2c1f_0000_0001),
            Role::User => Uuid::from_u128(0x6f0a_3c52_7d1e_4b55_9a3e_2c1f_0000_0002),
            Role::ReadOnlyUser => Uuid::from_u128(0x6f0a_3c52_7d1e_4b55_9a3e_2c1f_0000_0003),
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn from_id(id: Uuid) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }

    /// How much the role may do: a tenant admin more than a user, a user
    /// more than a read-only user.
    fn rank(self) -> u8 {
        match self {
            Role::ReadOnlyUser => 0,
            Role::User => 1,
            Role::TenantAdmin => 2,
        }
    }

    /// The lower of two roles.
    pub fn lower(self, other: Role) -> Role {
        if other.rank() < self.rank() {
            other
        } else {
            self
        }
    }

    /// The lower of two optional ceilings (`None`: no ceiling).
    pub fn lower_ceiling(a: Option<Role>, b: Option<Role>) -> Option<Role> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.lower(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Who acts: the caller's role in the tenant and whether it is a person
/// (what the rules of `authz` decide on; defined here so that the domain
/// depends on nothing and the rules on the domain only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    pub role: Role,
    pub account_type: AccountType,
}

impl Actor {
    pub const fn new(role: Role, account_type: AccountType) -> Self {
        Self { role, account_type }
    }
}

/// Whether a principal is a person or a service account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountType {
    User,
    Service,
}

impl AccountType {
    pub fn name(self) -> &'static str {
        match self {
            AccountType::User => "USER",
            AccountType::Service => "SERVICE",
        }
    }

    pub fn from_name(name: &str) -> Option<AccountType> {
        match name {
            "USER" => Some(AccountType::User),
            "SERVICE" => Some(AccountType::Service),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created: OffsetDateTime,
}

/// What a lease on a membership is held for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    Removing,
    ChangingRole,
    /// Setting `key_count` to the keys there (see `ApiKeys::recount`).
    Recounting,
}

impl LeaseKind {
    pub fn name(self) -> &'static str {
        match self {
            LeaseKind::Removing => "removing",
            LeaseKind::ChangingRole => "changing_role",
            LeaseKind::Recounting => "recounting",
        }
    }

    pub fn from_name(name: &str) -> Option<LeaseKind> {
        [
            LeaseKind::Removing,
            LeaseKind::ChangingRole,
            LeaseKind::Recounting,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// A member as callers see it: who, in which tenant, with which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub membership_id: Uuid,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub account_type: AccountType,
    pub role: Role,
}

/// An API key's metadata. The secret is never part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: Uuid,
    pub owner_id: Uuid,
    pub owner_type: AccountType,
    pub created: OffsetDateTime,
    pub created_by: Uuid,
    pub created_by_name: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
    pub hint: String,
    /// The key that acted when this one was made (`None`: made by the
    /// operator, or before this was recorded).
    pub created_by_key_id: Option<Uuid>,
    /// The key this one replaced in a rotation.
    pub rotated_from: Option<Uuid>,
    /// The key that replaced this one in a rotation (it works until its
    /// grace, its `expires_at`, ends).
    pub replaced_by: Option<Uuid>,
    /// When the key was last used, to the recording interval.
    pub last_used: Option<OffsetDateTime>,
    /// The most this key may do (`None`: its owner's role): it acts with
    /// the lower of this and its owner's role, at every request.
    pub role_ceiling: Option<Role>,
    /// Disabled: it fails like a revoked key until enabled again.
    pub disabled: bool,
    /// The networks the key may be used from (empty: any).
    pub allowed_networks: Vec<ipnet::IpNet>,
    /// What the key may do on the platform's APIs, as `resource:action`
    /// (empty: not limited by scopes).
    pub scopes: Vec<String>,
    /// Reported as leaked (by secret scanning) and kept working, as its
    /// tenant's leak policy says (a revoked key is gone).
    pub leaked: bool,
}

/// The most networks one key may be limited to.
pub const MAX_KEY_NETWORKS: usize = 16;

/// Reads a key's network allowlist: IPv4 and IPv6 addresses or CIDRs (an
/// address alone is its own /32 or /128), at most [`MAX_KEY_NETWORKS`].
/// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`), an IPv4-mapped
/// IPv6 network is its IPv4 network, and repeats are dropped.
pub fn parse_networks(given: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    if given.len() > MAX_KEY_NETWORKS {
        return Err(format!(
            "a key may be limited to at most {MAX_KEY_NETWORKS} networks"
        ));
    }
    let mut networks: Vec<ipnet::IpNet> = Vec::with_capacity(given.len());
    for text in given {
        let text = text.trim();
        let net = match text.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) => match text.parse::<std::net::IpAddr>() {
                Ok(addr) => ipnet::IpNet::from(addr),
                Err(_) => {
                    // Never echo more than a short prefix of odd input.
                    let shown: String = text.chars().take(48).collect();
                    return Err(format!(
                        "'{shown}' is not an IPv4 or IPv6 address or network (CIDR, e.g. \
                         203.0.113.0/24 or 2001:db8::/32)"
                    ));
                }
            },
        };
        let net = unmapped(net).trunc();
        if !networks.contains(&net) {
            networks.push(net);
        }
    }
    Ok(networks)
}

/// An IPv4-mapped IPv6 network (`::ffff:a.b.c.d/n`, n >= 96) as the IPv4
/// network it is; any other network as it is.
fn unmapped(net: ipnet::IpNet) -> ipnet::IpNet {
    if let ipnet::IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if let Some(prefix) = v6.prefix_len().checked_sub(96) {
                if let Ok(net) = ipnet::Ipv4Net::new(v4, prefix) {
                    return ipnet::IpNet::V4(net);
                }
            }
        }
    }
    net
}

/// The caller's address as API Gateway writes it in a request context
/// (`sourceIp`); a `/32`-style suffix (as `sam local generate-event`
/// writes) is dropped. `None` for anything that is not one address.
pub fn parse_source_ip(text: &str) -> Option<std::net::IpAddr> {
    let address = text.split('/').next().unwrap_or(text);
    address.trim().parse().ok()
}

/// May a key limited to `networks` be used from `source`? Any source when
/// the list is empty; none when the source is not known.
pub fn network_allows(networks: &[ipnet::IpNet], source: Option<std::net::IpAddr>) -> bool {
    if networks.is_empty() {
        return true;
    }
    let Some(source) = source else {
        return false;
    };
    let source = match source {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, std::net::IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|net| net.contains(&source))
}

/// The networks a new key may be limited to, made by a key limited to
/// `creator` (empty: none): what was asked when it is within the
/// creator's, the creator's when nothing was asked (a limited key never
/// makes an unlimited one), refused otherwise.
pub fn narrow_networks(
    asked: &[ipnet::IpNet],
    creator: &[ipnet::IpNet],
) -> Result<Vec<ipnet::IpNet>, String> {
    if creator.is_empty() {
        return Ok(asked.to_vec());
    }
    if asked.is_empty() {
        return Ok(creator.to_vec());
    }
    if asked
        .iter()
        .all(|net| creator.iter().any(|c| c.contains(net)))
    {
        return Ok(asked.to_vec());
    }
    Err("a key limited to networks may only make keys limited to networks within its own".into())
}

/// An email address of the plain form this service matches people by:
/// trimmed and lowercased, ASCII, exactly one `@`, a local part of at most
/// 64 of the characters RFC 5322 allows unquoted, a dotted domain of
/// labels of letters, digits and inner hyphens, at most 254 in all.
/// `None` for anything else (two `@`, a line break, a look-alike letter):
/// an address is never read as the text after its last `@`.
pub fn plain_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_ascii_lowercase();
    if email.len() > 254 || !email.is_ascii() {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    (local_ok && domain_ok).then_some(email)
}

/// Checks a display name: 1 to 255 characters, no control characters.
/// Characters that reorder the text around them or show nothing: Unicode's
/// Default_Ignorable_Code_Point set (bidirectional embeddings, overrides,
/// isolates and marks; zero-width space and joiners; word joiner and
/// invisible operators; the byte order mark; soft hyphen; variation
/// selectors; Hangul fillers; tag characters), the other format characters
/// (Cf: prepended concatenation marks, interlinear annotation), the line and
/// paragraph separators, and the braille blank. In a name they reverse a
/// page's own text, hide text, or make one name look like another.
pub fn is_invisible_or_reordering(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// A name as compared with another for "is it the same name": case,
/// compatibility forms (fullwidth letters), composition (NFKC), white space
/// and invisible characters do not count.
pub fn folded_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfkc()
        .flat_map(char::to_lowercase)
        .filter(|c| !c.is_whitespace() && !is_invisible_or_reordering(*c))
        .collect()
}

pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > 255 {
        return Err(format!("{what} must be 1 to 255 characters long"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    if name.chars().any(is_invisible_or_reordering) {
        return Err(format!(
            "{what} must not contain invisible or text-direction characters \
             (bidirectional controls, zero-width characters)"
        ));
    }
    if name.trim().is_empty() {
        return Err(format!("{what} must not be blank"));
    }
    Ok(())
}

/// Checks a tenant slug: 1 to 64 of `a-z`, `0-9` and `-`, not starting with `-`.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && !slug.starts_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("slug must be 1 to 64 characters of a-z, 0-9 and '-', not starting with '-'".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ids_and_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_id(role.id()), Some(role));
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
    }

    #[test]
    fn names_are_one_to_255_characters_without_control_characters() {
        assert!(validate_name("name", "ci").is_ok());
        assert!(validate_name("name", &"é".repeat(255)).is_ok());
        assert!(validate_name("name", "").is_err());
        assert!(validate_name("name", "   ").is_err());
        assert!(validate_name("name", &"x".repeat(256)).is_err());
        assert!(validate_name("name", "a\nb").is_err());
        assert!(validate_name("name", "a\u{7f}b").is_err());
    }

    #[test]
    fn names_with_direction_or_invisible_characters_are_refused() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}',
            '\u{200E}', '\u{200F}', '\u{061C}', '\u{00AD}',
        ] {
            let err = validate_name("name", &format!("ci{c}bot")).unwrap_err();
            assert!(err.contains("text-direction"), "{c:?}: {err}");
        }
        for c in [
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{2800}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{034F}',
            '\u{FE0F}',
            '\u{180B}',
            '\u{206A}',
            '\u{2065}',
            '\u{17B4}',
            '\u{2028}',
            '\u{2029}',
            '\u{FFF9}',
            '\u{1D173}',
            '\u{1BCA0}',
        ] {
            assert!(
                validate_name("name", &format!("ci{c}bot")).is_err(),
                "{c:?}"
            );
        }
        assert_eq!(folded_name(" Ｂob\u{a0}"), "bob");
        assert_eq!(folded_name("jose\u{301}"), folded_name("josé"));
        // Letters of right-to-left scripts and emoji (with their joiner-free
        // forms) stay welcome.
        assert!(validate_name("name", "מפתח CI").is_ok());
        assert!(validate_name("name", "مفتاح").is_ok());
        assert!(validate_name("name", "deploy 🚀").is_ok());
    }
}

#[cfg(test)]
mod email_tests {
    use super::plain_email;

    #[test]
    fn an_email_is_read_whole_and_strictly() {
        assert_eq!(
            plain_email(" Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(
            plain_email("a.b+c@mail.example.org").as_deref(),
            Some("a.b+c@mail.example.org")
        );
        for bad in [
            "x@evil.com@example.com",
            "x@evil.com\n@example.com",
            "x@evil.com\r\n@example.com",
            "x@example",
            "@example.com",
            "x@",
            "x@-example.com",
            "x@example-.com",
            "x@exa_mple.com",
            "x y@example.com",
            "\u{212a}elvin@example.com",
            "x@example..com",
            "",
        ] {
            assert_eq!(plain_email(bad), None, "{bad:?}");
        }
        assert_eq!(
            plain_email(&format!("{}@example.com", "a".repeat(65))),
            None
        );
    }
}

#[cfg(test)]
mod network_tests {
    use super::*;
    use std::net::IpAddr;

    fn nets(given: &[&str]) -> Result<Vec<String>, String> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        parse_networks(&given).map(|n| n.iter().map(ToString::to_string).collect())
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn networks_are_read_normalised() {
        assert_eq!(
            nets(&["203.0.113.7", "10.1.2.3/8", "2001:db8::1/32", "::1"]).unwrap(),
            ["203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"]
        );
        // An IPv4-mapped network is the IPv4 network; repeats go.
        assert_eq!(
            nets(&["::ffff:192.0.2.0/120", "192.0.2.0/24"]).unwrap(),
            ["192.0.2.0/24"]
        );
        assert_eq!(nets(&["0.0.0.0/0"]).unwrap(), ["0.0.0.0/0"]);
        assert!(nets(&[]).unwrap().is_empty());
    }

    #[test]
    fn odd_networks_are_refused() {
        for odd in [
            "10.0.0.0/33",
            "::/129",
            "garbage",
            "10.0.0",
            "",
            "10.0.0.0/-1",
            "1.2.3.4/8/8",
            "fe80::1%eth0",
        ] {
            assert!(nets(&[odd]).is_err(), "{odd}");
        }
        let long = "x".repeat(10_000);
        let err = nets(&[&long]).unwrap_err();
        assert!(err.len() < 200, "the message repeats the input");
        let many: Vec<String> = (0..17).map(|i| format!("10.0.{i}.0/24")).collect();
        assert!(parse_networks(&many).is_err());
    }

    #[test]
    fn a_source_is_allowed_only_from_its_networks() {
        let limited = parse_networks(&["203.0.113.0/24".into(), "2001:db8::/32".into()]).unwrap();
        assert!(network_allows(&limited, ip("203.0.113.9")));
        assert!(network_allows(&limited, ip("::ffff:203.0.113.9")));
        assert!(network_allows(&limited, ip("2001:db8::5")));
        assert!(!network_allows(&limited, ip("203.0.114.1")));
        assert!(!network_allows(&limited, ip("127.0.0.1")));
        assert!(!network_allows(&limited, None), "an unknown source");
        assert!(network_allows(&[], None), "no limit");
    }

    #[test]
    fn a_limited_key_makes_only_keys_within_its_networks() {
        let creator = parse_networks(&["10.0.0.0/8".into()]).unwrap();
        let inside = parse_networks(&["10.1.0.0/16".into()]).unwrap();
        let outside = parse_networks(&["192.0.2.0/24".into()]).unwrap();
        assert_eq!(narrow_networks(&inside, &creator).unwrap(), inside);
        assert_eq!(narrow_networks(&[], &creator).unwrap(), creator);
        assert!(narrow_networks(&outside, &creator).is_err());
        assert_eq!(narrow_networks(&outside, &[]).unwrap(), outside);
    }
}
