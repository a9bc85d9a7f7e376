//! Sessions and invitations with DynamoDB failing part way through their
//! writes: with 30 % of DynamoDB requests failing (every fault the proxy
//! has), 40 rounds of every session and invitation write through the real
//! handler (a first sign-in in no tenant and a member's sign-in, refresh,
//! switch of tenant, log-out, invite, withdraw, accept by a person in no
//! tenant and by a member of another tenant, a role change and a removal of
//! a member holding sessions) are each answered in time with success, a
//! retryable failure (503), `OUTCOME_UNKNOWN`, `MEMBER_BUSY`, or a domain
//! answer that is true of the table; a failure that says nothing changed
//! changed nothing; and afterwards the table's invariants hold, with those
//! of sessions (each listed where it lives) and invitations (both items or
//! neither; a membership, with its user index, for each one accepted).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use apikeys_core::audit::AuditAction;
use apikeys_core::domain::Role;
use apikeys_core::principal::Person as Vouched;
use apikeys_graphql::App;
use apikeys_service::ApiKeys;
use apikeys_service::Authenticated;
use apikeys_store::Membership;
use apikeys_tests::faults::{Fault, FaultProxy, Plan};
use apikeys_tests::idp::{provider_with, Provider, CLIENT, ISSUER};
use apikeys_tests::{
    endpoint, error_code, event, prefect_body, MemberFixture, Route, TenantFixture,
};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use time::Duration;
use uuid::Uuid;

/// Small limits, so that a stall costs a fraction of a second.
const LIMITS: [(&str, &str); 3] = [
    ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "300"),
    ("DYNAMODB_OPERATION_TIMEOUT_MS", "1000"),
    ("REQUEST_TIMEOUT_MS", "3000"),
];
const REQUEST_TIMEOUT: StdDuration = StdDuration::from_millis(3000);
/// Rounds in all, shared by the workers (each round its own tenant and
/// people, so rounds are independent).
const ROUNDS: usize = 40;
const WORKERS: usize = 4;

const LOG_IN: &str = "mutation($t: String!) { log_in(input: {id_token: $t}) { access_token refresh_token tenant_id } }";
const REFRESH: &str = "mutation($a: String!) { refresh_token(input: {access_token: $a}) { access_token refresh_token tenant_id } }";
const SWITCH: &str = "mutation($t: UUID!) { switch_tenant(input: {tenant_id: $t}) { access_token refresh_token tenant_id } }";
const LOG_OUT: &str = "mutation { log_out { success error } }";
const INVITE: &str = "mutation($i: create_membership_invitation_input!) { create_membership_invitation(input: $i) { id } }";
const WITHDRAW: &str = "mutation($i: membership_invitation_id_input!) { delete_membership_invitation(input: $i) { success } }";
const ACCEPT: &str = "mutation($i: membership_invitation_id_input!) { accept_membership_invitation(input: $i) { id tenant_id } }";
const SET_ROLE: &str =
    "mutation($m: UUID!, $r: UUID!) { set_membership_role(input: {membership_id: $m, role_id: $r}) { id } }";
const REMOVE: &str =
    "mutation($m: UUID!) { delete_membership(input: {membership_id: $m}) { success } }";

/// What kind of answer a client got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok,
    /// HTTP 503 `SERVICE_UNAVAILABLE`: nothing changed, send it again.
    Unavailable,
    /// `OUTCOME_UNKNOWN`: a write that may or may not have applied.
    Unknown,
    /// `MEMBER_BUSY`: another request holds the member; nothing changed.
    Busy,
    /// HTTP 429 `RATE_LIMITED` (sign-in's bound): nothing done.
    RateLimited,
    /// `UNAUTHENTICATED`, `BAD_USER_INPUT`, `FORBIDDEN`: a statement about
    /// the data, which must be true.
    Domain,
    /// None of the above (a 500, `INTERNAL_SERVER_ERROR`, a late answer):
    /// already recorded as a violation; judged as an unknown outcome.
    Invalid,
}

/// One answer, as a client sees it.
struct Got {
    kind: Kind,
    data: Value,
    code: String,
    reason: String,
    message: String,
    /// Status and body, for messages.
    text: String,
}

impl Got {
    fn refused(&self, reason: &str) -> bool {
        self.kind == Kind::Domain && self.code == "UNAUTHENTICATED" && self.reason == reason
    }

    fn not_found(&self, what: &str) -> bool {
        self.kind == Kind::Domain
            && self.code == "BAD_USER_INPUT"
            && self.message == format!("{what} not found")
    }

    /// An error that says nothing was changed.
    fn nothing_changed(&self) -> bool {
        matches!(self.kind, Kind::Unavailable | Kind::Busy)
    }

    /// How the answer is counted in the table.
    fn label(&self) -> String {
        match self.kind {
            Kind::Ok => "ok".into(),
            Kind::Unavailable => "503".into(),
            Kind::Unknown => "OUTCOME_UNKNOWN".into(),
            Kind::Busy => "MEMBER_BUSY".into(),
            Kind::RateLimited => "RATE_LIMITED".into(),
            Kind::Domain if !self.reason.is_empty() => format!("{} {}", self.code, self.reason),
            Kind::Domain => format!("{} \"{}\"", self.code, self.message),
            Kind::Invalid => format!("INVALID {}", self.code),
        }
    }
}

/// A person of the identity provider: their `sub` and verified email.
#[derive(Clone, Debug)]
struct Person {
    sub: String,
    email: String,
}

impl Person {
    fn new(name: &str) -> Self {
        Self {
            sub: format!("{name}-sub"),
            email: format!("{name}@example.com"),
        }
    }
}

/// A session's tokens as answered.
#[derive(Clone, Debug)]
struct Sess {
    access: String,
    refresh: String,
    tenant: Option<Uuid>,
}

fn tokens(payload: &Value) -> Option<Sess> {
    Some(Sess {
        access: payload["access_token"].as_str()?.to_string(),
        refresh: payload["refresh_token"].as_str()?.to_string(),
        tenant: payload["tenant_id"]
            .as_str()
            .and_then(|t| Uuid::parse_str(t).ok()),
    })
}

