//! The cost bound of a request, checked on the parsed document before anything runs.
//!
//! juniper executes a field once for every spread of a fragment that holds
//! it, so a few hundred bytes of nested fragments can ask for thousands of
//! executions. The document is therefore expanded here exactly as execution
//! expands it (each fragment analysed once and its totals reused, so the
//! analysis itself takes time linear in the document) and refused before
//! authentication's reads when it exceeds any limit in [`LIMITS`].

use std::collections::HashMap;

use juniper::{DefaultScalarValue, Definition, Operation, OperationType, Selection, Spanning};

type Selections<'a> = [Selection<'a, DefaultScalarValue>];

/// The limits of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Nesting of selection sets, fragments expanded.
    pub max_depth: u64,
    /// Field executions, counting a fragment's fields once per spread.
    pub max_fields: u64,
    /// Executions of fields that read DynamoDB (see [`STORAGE_FIELDS`]).
    pub max_storage_fields: u64,
    /// Mutation fields (each is a write) in one request.
    pub max_mutation_fields: u64,
    /// Executions of fields that read a page each time they run (see
    /// [`PAGED_FIELDS`]): not memoized, so limited to one per request.
    pub max_paged_fields: u64,
}

/// Far above any real client's document (the Prefect CLI's largest has depth
/// 3 and 4 fields), far below what costs time.
pub const LIMITS: Limits = Limits {
    max_depth: 10,
    max_fields: 500,
    max_storage_fields: 20,
    max_mutation_fields: 5,
    max_paged_fields: 1,
};

/// Fields whose resolvers read DynamoDB. Matched by name on any type, which
/// can only over-count (`tenant` is also `membership.tenant`). Each read is
/// memoized per request, so this limit bounds work, not reads.
pub const STORAGE_FIELDS: &[&str] = &[
    "tenant",
    "auth_api_key",
    "user",
    "user_view_same_tenant",
    "audit_log",
    "key_policy",
    "membership_invitation",
    "my_tenants",
];

/// The limits of a document that asks only for introspection (`__schema`,
/// `__type`, `__typename` at its root), which reads nothing from DynamoDB:
/// deep enough for the query every GraphQL tool sends (GraphiQL, Apollo,
/// graphql-codegen, graphql-core's `get_introspection_query()`: depth 15),
/// still bounded in size. Introspection itself is off unless the
/// deployment turns it on.
pub const INTROSPECTION_LIMITS: Limits = Limits {
    max_depth: 24,
    max_fields: 1000,
    max_storage_fields: 0,
    max_mutation_fields: 0,
    max_paged_fields: 0,
};

/// Mutations whose answer holds a new secret, shown once: such a mutation
/// must be its request's only field, since an error in another field of
/// the request would null the whole answer (their payloads are non-null)
/// and the secret, already stored, would never be seen.
/// `set_key_policy` too: it writes every key of the tenant, once a request.
/// A new session's tokens likewise (`log_in`, `refresh_token`, `switch_tenant`).
pub const SECRET_FIELDS: &[&str] = &[
    "create_api_key",
    "rotate_api_key",
    "set_key_policy",
    "log_in",
    "refresh_token",
    "switch_tenant",
];

/// Fields that read a page of their own (arguments choose which page), so
/// not memoized per request: each may run once per request.
pub const PAGED_FIELDS: &[&str] = &["audit_log"];

/// What a document asks for, with fragments expanded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    pub depth: u64,
    pub fields: u64,
    pub storage_fields: u64,
    pub paged_fields: u64,
    /// Fields of the operation's own selection set (the mutations, for a mutation).
    pub root_fields: u64,
    /// Of those, fields that return a new secret ([`SECRET_FIELDS`]).
    pub secret_fields: u64,
    /// Whether every field of the operation's own selection set is an
    /// introspection field (its limits are [`INTROSPECTION_LIMITS`]).
    pub introspection_only: bool,
    /// Whether the operation's own selection set is fields of
    /// [`crate::schema::PUBLIC_FIELDS`] only (no fragment): answered
    /// without a key.
    pub public_only: bool,
    /// Whether the operation's own selection set asks for any of those.
    pub signs_in: bool,
}

