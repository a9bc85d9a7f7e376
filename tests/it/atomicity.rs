//! Writes are all or nothing: after any failed condition no item is left
//! behind, proven by reading the whole table.

use apikeys_core::audit::AuditAction;
use std::sync::Arc;

use apikeys_core::domain::{AccountType, LeaseKind, Role};
use apikeys_service::operator::NewUser;
use apikeys_service::LEASE;
use apikeys_store::{Acquired, KeyInsert, MemberInsert, MembershipDelete, StoredKey};
use apikeys_tests::Harness;
use uuid::Uuid;

fn key_for(h: &Harness, owner: Uuid, owner_type: AccountType) -> StoredKey {
    h.stored_key("raced", owner, owner_type, None)
}

#[tokio::test]
async fn a_key_for_an_owner_removed_meanwhile_is_not_written_at_all() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let p = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    assert!(h
        .service()
        .delete_membership(&p, bob.membership_id)
        .await
        .unwrap());
    let before = h.items().await;
    // The store's transaction writes the hash lookup first: its failure on the
    // membership condition must take the lookup with it.
    let outcome = h
        .service()
        .store()
        .insert_key(
            &key_for(&h, bob.user_id, AccountType::User),
            None,
            &h.audit(AuditAction::KeyCreated, Uuid::new_v4()),
        )
        .await
        .unwrap();
    assert_eq!(outcome, KeyInsert::OwnerRefused);
    assert_eq!(h.items().await, before);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_service_account_key_created_by_a_demoted_admin_is_not_written() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::TenantAdmin).await;
    let p = h
        .service()
        .authenticate(Some(&bob.key), None)
        .await
        .unwrap();
    let sa = h
        .service()
        .create_service_account(&p, "bot", None, None)
        .await
        .unwrap();
    let admin = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    h.service()
        .set_membership_role(&admin, bob.membership_id, Role::User.id())
        .await
        .unwrap();
    let before = h.items().await;
    let outcome = h
        .service()
        .store()
        .insert_key(
            &key_for(&h, sa, AccountType::Service),
            Some(bob.user_id),
            &h.audit(AuditAction::KeyCreated, Uuid::new_v4()),
        )
        .await
        .unwrap();
    assert_eq!(outcome, KeyInsert::CallerNotAdmin);
    assert_eq!(h.items().await, before);
}

#[tokio::test]
async fn removing_a_member_with_a_stale_key_list_deletes_nothing() {
    let h = Harness::new().await;
    let bob = h.add_member("acme", "bob", Role::User).await;
    let store = h.service().store();
    let now = h.now();
    let Acquired::Held(member) = store
        .acquire_lease(
            h.tenant.id,
            bob.user_id,
            LeaseKind::Removing,
            now,
            now + LEASE,
        )
        .await
        .unwrap()
    else {
        panic!("lease not taken")
    };
    let token = member.lease.unwrap().token;
    let keys = store.keys_of_user(h.tenant.id, bob.user_id).await.unwrap();
    // While the lease holds, no key can be added.
    let audit = h.audit(AuditAction::KeyCreated, Uuid::new_v4());
    let blocked = store
        .insert_key(&key_for(&h, bob.user_id, AccountType::User), None, &audit)
        .await
        .unwrap();
    assert_eq!(blocked, KeyInsert::OwnerRefused);
    // Once it has run out, a key is added (which clears the lease) after the
    // list was read: the removal's transaction, still holding the old token,
    // deletes nothing.
    h.clock.set(now + LEASE + time::Duration::seconds(1));
    let added = store
        .insert_key(&key_for(&h, bob.user_id, AccountType::User), None, &audit)
        .await
        .unwrap();
    assert_eq!(added, KeyInsert::Written);
    let before = h.items().await;
    let outcome = store
        .delete_membership(
            &member,
            token,
            &keys,
            None,
            &h.audit(AuditAction::MemberRemoved, bob.user_id),
        )
        .await
        .unwrap();
    assert_eq!(outcome, MembershipDelete::LeaseLost);
    assert_eq!(h.items().await, before);
    h.assert_consistent().await;
}

#[tokio::test]
async fn a_tenant_with_a_taken_slug_writes_no_user_membership_or_key() {
    let h = Harness::new().await;
    let before = h.items().await;
    let user = NewUser {
        username: "newcomer",
        email: None,
    };
    let err = h.service().create_tenant("Again", "acme", user, "k").await;
    assert!(err.is_err());
    assert_eq!(h.items().await, before);
}

#[tokio::test]
async fn concurrent_revocations_of_one_key_succeed_once() {
    let h = Arc::new(Harness::new().await);
    let reply = h
        .create_key(&h.tenant.admin_key, h.tenant.admin_id, "twice", None)
        .await;
    let id: Uuid = serde_json::from_value(reply["data"]["create_api_key"]["id"].clone()).unwrap();
    let p = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        h.service().revoke_api_key(&p, id),
        h.service().revoke_api_key(&p, id)
    );
    let results = [a.unwrap(), b.unwrap()];
    assert_eq!(results.iter().filter(|r| **r).count(), 1, "{results:?}");
    assert_eq!(h.assert_consistent().await, 1);
}

#[tokio::test]
async fn concurrent_creates_never_exceed_the_per_owner_limit() {
    let h = Harness::new().await;
    for i in 1..38 {
        h.create_key(
            &h.tenant.admin_key,
            h.tenant.admin_id,
            &format!("k{i}"),
            None,
        )
        .await;
    }
    let p = h
        .service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap();
    let create = || async {
        let request = apikeys_service::KeyRequest {
            name: "racer",
            expires_at: None,
            role_ceiling: None,
            allowed_networks: Vec::new(),
            scopes: Vec::new(),
        };
        h.service()
            .create_api_key(&p, h.tenant.admin_id, request, None)
            .await
            .is_ok()
    };
    let results = tokio::join!(create(), create(), create(), create(), create());
    let made = [results.0, results.1, results.2, results.3, results.4]
        .iter()
        .filter(|r| **r)
        .count();
    assert!(made <= 2, "{made} keys made past 38");
    assert_eq!(h.assert_consistent().await, 38 + made);
}

#[tokio::test]
async fn adding_a_user_whose_membership_cannot_be_written_writes_no_user() {
    let h = Harness::new().await;
    let store = h.service().store();
    let user = apikeys_store::UserRecord {
        id: Uuid::new_v4(),
        username: "ghost".into(),
        email: None,
        created: h.now(),
    };
    // A membership for a tenant that does not exist: the transaction that
    // would write the user, its username and the membership fails whole.
    let membership = apikeys_store::Membership {
        id: Uuid::new_v4(),
        tenant_id: Uuid::new_v4(),
        user_id: user.id,
        username: user.username.clone(),
        email: None,
        account_type: AccountType::User,
        role: Role::User,
        key_count: 0,
        created: h.now(),
        lease: None,
        legacy_mark: false,
        key_ids: Default::default(),
        keys_indexed: false,
        sessions: Vec::new(),
        sessions_version: 0,
    };
    let before = h.items().await;
    let outcome = store
        .insert_member(
            &membership,
            Some(&user),
            &h.audit(AuditAction::MemberAdded, user.id),
        )
        .await
        .unwrap();
    assert_eq!(outcome, MemberInsert::TenantGone);
    assert_eq!(h.items().await, before);
    assert!(store.user_by_username("ghost").await.unwrap().is_none());
}