struct World {
    p: Provider,
    /// The function, reaching DynamoDB through the proxy.
    app: App,
    proxy: FaultProxy,
    /// The other tenant, whose members accept invitations to each round's.
    beta: TenantFixture,
    /// Answers by operation.
    tally: Mutex<BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// Every dishonest or malformed answer, with the check it failed.
    violations: Mutex<Vec<String>>,
    /// Memberships an acceptance made (by the truth read after it).
    joined: Mutex<Vec<(Uuid, Person)>>,
    /// Serialises moves of the shared clock (always forward).
    ticking: Mutex<()>,
    /// The users people are linked to, as read.
    users: Mutex<HashMap<String, Uuid>>,
    slowest: Mutex<StdDuration>,
}

impl World {
    fn service(&self) -> &ApiKeys {
        self.p.h.service()
    }

    fn tick(&self, seconds: i64) {
        let _held = self.ticking.lock().unwrap();
        self.p
            .h
            .clock
            .set(self.p.h.now() + Duration::seconds(seconds));
    }

    /// Records a violation of `check` when `broken`.
    fn flag(&self, broken: bool, check: &str, op: &str, got: &Got) {
        if broken {
            self.violation(check, op, got);
        }
    }

    fn violation(&self, check: &str, op: &str, got: &Got) {
        self.violations
            .lock()
            .unwrap()
            .push(format!("[{check}] {op}: {}", got.text));
    }

    /// Sends one request through the real handler; checks the answer's
    /// shape and time, and counts it.
    async fn send(&self, op: &'static str, auth: Option<&str>, query: &str, vars: Value) -> Got {
        let headers: Vec<(&str, &str)> =
            auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let request = event(
            Route::RestGraphql,
            "POST",
            &prefect_body(query, Some(vars)),
            &headers,
        );
        let started = Instant::now();
        let response = apikeys_graphql::handle(&self.app, request).await;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let json: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        let retry_after = response.headers().contains_key("retry-after");
        let error = &json["errors"][0];
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let mut got = Got {
            kind: Kind::Invalid,
            data: json["data"].clone(),
            code: text(&error["extensions"]["code"]),
            reason: text(&error["extensions"]["reason"]),
            message: text(&error["message"]),
            text: format!("{status} {json} after {elapsed:?}"),
        };
        got.kind = match (status, got.code.as_str()) {
            (200, "") if json.get("errors").is_none() && json["data"].is_object() => Kind::Ok,
            (503, "SERVICE_UNAVAILABLE") if retry_after => Kind::Unavailable,
            (200, "OUTCOME_UNKNOWN") => Kind::Unknown,
            (200, "MEMBER_BUSY") => Kind::Busy,
            (429, "RATE_LIMITED") if op == "log_in" && retry_after => Kind::RateLimited,
            (200, "UNAUTHENTICATED" | "BAD_USER_INPUT" | "FORBIDDEN") => Kind::Domain,
            _ => Kind::Invalid,
        };
        self.flag(
            got.kind == Kind::Invalid,
            "only success, 503, OUTCOME_UNKNOWN, MEMBER_BUSY or a domain answer",
            op,
            &got,
        );
        self.flag(
            elapsed >= REQUEST_TIMEOUT,
            "answered within the deadline",
            op,
            &got,
        );
        {
            let mut slowest = self.slowest.lock().unwrap();
            *slowest = (*slowest).max(elapsed);
        }
        *self
            .tally
            .lock()
            .unwrap()
            .entry(op)
            .or_default()
            .entry(got.label())
            .or_default() += 1;
        got
    }

    // The truth, read straight from DynamoDB (no proxy, no faults).

    /// Does the session's access token authenticate?
    async fn alive(&self, s: &Sess) -> bool {
        self.service()
            .authenticate_session(&s.access, None)
            .await
            .is_ok()
    }

    /// The person a live session vouches for (its user, when linked).
    async fn vouched(&self, s: &Sess) -> Option<Vouched> {
        match self.service().authenticate_session(&s.access, None).await {
            Ok(Authenticated::Member(p)) => p.session.map(|s| s.person),
            Ok(Authenticated::Person(s)) => Some(s.person),
            Err(_) => None,
        }
    }

    /// The user `who` is linked to (a link, once made, never changes).
    async fn user_of(&self, who: &Person) -> Option<Uuid> {
        if let Some(user) = self.users.lock().unwrap().get(&who.sub) {
            return Some(*user);
        }
        let user = self
            .service()
            .store()
            .identity_user(ISSUER, &who.sub)
            .await
            .unwrap()?;
        self.users.lock().unwrap().insert(who.sub.clone(), user);
        Some(user)
    }

    async fn tenants_of(&self, user: Option<Uuid>) -> Vec<Uuid> {
        match user {
            Some(user) => self.service().store().user_tenants(user).await.unwrap(),
            None => Vec::new(),
        }
    }

    async fn member(&self, tenant: Uuid, who: &Person) -> Option<Membership> {
        let user = self.user_of(who).await?;
        self.service()
            .store()
            .membership(tenant, user)
            .await
            .unwrap()
    }

    /// Is an unexpired invitation waiting for `email` (in any tenant)?
    async fn invited(&self, email: &str) -> bool {
        let now = self.p.h.now();
        self.service()
            .store()
            .invitations_to(email)
            .await
            .unwrap()
            .iter()
            .any(|i| i.expires_at > now)
    }

    /// The tenant's pending invitation to `email`.
    async fn invitation_to(&self, tenant: Uuid, email: &str) -> Option<Uuid> {
        let now = self.p.h.now();
        self.service()
            .store()
            .tenant_invitations(tenant)
            .await
            .unwrap()
            .into_iter()
            .find(|i| i.email == email && i.expires_at > now)
            .map(|i| i.id)
    }

    async fn invitation_exists(&self, tenant: Uuid, id: Uuid) -> bool {
        self.service()
            .store()
            .tenant_invitations(tenant)
            .await
            .unwrap()
            .iter()
            .any(|i| i.id == id)
    }

    // The operations, each judged against the truth.