impl Cost {
    fn add(self, other: Cost) -> Cost {
        Cost {
            depth: self.depth.max(other.depth),
            fields: self.fields.saturating_add(other.fields),
            storage_fields: self.storage_fields.saturating_add(other.storage_fields),
            paged_fields: self.paged_fields.saturating_add(other.paged_fields),
            root_fields: self.root_fields.saturating_add(other.root_fields),
            secret_fields: self.secret_fields.saturating_add(other.secret_fields),
            introspection_only: self.introspection_only && other.introspection_only,
            public_only: false,
            signs_in: false,
        }
    }
}

/// Why a document was refused: the message names the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooComplex(pub String);

/// The operation juniper would run (the one named, or the only one).
pub fn chosen<'d, 'a>(
    document: &'d [Definition<'a, DefaultScalarValue>],
    operation_name: Option<&str>,
) -> Option<&'d Spanning<Operation<'a, DefaultScalarValue>>> {
    let mut operations = document.iter().filter_map(|definition| match definition {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    match operation_name {
        Some(name) => operations.find(|op| op.item.name.as_ref().map(|n| n.item) == Some(name)),
        None => {
            let first = operations.next();
            operations.next().is_none().then_some(first).flatten()
        }
    }
}

/// The cost of the operation juniper would run, or `None` when there is no
/// single such operation (juniper then answers the error itself).
pub fn measure(
    document: &[Definition<'_, DefaultScalarValue>],
    operation_name: Option<&str>,
) -> Option<(OperationType, Cost)> {
    let operation = &chosen(document, operation_name)?.item;
    let fragments = document
        .iter()
        .filter_map(|definition| match definition {
            Definition::Fragment(f) => Some((f.item.name.item, f.item.selection_set.as_slice())),
            Definition::Operation(_) => None,
        })
        .collect();
    let mut walk = Walk {
        fragments,
        expanded: HashMap::new(),
    };
    let public = |s: &Selection<'_, DefaultScalarValue>| matches!(s, Selection::Field(f) if crate::schema::PUBLIC_FIELDS.contains(&f.item.name.item));
    let public_only =
        !operation.selection_set.is_empty() && operation.selection_set.iter().all(public);
    let cost = Cost {
        public_only,
        signs_in: operation.selection_set.iter().any(public),
        ..walk.selections(&operation.selection_set)
    };
    Some((operation.operation_type, cost))
}

/// Checks a measured operation against `limits`, or against
/// [`INTROSPECTION_LIMITS`] when it asks only for introspection.
pub fn check(kind: OperationType, cost: Cost, limits: Limits) -> Result<(), TooComplex> {
    let limits = if cost.introspection_only && kind == OperationType::Query {
        INTROSPECTION_LIMITS
    } else {
        limits
    };
    let over = |what: &str, value: u64, limit: u64| {
        Err(TooComplex(format!(
            "Query too complex: {what} is {value}, the limit is {limit}"
        )))
    };
    if cost.depth > limits.max_depth {
        return over("the selection depth", cost.depth, limits.max_depth);
    }
    if cost.fields > limits.max_fields {
        return over(
            "the number of field executions (fragments expanded)",
            cost.fields,
            limits.max_fields,
        );
    }
    if cost.storage_fields > limits.max_storage_fields {
        return over(
            "the number of fields that read the database",
            cost.storage_fields,
            limits.max_storage_fields,
        );
    }
    if cost.paged_fields > limits.max_paged_fields {
        return over(
            "the number of audit_log fields (each reads a page; aliases and fragment spreads count)",
            cost.paged_fields,
            limits.max_paged_fields,
        );
    }
    if kind == OperationType::Mutation && cost.secret_fields > 0 && cost.root_fields > 1 {
        return Err(TooComplex(
            "create_api_key, rotate_api_key, set_key_policy, log_in, refresh_token and \
             switch_tenant must each be the only field of their request: an error in another \
             field would hide a new key or session, and a policy change writes every key of \
             the tenant"
                .to_string(),
        ));
    }
    if kind == OperationType::Mutation && cost.root_fields > limits.max_mutation_fields {
        return over(
            "the number of mutations in one request",
            cost.root_fields,
            limits.max_mutation_fields,
        );
    }
    Ok(())
}

struct Walk<'a, 'd> {
    fragments: HashMap<&'a str, &'d Selections<'a>>,
    /// Totals of each fragment, computed once; `None` while being computed
    /// (a cycle, which validation refuses later, counts as nothing here).
    expanded: HashMap<&'a str, Option<Cost>>,
}

impl<'a, 'd> Walk<'a, 'd> {
    fn selections(&mut self, set: &'d Selections<'a>) -> Cost {
        let empty = Cost {
            introspection_only: true,
            ..Cost::default()
        };
        set.iter().fold(empty, |total, selection| {
            let cost = match selection {
                Selection::Field(field) => {
                    let field = &field.item;
                    let inner = field
                        .selection_set
                        .as_deref()
                        .map(|set| self.selections(set))
                        .unwrap_or_default();
                    Cost {
                        depth: inner.depth.saturating_add(1),
                        fields: inner.fields.saturating_add(1),
                        storage_fields: inner
                            .storage_fields
                            .saturating_add(u64::from(STORAGE_FIELDS.contains(&field.name.item))),
                        paged_fields: inner
                            .paged_fields
                            .saturating_add(u64::from(PAGED_FIELDS.contains(&field.name.item))),
                        root_fields: 1,
                        secret_fields: u64::from(SECRET_FIELDS.contains(&field.name.item)),
                        introspection_only: field.name.item.starts_with("__"),
                        public_only: false,
                        signs_in: false,
                    }
                }
                Selection::InlineFragment(inline) => self.selections(&inline.item.selection_set),
                Selection::FragmentSpread(spread) => self.fragment(spread.item.name.item),
            };
            total.add(cost)
        })
    }

    fn fragment(&mut self, name: &'a str) -> Cost {
        if let Some(known) = self.expanded.get(name) {
            return known.unwrap_or_default();
        }
        let Some(set) = self.fragments.get(name).copied() else {
            return Cost::default();
        };
        self.expanded.insert(name, None);
        let cost = self.selections(set);
        self.expanded.insert(name, Some(cost));
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use juniper::parser::parse_document_source;

    fn cost_of(query: &str) -> (OperationType, Cost) {
        let schema = crate::schema::schema(false);
        let document = parse_document_source(query, &schema.schema).expect("parses");
        measure(&document, None).expect("one operation")
    }

    /// `{...F<n>}` where F0 holds `field` and each F<i> spreads F<i-1> twice.
    fn doubling(n: usize, on: &str, field: &str) -> String {
        let mut doc = format!("{{ ...F{n} }}\nfragment F0 on {on} {{ {field} }}\n");
        for (before, i) in (1..=n).enumerate() {
            doc.push_str(&format!(
                "fragment F{i} on {on} {{ ...F{before} ...F{before} }}\n"
            ));
        }
        doc
    }

    #[test]
    fn fragments_count_once_per_spread_as_execution_runs_them() {
        let (_, cost) = cost_of(&doubling(9, "Query", "a: user { id }"));
        assert_eq!(cost.fields, 2 * 512);
        assert_eq!(cost.storage_fields, 512);
        assert!(check(OperationType::Query, cost, LIMITS).is_err());
    }

    #[test]
    fn a_deep_doubling_chain_is_measured_without_expanding_it() {
        // 2^40 executions if expanded: the walk reuses each fragment's totals.
        let doc = doubling(40, "Query", "hello");
        let schema = crate::schema::schema(false).limit_fields(usize::MAX);
        let document = parse_document_source(&doc, &schema.schema).expect("parses");
        let (_, cost) = measure(&document, None).expect("one operation");
        assert_eq!(cost.fields, 1u64 << 40);
    }

    #[test]
    fn the_prefect_clients_documents_are_well_inside_the_limits() {
        for query in [
            "query { auth_info { tenant_id } }",
            "query { tenant(order_by: {slug: asc}) { id slug name } }",
            "query($slug: String) { tenant(where: {slug: { _eq: $slug } }) { id } }",
            "query { auth_api_key { id name expires_at } }",
            "mutation($input: create_api_key_input!) { create_api_key(input: $input) { key } }",
            "query { hello }",
        ] {
            let (kind, cost) = cost_of(query);
            assert!(check(kind, cost, LIMITS).is_ok(), "{query}: {cost:?}");
        }
    }

    #[test]
    fn each_limit_names_itself() {
        let aliases: String = (0..21).map(|i| format!("t{i}: tenant {{ id }} ")).collect();
        let (kind, cost) = cost_of(&format!("{{ {aliases} }}"));
        let TooComplex(message) = check(kind, cost, LIMITS).unwrap_err();
        assert!(
            message.contains("read the database") && message.contains("20"),
            "{message}"
        );

        let mutations: String = (0..6)
            .map(|i| {
                format!(
                    "m{i}: delete_api_key(input: {{key_id: \"{}\"}}) {{ success }} ",
                    uuid::Uuid::nil()
                )
            })
            .collect();
        let (kind, cost) = cost_of(&format!("mutation {{ {mutations} }}"));
        let TooComplex(message) = check(kind, cost, LIMITS).unwrap_err();
        assert!(
            message.contains("mutations") && message.contains('5'),
            "{message}"
        );

        let deep = "{ user_view_same_tenant { memberships { tenant { id } } } }";
        let (kind, cost) = cost_of(deep);
        assert_eq!(cost.depth, 4);
        let tight = Limits {
            max_depth: 3,
            ..LIMITS
        };
        assert!(check(kind, cost, tight).unwrap_err().0.contains("depth"));
    }

    #[test]
    fn audit_log_runs_once_per_request_however_it_is_asked_twice() {
        let (kind, one) = cost_of("{ audit_log(limit: 100) { id } }");
        assert!(check(kind, one, LIMITS).is_ok());
        for doc in [
            "{ a: audit_log(limit: 100) { id } b: audit_log(limit: 100) { id } }".to_string(),
            "{ ...F ...F } fragment F on Query { audit_log(limit: 100) { id } }".to_string(),
            doubling(4, "Query", "audit_log(limit: 100) { id }"),
        ] {
            let (kind, cost) = cost_of(&doc);
            let TooComplex(message) = check(kind, cost, LIMITS).unwrap_err();
            assert!(message.contains("audit_log"), "{doc}: {message}");
        }
    }

    #[test]
    fn a_mutation_returning_a_secret_is_alone_in_its_request() {
        let one = "mutation { create_api_key(input: {user_id: \"00000000-0000-0000-0000-000000000000\", name: \"x\"}) { key } }";
        let (kind, cost) = cost_of(one);
        assert!(check(kind, cost, LIMITS).is_ok());
        for doc in [
            "mutation { a: create_api_key(input: {user_id: \"00000000-0000-0000-0000-000000000000\", name: \"x\"}) { key } b: delete_api_key(input: {key_id: \"00000000-0000-0000-0000-000000000000\"}) { success } }",
            "mutation { __typename r: rotate_api_key(input: {key_id: \"00000000-0000-0000-0000-000000000000\"}) { key } }",
            "mutation { ...M ...M } fragment M on Mutation { create_api_key(input: {user_id: \"00000000-0000-0000-0000-000000000000\", name: \"x\"}) { key } }",
        ] {
            let (kind, cost) = cost_of(doc);
            let TooComplex(message) = check(kind, cost, LIMITS).unwrap_err();
            assert!(message.contains("only field"), "{doc}: {message}");
        }
    }

    #[test]
    fn a_fragment_cycle_does_not_hang_the_walk() {
        let schema = crate::schema::schema(false);
        let doc = "{ ...A } fragment A on Query { hello ...B } fragment B on Query { ...A }";
        if let Ok(document) = parse_document_source(doc, &schema.schema) {
            let (_, cost) = measure(&document, None).expect("one operation");
            assert!(cost.fields >= 1);
        }
    }
}