    /// Signs `who` in: a session in the first tenant they joined, in none
    /// while an invitation waits for them, or `not_a_member`.
    async fn log_in(&self, who: &Person) -> Option<Sess> {
        for _ in 1..3 {
            match self.log_in_once(who).await {
                (Kind::Unavailable | Kind::Unknown | Kind::Invalid, _) => continue,
                // Retry-After honoured: the identity's bound is not what
                // is tested here.
                (Kind::RateLimited, _) => self.tick(13),
                (_, s) => return s,
            }
        }
        self.log_in_once(who).await.1
    }

    async fn log_in_once(&self, who: &Person) -> (Kind, Option<Sess>) {
        // Time passes between sign-ins: the instance's bound is not what
        // is tested here.
        self.tick(1);
        let token = self.p.sign(&self.p.claims(&who.sub, &who.email));
        let got = self.send("log_in", None, LOG_IN, json!({"t": token})).await;
        // What the answer must agree with (a sign-in changes neither).
        let truth = || async {
            futures::join!(
                async {
                    self.tenants_of(self.user_of(who).await)
                        .await
                        .first()
                        .copied()
                },
                self.invited(&who.email)
            )
        };
        let s = match got.kind {
            Kind::Ok => {
                let s = tokens(&got.data["log_in"]);
                let (expected, invited) = truth().await;
                match &s {
                    Some(s) if s.tenant == expected && (expected.is_some() || invited) => {}
                    _ => self.violation(
                        &format!("a sign-in lands in {expected:?} (invited: {invited})"),
                        "log_in",
                        &got,
                    ),
                }
                s
            }
            Kind::Domain if got.refused("not_a_member") => {
                let (expected, invited) = truth().await;
                self.flag(
                    expected.is_some() || invited,
                    "not_a_member only for a person in no tenant and not invited",
                    "log_in",
                    &got,
                );
                None
            }
            Kind::Domain => {
                self.violation("no other domain answer to a valid sign-in", "log_in", &got);
                None
            }
            _ => None,
        };
        (got.kind, s)
    }

    /// After an answer that changed nothing, the session is as it was;
    /// after an unknown outcome, it is what the table says.
    async fn unchanged_or_read(
        &self,
        op: &'static str,
        got: &Got,
        s: Sess,
        was_alive: bool,
    ) -> Option<Sess> {
        let alive = self.alive(&s).await;
        self.flag(
            got.nothing_changed() && alive != was_alive,
            "an answer that says nothing changed left the session as it was",
            op,
            got,
        );
        alive.then_some(s)
    }

    /// Refreshes `s`: the session anew (the old tokens stop), or an honest
    /// refusal. The session to go on with, when one is known.
    async fn refresh(&self, mut s: Sess) -> Option<Sess> {
        for _ in 1..3 {
            match self.refresh_once(s).await {
                (Kind::Unavailable, Some(same)) => s = same,
                (_, next) => return next,
            }
        }
        self.refresh_once(s).await.1
    }

    async fn refresh_once(&self, s: Sess) -> (Kind, Option<Sess>) {
        let vouched = self.vouched(&s).await;
        let was_alive = vouched.is_some();
        // A session in no tenant is refreshed while an invitation waits for
        // its email or its (linked) person has joined a tenant.
        let may_stay = match (&s.tenant, vouched) {
            (Some(_), _) => true,
            (None, Some(person)) => {
                let (tenants, invited) = futures::join!(
                    self.tenants_of(person.user_id),
                    self.invited(person.email.as_deref().unwrap_or(""))
                );
                !tenants.is_empty() || invited
            }
            (None, None) => false,
        };
        let auth = format!("Bearer {}", s.refresh);
        let got = self
            .send(
                "refresh_token",
                Some(&auth),
                REFRESH,
                json!({"a": s.access}),
            )
            .await;
        let next = match got.kind {
            Kind::Ok => {
                let new = tokens(&got.data["refresh_token"]);
                // In its tenant; a session in no tenant whose person has
                // joined one since moves into it, as a sign-in would.
                let moved_in =
                    s.tenant.is_none() && new.as_ref().is_some_and(|n| n.tenant.is_some());
                self.flag(
                    !was_alive || new.as_ref().is_none_or(|n| n.tenant != s.tenant && !moved_in),
                    "a refresh renews a live session in its tenant (or, in none, in one joined since)",
                    "refresh_token",
                    &got,
                );
                self.flag(
                    self.alive(&s).await,
                    "the refreshed tokens stop at once",
                    "refresh_token",
                    &got,
                );
                new
            }
            Kind::Domain if got.refused("session_ended") => {
                self.flag(
                    was_alive,
                    "session_ended only for a session that had ended",
                    "refresh_token",
                    &got,
                );
                None
            }
            Kind::Domain if got.refused("not_a_member") => {
                self.flag(
                    may_stay,
                    "not_a_member only when no invitation waits and no tenant was joined",
                    "refresh_token",
                    &got,
                );
                self.alive(&s).await.then_some(s)
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to a refresh", "refresh_token", &got);
                self.alive(&s).await.then_some(s)
            }
            _ => {
                self.unchanged_or_read("refresh_token", &got, s, was_alive)
                    .await
            }
        };
        (got.kind, next)
    }

    /// Moves `s` into `tenant`: the session to go on with.
    async fn switch(&self, who: &Person, mut s: Sess, tenant: Uuid) -> Option<Sess> {
        for _ in 1..3 {
            match self.switch_once(who, s, tenant).await {
                (Kind::Unavailable, Some(same)) => s = same,
                (_, next) => return next,
            }
        }
        self.switch_once(who, s, tenant).await.1
    }

    async fn switch_once(&self, who: &Person, s: Sess, tenant: Uuid) -> (Kind, Option<Sess>) {
        let (was_alive, member) = futures::join!(self.alive(&s), self.member(tenant, who));
        let member = member.is_some();
        let auth = format!("Session {}", s.access);
        let got = self
            .send("switch_tenant", Some(&auth), SWITCH, json!({"t": tenant}))
            .await;
        let next = match got.kind {
            Kind::Ok => {
                let new = tokens(&got.data["switch_tenant"]);
                self.flag(
                    !was_alive || !member || new.as_ref().is_none_or(|n| n.tenant != Some(tenant)),
                    "a switch moves a live session into one of the person's tenants",
                    "switch_tenant",
                    &got,
                );
                self.flag(
                    self.alive(&s).await,
                    "the switched session's old tokens stop at once",
                    "switch_tenant",
                    &got,
                );
                new
            }
            Kind::Domain if got.refused("session_ended") => {
                self.flag(
                    was_alive,
                    "session_ended only for a session that had ended",
                    "switch_tenant",
                    &got,
                );
                None
            }
            Kind::Domain if got.not_found("tenant") => {
                self.flag(
                    member,
                    "\"tenant not found\" only for a tenant not the person's",
                    "switch_tenant",
                    &got,
                );
                self.unchanged_or_read("switch_tenant", &got, s, was_alive)
                    .await
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to a switch", "switch_tenant", &got);
                self.alive(&s).await.then_some(s)
            }
            _ => {
                self.unchanged_or_read("switch_tenant", &got, s, was_alive)
                    .await
            }
        };
        (got.kind, next)
    }

    async fn log_out(&self, s: Sess) {
        for _ in 0..3 {
            if self.log_out_once(&s).await != Kind::Unavailable {
                return;
            }
        }
    }

    async fn log_out_once(&self, s: &Sess) -> Kind {
        let was_alive = self.alive(s).await;
        let auth = format!("Session {}", s.access);
        let got = self.send("log_out", Some(&auth), LOG_OUT, json!({})).await;
        match got.kind {
            Kind::Ok => {
                let out = &got.data["log_out"];
                self.flag(
                    out["success"] != json!(true) || (was_alive && !out["error"].is_null()),
                    "a log-out of a live session ends it and says so",
                    "log_out",
                    &got,
                );
                self.flag(
                    self.alive(s).await,
                    "a logged-out session stops at once",
                    "log_out",
                    &got,
                );
            }
            Kind::Domain if got.refused("session_ended") => {
                self.flag(
                    was_alive,
                    "session_ended only for a session that had ended",
                    "log_out",
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to a log-out", "log_out", &got);
            }
            _ => {
                self.unchanged_or_read("log_out", &got, s.clone(), was_alive)
                    .await;
            }
        }
        got.kind
    }

    /// Invites `email` to `t` as its admin: the invitation, when there is
    /// one (read after an unknown outcome).
    async fn invite(&self, t: &TenantFixture, email: &str) -> Option<Uuid> {
        for _ in 1..3 {
            match self.invite_once(t, email).await {
                (Kind::Unavailable, _) => continue,
                (_, done) => return done,
            }
        }
        self.invite_once(t, email).await.1
    }

    async fn invite_once(&self, t: &TenantFixture, email: &str) -> (Kind, Option<Uuid>) {
        let auth = format!("Bearer {}", t.admin_key);
        let vars = json!({"i": {"tenant_id": t.id, "email": email, "role": "USER"}});
        let got = self
            .send("create_membership_invitation", Some(&auth), INVITE, vars)
            .await;
        let found = self.invitation_to(t.id, email).await;
        match got.kind {
            Kind::Ok => {
                let id = got.data["create_membership_invitation"]["id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok());
                self.flag(
                    id.is_none() || id != found,
                    "an invitation answered made is there",
                    "create_membership_invitation",
                    &got,
                );
            }
            Kind::Unavailable | Kind::Busy if found.is_some() => {
                self.violation(
                    "an answer that says nothing changed made no invitation",
                    "create_membership_invitation",
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation(
                    "no domain answer to a first invitation",
                    "create_membership_invitation",
                    &got,
                );
            }
            _ => {}
        }
        (got.kind, found)
    }

    async fn withdraw_request(&self, t: &TenantFixture, id: Uuid) -> Got {
        let auth = format!("Bearer {}", t.admin_key);
        let vars = json!({"i": {"invitation_id": id}});
        self.send("delete_membership_invitation", Some(&auth), WITHDRAW, vars)
            .await
    }

    async fn accept_request(&self, s: &Sess, id: Uuid) -> Got {
        let auth = format!("Session {}", s.access);
        let vars = json!({"i": {"invitation_id": id}});
        self.send("accept_membership_invitation", Some(&auth), ACCEPT, vars)
            .await
    }

    /// Accepts invitation `id` to `tenant` with `who`'s session `s`: are
    /// they a member after it?
    async fn accept(&self, who: &Person, s: &Sess, tenant: Uuid, id: Uuid) -> bool {
        for _ in 1..3 {
            match self.accept_once(who, s, tenant, id).await {
                (Kind::Unavailable, _) => continue,
                (_, done) => return done,
            }
        }
        self.accept_once(who, s, tenant, id).await.1
    }

    async fn accept_once(&self, who: &Person, s: &Sess, tenant: Uuid, id: Uuid) -> (Kind, bool) {
        let (pending, member_before) =
            futures::join!(self.invitation_exists(tenant, id), self.member(tenant, who));
        let member_before = member_before.is_some();
        let got = self.accept_request(s, id).await;
        let (member, still_pending) =
            futures::join!(self.member(tenant, who), self.invitation_exists(tenant, id));
        let member = member.is_some();
        let op = "accept_membership_invitation";
        match got.kind {
            Kind::Ok => {
                let answered = got.data["accept_membership_invitation"]["tenant_id"].as_str();
                self.flag(
                    answered != Some(tenant.to_string().as_str())
                        || !member
                        || still_pending
                        || !pending
                        || member_before,
                    "an accepted invitation is a membership, and gone",
                    op,
                    &got,
                );
            }
            Kind::Unavailable | Kind::Busy => {
                self.flag(
                    member != member_before || still_pending != pending,
                    "an answer that says nothing changed accepted nothing",
                    op,
                    &got,
                );
            }
            Kind::Domain if got.not_found("invitation") => {
                self.flag(
                    pending || member != member_before,
                    "\"invitation not found\" only for one that is not there",
                    op,
                    &got,
                );
            }
            // An accept never ends its session: alive now, alive before.
            Kind::Domain if got.refused("session_ended") => {
                self.flag(
                    self.alive(s).await,
                    "session_ended only for a session that had ended",
                    op,
                    &got,
                );
            }
            Kind::Domain if got.message.contains("member of this tenant already") => {
                self.flag(
                    !member_before,
                    "\"a member already\" only for a member",
                    op,
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to an accept", op, &got);
            }
            Kind::Unknown | Kind::Invalid => {}
        }
        if member && !member_before {
            self.joined.lock().unwrap().push((tenant, who.clone()));
        }
        (got.kind, member)
    }

    /// Withdraws invitation `id` of `t`: is it gone after?
    async fn withdraw(&self, t: &TenantFixture, id: Uuid) -> bool {
        for _ in 1..3 {
            match self.withdraw_once(t, id).await {
                (Kind::Unavailable, _) => continue,
                (_, done) => return done,
            }
        }
        self.withdraw_once(t, id).await.1
    }

    async fn withdraw_once(&self, t: &TenantFixture, id: Uuid) -> (Kind, bool) {
        let pending = self.invitation_exists(t.id, id).await;
        let got = self.withdraw_request(t, id).await;
        let after = self.invitation_exists(t.id, id).await;
        let op = "delete_membership_invitation";
        match got.kind {
            Kind::Ok if after || got.data[op]["success"] != json!(true) => {
                self.violation("a withdrawn invitation is gone", op, &got);
            }
            Kind::Unavailable | Kind::Busy if after != pending => {
                self.violation(
                    "an answer that says nothing changed withdrew nothing",
                    op,
                    &got,
                );
            }
            Kind::Domain if got.not_found("invitation") => {
                self.flag(
                    pending,
                    "\"invitation not found\" only for one that is not there",
                    op,
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to a withdrawal", op, &got);
            }
            _ => {}
        }
        (got.kind, !after)
    }

    /// An accept and a withdrawal of one invitation at once: each answer
    /// true of the outcome, never both done.
    async fn race(&self, t: &TenantFixture, who: &Person, s: &Sess, id: Uuid) {
        let was_alive = self.alive(s).await;
        let (accepted, withdrawn) =
            futures::join!(self.accept_request(s, id), self.withdraw_request(t, id));
        let (member, pending) =
            futures::join!(self.member(t.id, who), self.invitation_exists(t.id, id));
        let member = member.is_some();
        let (a, w) = (
            "accept_membership_invitation",
            "delete_membership_invitation",
        );
        self.flag(
            accepted.kind == Kind::Ok && withdrawn.kind == Kind::Ok,
            "an accept and a withdrawal never both succeed",
            a,
            &accepted,
        );
        match accepted.kind {
            Kind::Ok if !member || pending => {
                self.violation(
                    "an accepted invitation is a membership, and gone",
                    a,
                    &accepted,
                );
            }
            Kind::Unavailable | Kind::Busy if member => {
                self.violation(
                    "an answer that says nothing changed accepted nothing",
                    a,
                    &accepted,
                );
            }
            Kind::Domain if accepted.not_found("invitation") => {
                self.flag(
                    member || pending,
                    "\"invitation not found\" only once it was withdrawn",
                    a,
                    &accepted,
                );
            }
            Kind::Domain if accepted.refused("session_ended") => {
                // Withdrawing the last invitation ends the session.
                self.flag(
                    member || (was_alive && pending),
                    "session_ended only for a session that had ended",
                    a,
                    &accepted,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to an accept", a, &accepted);
            }
            _ => {}
        }
        match withdrawn.kind {
            Kind::Ok if member || pending || withdrawn.data[w]["success"] != json!(true) => {
                self.violation(
                    "a withdrawn invitation is gone, and accepted by nobody",
                    w,
                    &withdrawn,
                );
            }
            Kind::Unavailable | Kind::Busy if !member && !pending => {
                self.violation(
                    "an answer that says nothing changed withdrew nothing",
                    w,
                    &withdrawn,
                );
            }
            Kind::Domain if withdrawn.not_found("invitation") => {
                self.flag(
                    !member,
                    "\"invitation not found\" only once it was accepted",
                    w,
                    &withdrawn,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no other domain answer to a withdrawal", w, &withdrawn);
            }
            _ => {}
        }
        if member {
            self.joined.lock().unwrap().push((t.id, who.clone()));
        }
    }

    /// Changes member `x`'s role: its sessions `held` end with the change.
    async fn set_role(&self, t: &TenantFixture, x: &MemberFixture, held: &[Sess], role: Role) {
        for _ in 0..3 {
            if self.set_role_once(t, x, held, role).await != Kind::Unavailable {
                return;
            }
        }
    }

    async fn set_role_once(
        &self,
        t: &TenantFixture,
        x: &MemberFixture,
        held: &[Sess],
        role: Role,
    ) -> Kind {
        let store = self.service().store();
        let before = store
            .membership(t.id, x.user_id)
            .await
            .unwrap()
            .map(|m| m.role);
        let auth = format!("Bearer {}", t.admin_key);
        let vars = json!({"m": x.membership_id, "r": role.id()});
        let got = self
            .send("set_membership_role", Some(&auth), SET_ROLE, vars)
            .await;
        let after = store
            .membership(t.id, x.user_id)
            .await
            .unwrap()
            .map(|m| m.role);
        let op = "set_membership_role";
        match got.kind {
            Kind::Ok if after != Some(role) => {
                self.violation("a role answered changed is changed", op, &got);
            }
            Kind::Unavailable | Kind::Busy if after != before => {
                self.violation(
                    "an answer that says nothing changed changed no role",
                    op,
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no domain answer to an admin's role change", op, &got);
            }
            _ => {}
        }
        if after != before {
            for s in held {
                self.flag(
                    self.alive(s).await,
                    "a role change ends every session of the member",
                    op,
                    &got,
                );
            }
        }
        got.kind
    }

    /// Removes member `x`: its sessions `held`, and its index item, go
    /// with it.
    async fn remove(&self, t: &TenantFixture, x: &MemberFixture, held: &[Sess]) {
        for _ in 0..3 {
            if self.remove_once(t, x, held).await != Kind::Unavailable {
                return;
            }
        }
    }

    async fn remove_once(&self, t: &TenantFixture, x: &MemberFixture, held: &[Sess]) -> Kind {
        let store = self.service().store();
        let before = store.membership(t.id, x.user_id).await.unwrap().is_some();
        let auth = format!("Bearer {}", t.admin_key);
        let vars = json!({"m": x.membership_id});
        let got = self
            .send("delete_membership", Some(&auth), REMOVE, vars)
            .await;
        let after = store.membership(t.id, x.user_id).await.unwrap().is_some();
        let op = "delete_membership";
        match got.kind {
            Kind::Ok => {
                let success = got.data[op]["success"] == json!(true);
                if (success && after) || (!success && before) {
                    self.violation(
                        "a removal answered done is done; \"not found\" only for a non-member",
                        op,
                        &got,
                    );
                }
            }
            Kind::Unavailable | Kind::Busy if after != before => {
                self.violation(
                    "an answer that says nothing changed removed nobody",
                    op,
                    &got,
                );
            }
            Kind::Domain | Kind::RateLimited => {
                self.violation("no domain answer to an admin's removal", op, &got);
            }
            _ => {}
        }
        if !after {
            for s in held {
                self.flag(
                    self.alive(s).await,
                    "a removal ends every session of the member",
                    op,
                    &got,
                );
            }
            self.flag(
                store.user_tenants(x.user_id).await.unwrap().contains(&t.id),
                "a removal takes the person's index item with it",
                op,
                &got,
            );
        }
        got.kind
    }

    /// One round: its own tenant, four people, every write path.
    async fn round(&self, r: usize) {
        let h = &self.p.h;
        self.tick(13);
        // Made by the operator, straight to DynamoDB.
        let t = h
            .add_tenant(&format!("round-{r}"), &format!("admin{r}"))
            .await;
        let x = h.add_member(&t.slug, &format!("x{r}"), Role::User).await;
        self.p.link(&format!("x{r}-sub"), x.user_id).await;
        let m = h
            .add_member(&self.beta.slug, &format!("m{r}"), Role::User)
            .await;
        self.p.link(&format!("m{r}-sub"), m.user_id).await;
        futures::join!(
            self.newcomer(&t, r),
            self.withdrawn(&t, r),
            self.member_elsewhere(&t, r),
            self.member_changed(&t, &x, r),
        );
    }

    /// A person new here: invited, signs in (no tenant), refreshes,
    /// accepts, switches in, refreshes, logs out, signs in again.
    async fn newcomer(&self, t: &TenantFixture, r: usize) {
        let n = Person::new(&format!("n{r}"));
        let invitation = self.invite(t, &n.email).await;
        let mut s = self.log_in(&n).await;
        if let Some(current) = s.take() {
            s = self.refresh(current).await;
        }
        if s.is_none() {
            s = self.log_in(&n).await;
        }
        if let (Some(current), Some(id)) = (&s, invitation) {
            self.accept(&n, current, t.id, id).await;
        }
        if let Some(current) = s.take() {
            s = self.switch(&n, current, t.id).await;
        }
        if let Some(current) = s.take() {
            s = self.refresh(current).await;
        }
        if let Some(current) = s.take() {
            self.log_out(current).await;
        }
        self.log_in(&n).await;
    }

    /// A person invited, signed in (no tenant), whose invitation is
    /// withdrawn: then (or at once, racing it) they accept, refresh and
    /// log out.
    async fn withdrawn(&self, t: &TenantFixture, r: usize) {
        let w = Person::new(&format!("w{r}"));
        let invitation = self.invite(t, &w.email).await;
        let s = self.log_in(&w).await;
        let Some(id) = invitation else {
            return;
        };
        match &s {
            Some(current) if r % 2 == 1 => self.race(t, &w, current, id).await,
            Some(current) => {
                self.withdraw(t, id).await;
                self.accept(&w, current, t.id, id).await;
            }
            None => {
                self.withdraw(t, id).await;
            }
        }
        // Its last invitation withdrawn, a session in no tenant ended.
        let member = self.member(t.id, &w).await.is_some();
        let pending = self.invitation_exists(t.id, id).await;
        if let Some(current) = s {
            if !member && !pending && self.alive(&current).await {
                self.violations.lock().unwrap().push(format!(
                    "[a session in no tenant ends with its last invitation] w{r} still signed in"
                ));
            }
            if let Some(current) = self.refresh(current).await {
                self.log_out(current).await;
            }
        }
    }

    /// A member of beta, signed in there, accepts an invitation here,
    /// switches in, refreshes and logs out.
    async fn member_elsewhere(&self, t: &TenantFixture, r: usize) {
        let m = Person::new(&format!("m{r}"));
        let invitation = self.invite(t, &m.email).await;
        let mut s = self.log_in(&m).await;
        if let (Some(current), Some(id)) = (&s, invitation) {
            self.accept(&m, current, t.id, id).await;
        }
        if let Some(current) = s.take() {
            s = self.switch(&m, current, t.id).await;
        }
        if let Some(current) = s.take() {
            s = self.refresh(current).await;
        }
        if let Some(current) = s {
            self.log_out(current).await;
        }
    }

    /// A member holding sessions has their role changed, signs in again,
    /// is removed; their sessions end, and they can no longer sign in.
    async fn member_changed(&self, t: &TenantFixture, x: &MemberFixture, r: usize) {
        let who = Person::new(&format!("x{r}"));
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Some(s) = self.log_in(&who).await {
                held.push(s);
            }
        }
        if let Some(s) = held.pop() {
            if let Some(s) = self.refresh(s).await {
                held.push(s);
            }
        }
        self.set_role(t, x, &held, Role::ReadOnlyUser).await;
        if let Some(s) = self.log_in(&who).await {
            held.push(s);
        }
        self.remove(t, x, &held).await;
        if let Some(s) = held.pop() {
            self.refresh(s).await;
        }
        self.log_in(&who).await;
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(v)) | Some(AttributeValue::N(v)) => v.clone(),
        _ => String::new(),
    }
}

/// The invariants of sessions and invitations, over every item.
async fn assert_sessions_and_invitations(w: &World) {
    let h = &w.p.h;
    let items = h.items().await;
    let now = h.now().unix_timestamp();
    let by_key: HashMap<(String, String), &HashMap<String, AttributeValue>> = items
        .iter()
        .map(|item| ((text(item, "pk"), text(item, "sk")), item))
        .collect();
    let find = |pk: String, sk: String| by_key.get(&(pk, sk)).copied();
    let mut problems = Vec::new();
    let (mut sessions, mut listed, mut invitations) = (0, 0, 0);
    for item in &items {
        let (pk, sk) = (text(item, "pk"), text(item, "sk"));
        // A session is listed where it lives: its membership, or (in no
        // tenant) the sessions item of its email.
        if sk == "hash" && text(item, "kind") == "session" {
            sessions += 1;
            let hash = pk.trim_start_matches("hash#");
            let id = text(item, "session_id");
            let (tenant, email) = (text(item, "tenant_id"), text(item, "id_email"));
            let home = if tenant.is_empty() {
                find(format!("invitee#{email}"), "sessions".into())
            } else {
                find(tenant.clone(), format!("member#{}", text(item, "user_id")))
            };
            let entry = home.map(|home| text(home, &format!("sess_{id}")));
            if !entry
                .as_ref()
                .is_some_and(|e| e.starts_with(&format!("{hash} ")))
            {
                problems.push(format!(
                    "session {id} (tenant {tenant:?}, email {email}) is not listed where it lives: {entry:?}"
                ));
            }
        }
        // Every entry names its session's item, unless it is past its end.
        if sk.starts_with("member#") || (pk.starts_with("invitee#") && sk == "sessions") {
            for (name, value) in item {
                let (Some(id), AttributeValue::S(entry)) = (name.strip_prefix("sess_"), value)
                else {
                    continue;
                };
                listed += 1;
                let mut parts = entry.split(' ');
                let hash = parts.next().unwrap_or_default();
                let until: i64 = parts.next().and_then(|u| u.parse().ok()).unwrap_or(0);
                match find(format!("hash#{hash}"), "hash".into()) {
                    Some(session) if text(session, "session_id") == id => {}
                    Some(_) => problems.push(format!("{pk} {sk}: entry {id} names another item")),
                    None if until <= now => {}
                    None => problems.push(format!(
                        "{pk} {sk}: session {id} is listed, live until {until}, with no item"
                    )),
                }
            }
        }
        // An invitation is both its items, or neither.
        if sk.starts_with("invite#") && !pk.starts_with("invitee#") {
            invitations += 1;
            let id = text(item, "invitation_id");
            let other = find(
                format!("invitee#{}", text(item, "email")),
                format!("invite#{pk}"),
            );
            if other.is_none_or(|o| text(o, "invitation_id") != id) {
                problems.push(format!("invitation {id} has no item by its email"));
            }
        }
        if pk.starts_with("invitee#") && sk.starts_with("invite#") {
            let id = text(item, "invitation_id");
            let tenant = sk.trim_start_matches("invite#").to_string();
            if find(tenant, format!("invite#{id}")).is_none() {
                problems.push(format!(
                    "invitation {id} by email has no item in its tenant"
                ));
            }
        }
        // Every person's membership has its index item.
        if sk.starts_with("member#") && text(item, "account_type") != "service" {
            let user = text(item, "user_id");
            if find(format!("user#{user}"), format!("tenant#{pk}")).is_none() {
                problems.push(format!("member {user} of {pk} has no user index item"));
            }
        }
    }
    // Every acceptance is a membership, with its index item.
    let joined = w.joined.lock().unwrap().clone();
    for (tenant, who) in &joined {
        let user = w.user_of(who).await;
        let member = w.member(*tenant, who).await;
        if member.is_none() || !w.tenants_of(user).await.contains(tenant) {
            problems.push(format!(
                "{} accepted into {tenant} and is not a member",
                who.email
            ));
        }
    }
    eprintln!(
        "{} items: {sessions} sessions, {listed} listed entries, {invitations} invitations, {} acceptances",
        items.len(),
        joined.len()
    );
    assert!(
        problems.is_empty(),
        "session and invitation invariants:\n{}",
        problems.join("\n")
    );
}

/// Each round's tenant: one audit record of acceptance for each member who
/// joined by accepting, and none without its membership.
async fn assert_acceptances_recorded(w: &World) {
    let service = w.service();
    let mut problems = Vec::new();
    for r in 0..ROUNDS {
        let slug = format!("round-{r}");
        let tenant = service.tenant_by_slug(&slug).await.unwrap();
        let records = service.audit_log_of(&slug, 100, None).await.unwrap();
        assert!(records.len() < 100, "{slug}: more than one page of records");
        let recorded: BTreeSet<Uuid> = records
            .iter()
            .filter(|(r, _)| r.action == AuditAction::InvitationAccepted)
            .map(|(r, _)| r.target_id)
            .collect();
        let accepted: BTreeSet<Uuid> = service
            .store()
            .members(tenant.id)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.username != format!("admin{r}") && m.username != format!("x{r}"))
            .map(|m| m.id)
            .collect();
        if recorded != accepted {
            problems.push(format!(
                "{slug}: acceptances recorded {recorded:?}, memberships by acceptance {accepted:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_invitation_writes_at_a_30_percent_fault_rate_answer_truthfully_and_leave_the_table_consistent(
) {
    let p = provider_with(&[]).await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 29)
        .await
        .expect("proxy");
    let mut env = vec![
        ("OIDC_ISSUER", ISSUER),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_JWKS_URL", p.jwks.url.as_str()),
    ];
    env.extend_from_slice(&LIMITS);
    let (app, _counter) = p.h.app_via(&proxy.endpoint(), &env);
    let beta = p.h.add_tenant("beta", "bea").await;
    let w = Arc::new(World {
        p,
        app,
        proxy,
        beta,
        tally: Mutex::default(),
        violations: Mutex::default(),
        joined: Mutex::default(),
        ticking: Mutex::default(),
        users: Mutex::default(),
        slowest: Mutex::default(),
    });
    w.proxy.set_plan(Plan::Random {
        rate: 0.3,
        faults: Fault::ALL.to_vec(),
    });
    w.p.h.counter.reset();
    let started = Instant::now();
    // Workers on the runtime's threads, each running its share of rounds.
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let w = Arc::clone(&w);
            tokio::spawn(async move {
                for r in (worker..ROUNDS).step_by(WORKERS) {
                    w.round(r).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    w.proxy.set_plan(Plan::Off);
    let elapsed = started.elapsed();

    let counts = w.proxy.counts();
    let tally = w.tally.lock().unwrap().clone();
    let sent: u64 = tally.values().flat_map(BTreeMap::values).sum();
    eprintln!(
        "{ROUNDS} rounds, {sent} requests in {elapsed:?} (slowest answer {:?}); DynamoDB requests through the proxy: {counts:?}; the test's own (setup and truth): {}",
        *w.slowest.lock().unwrap(),
        w.p.h.counter.total()
    );
    eprintln!("| operation | sent | ok | 503 | OUTCOME_UNKNOWN | MEMBER_BUSY | RATE_LIMITED | domain answers |");
    eprintln!("|---|---|---|---|---|---|---|---|");
    for (op, answers) in &tally {
        let n = |label: &str| answers.get(label).copied().unwrap_or(0);
        let domain: Vec<String> = answers
            .iter()
            .filter(|(label, _)| {
                ![
                    "ok",
                    "503",
                    "OUTCOME_UNKNOWN",
                    "MEMBER_BUSY",
                    "RATE_LIMITED",
                ]
                .contains(&label.as_str())
            })
            .map(|(label, count)| format!("{label}: {count}"))
            .collect();
        eprintln!(
            "| {op} | {} | {} | {} | {} | {} | {} | {} |",
            answers.values().sum::<u64>(),
            n("ok"),
            n("503"),
            n("OUTCOME_UNKNOWN"),
            n("MEMBER_BUSY"),
            n("RATE_LIMITED"),
            domain.join(", ")
        );
    }
    for fault in Fault::ALL {
        assert!(
            counts.get(fault.name()).is_some_and(|n| *n > 0),
            "{fault:?} never injected: {counts:?}"
        );
    }
    let violations = w.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} dishonest or malformed answers:\n{}",
        violations.len(),
        violations.join("\n")
    );
    for op in [
        "log_in",
        "refresh_token",
        "switch_tenant",
        "log_out",
        "create_membership_invitation",
        "delete_membership_invitation",
        "accept_membership_invitation",
        "set_membership_role",
        "delete_membership",
    ] {
        assert!(
            tally.get(op).is_some_and(|a| a.get("ok").is_some()),
            "{op} never succeeded: {tally:?}"
        );
    }

    // Faults off: a lease whose release a fault prevented ends by itself.
    w.p.h
        .clock
        .set(w.p.h.now() + apikeys_service::LEASE + Duration::seconds(1));
    w.p.h.assert_consistent().await;
    assert_sessions_and_invitations(&w).await;
    assert_acceptances_recorded(&w).await;
}

/// A refresh whose transaction applied and whose answer was lost, cut off
/// by the request's deadline while it tried again, was answered 503
/// "nobody was signed in; try again", though its old tokens no longer
/// worked and sending it again answered `session_ended`: the person was
/// signed out by an answer that said nothing changed. A write whose
/// outcome is unknown is `OUTCOME_UNKNOWN` (as the member path answers at
/// its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_cut_off_by_its_deadline_after_its_write_is_never_answered_as_nothing_changed() {
    let p = provider_with(&[]).await;
    let proxy = FaultProxy::start(&endpoint(), Plan::Off, 17)
        .await
        .expect("proxy");
    // A 0.5 s deadline: shorter than the retries of an unanswered write.
    let env = [
        ("OIDC_ISSUER", ISSUER),
        ("OIDC_CLIENT_ID", CLIENT),
        ("OIDC_JWKS_URL", p.jwks.url.as_str()),
        ("DYNAMODB_ATTEMPT_TIMEOUT_MS", "300"),
        ("DYNAMODB_OPERATION_TIMEOUT_MS", "1000"),
        ("REQUEST_TIMEOUT_MS", "1000"),
    ];
    let (app, _) = p.h.app_via(&proxy.endpoint(), &env);
    p.link("alice-sub", p.h.tenant.admin_id).await;
    let send = |auth: Option<String>, query: &'static str, vars: Value| {
        let app = &app;
        async move {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let body = prefect_body(query, Some(vars));
            let response =
                apikeys_graphql::handle(app, event(Route::RestGraphql, "POST", &body, &headers))
                    .await;
            let json: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
            (response.status().as_u16(), json)
        }
    };
    let token = p.sign(&p.claims("alice-sub", "alice@example.com"));
    let (_, signed) = send(None, LOG_IN, json!({"t": token})).await;
    let s = tokens(&signed["data"]["log_in"]).unwrap_or_else(|| panic!("{signed}"));
    // The refresh's transaction applies and its answer is lost; every
    // later attempt gets no answer.
    proxy.set_plan(Plan::FailNext {
        count: 1,
        fault: Fault::ResetAfter,
        operation: Some("TransactWriteItems"),
    });
    let watcher = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while !proxy.counts().contains_key("reset-after") {
                tokio::time::sleep(StdDuration::from_millis(1)).await;
            }
            proxy.set_plan(Plan::Random {
                rate: 1.0,
                faults: vec![Fault::Stall],
            });
        })
    };
    let refresh = Some(format!("Bearer {}", s.refresh));
    let (status, reply) = send(refresh.clone(), REFRESH, json!({"a": s.access})).await;
    watcher.await.expect("watcher");
    proxy.set_plan(Plan::Off);
    let replaced =
        p.h.service()
            .authenticate_session(&s.access, None)
            .await
            .is_err();
    let (_, again) = send(refresh, REFRESH, json!({"a": s.access})).await;
    assert!(replaced, "the refresh did not apply: {status} {reply}");
    assert!(
        status != 503,
        "a refresh that replaced the session's tokens was answered {status} {reply}; sent again \
         as invited: {again}"
    );
    assert_eq!(error_code(&reply), "OUTCOME_UNKNOWN", "{status} {reply}");
}
