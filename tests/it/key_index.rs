//! A service account's key index: its keys are read by id, never found
//! among every service-account key of the tenant; every write keeps the
//! index; an index left incomplete (keys written before it existed) is
//! never trusted, and the operator's repair completes it.

use apikeys_core::domain::AccountType;
use apikeys_core::principal::Principal;
use apikeys_service::sweep::Sweeper;
use apikeys_service::KeyRequest;
use apikeys_tests::Harness;
use uuid::Uuid;

async fn admin(h: &Harness) -> Principal {
    h.service()
        .authenticate(Some(&h.tenant.admin_key), None)
        .await
        .unwrap()
}

async fn indexed(h: &Harness, sa: Uuid) -> Vec<Uuid> {
    let m = h
        .service()
        .store()
        .membership(h.tenant.id, sa)
        .await
        .unwrap()
        .unwrap();
    m.key_ids.into_iter().collect()
}

async fn key(h: &Harness, p: &Principal, sa: Uuid, name: &str) -> Uuid {
    let request = KeyRequest {
        name,
        expires_at: None,
        role_ceiling: None,
        allowed_networks: Vec::new(),
        scopes: Vec::new(),
    };
    h.service()
        .create_api_key(p, sa, request, None)
        .await
        .unwrap()
        .0
        .id
}

#[tokio::test]
async fn removing_one_account_reads_its_keys_alone() {
    let h = Harness::new().await;
    let p = admin(&h).await;
    let mut accounts = Vec::new();
    for name in ["a", "b", "c"] {
        let sa = h
            .service()
            .create_service_account(&p, name, None, None)
            .await
            .unwrap();
        for i in 0..5 {
            key(&h, &p, sa, &format!("{name}{i}")).await;
        }
        accounts.push(sa);
    }
    h.assert_consistent().await;
    h.counter.reset();
    assert!(h
        .service()
        .delete_service_account(&p, accounts[1])
        .await
        .unwrap());
    // The membership, the tenant, and its five keys: not the 15 keys of
    // the three accounts.
    assert_eq!(
        h.counter.items_read(),
        1 + 1 + 5,
        "{:?}",
        h.counter.snapshot()
    );
    assert_eq!(h.counter.snapshot().get("Query"), None);
    // The admin's key and the ten of the two accounts left.
    assert_eq!(h.assert_consistent().await, 11);
}

#[tokio::test]
async fn every_write_keeps_the_index() {
    let h = Harness::new().await;
    let p = admin(&h).await;
    let sa = h
        .service()
        .create_service_account(&p, "bot", None, None)
        .await
        .unwrap();
    // The sweeps' checkpoint starts here.
    let sweeper = Sweeper::new(h.service().store().clone());
    sweeper.sweep(h.now(), None).await.unwrap();
    let first = key(&h, &p, sa, "first").await;
    let second = key(&h, &p, sa, "second").await;
    let mut ids = indexed(&h, sa).await;
    ids.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(ids, want);
    // Rotated at once: the old id leaves as the new one comes.
    let rotated = h
        .service()
        .rotate_api_key(&p, first, Some(0))
        .await
        .unwrap();
    h.assert_consistent().await;
    assert!(indexed(&h, sa).await.contains(&rotated.key.id));
    assert!(!indexed(&h, sa).await.contains(&first));
    // With a grace both stay until the old one is swept.
    let graced = h
        .service()
        .rotate_api_key(&p, second, Some(60))
        .await
        .unwrap();
    h.assert_consistent().await;
    assert_eq!(indexed(&h, sa).await.len(), 3);
    h.clock.set(h.now() + time::Duration::seconds(61));
    sweeper.sweep(h.now(), None).await.unwrap();
    h.assert_consistent().await;
    assert!(!indexed(&h, sa).await.contains(&second));
    assert!(h.service().revoke_api_key(&p, graced.key.id).await.unwrap());
    assert_eq!(indexed(&h, sa).await, vec![rotated.key.id]);
    h.assert_consistent().await;
}

#[tokio::test]
async fn an_incomplete_index_is_not_trusted_and_repair_completes_it() {
    let h = Harness::new().await;
    let p = admin(&h).await;
    let sa = h
        .service()
        .create_service_account(&p, "legacy", None, None)
        .await
        .unwrap();
    let other = h
        .service()
        .create_service_account(&p, "other", None, None)
        .await
        .unwrap();
    key(&h, &p, other, "theirs").await;
    // Keys written before the index existed: counted, not indexed.
    let old = h.seed_keys(sa, AccountType::Service, 4).await;
    h.count_keys(h.tenant.id, sa, &old, false).await;
    // One added since: the index holds 1 id for 5 keys.
    key(&h, &p, sa, "new").await;
    assert_eq!(indexed(&h, sa).await.len(), 1);
    let findings = h
        .service()
        .check_tenant(&h.tenant.slug, false)
        .await
        .unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.what.contains("misses 4 of its 5 key(s)")
                && f.what.contains("never verified")),
        "{findings:?}"
    );
    h.service()
        .check_tenant(&h.tenant.slug, true)
        .await
        .unwrap();
    assert_eq!(indexed(&h, sa).await.len(), 5);
    h.assert_consistent().await;
    assert!(h
        .service()
        .check_tenant(&h.tenant.slug, false)
        .await
        .unwrap()
        .is_empty());
}

/// What an earlier version's rotation without grace leaves (it does not
/// know the index): the old key's id indexed, the new key not, the count
/// unchanged. Nothing on the membership tells; the operator's repair
/// (which lists every key of the tenant) does, and rebuilds the index.
#[tokio::test]
async fn repair_finds_an_index_an_earlier_version_left_wrong() {
    let h = Harness::new().await;
    let p = admin(&h).await;
    let sa = h
        .service()
        .create_service_account(&p, "bot", None, None)
        .await
        .unwrap();
    let k1 = key(&h, &p, sa, "k1").await;
    let k2 = h.seed_keys(sa, AccountType::Service, 1).await[0];
    let old = h
        .service()
        .store()
        .key(h.tenant.id, AccountType::Service, sa, k1)
        .await
        .unwrap()
        .unwrap();
    for (pk, sk) in [
        (format!("hash#{}", old.hash.as_str()), "hash".to_string()),
        (h.tenant.id.to_string(), format!("skey#{k1}")),
    ] {
        h.client
            .delete_item()
            .table_name(&h.table)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(indexed(&h, sa).await, vec![k1]);
    let findings = h
        .service()
        .check_tenant(&h.tenant.slug, true)
        .await
        .unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.repaired && f.what.contains("misses 1 of its 1 key(s) and names 1 gone")),
        "{findings:?}"
    );
    assert_eq!(indexed(&h, sa).await, vec![k2]);
    h.assert_consistent().await;
    // Now removed with the key the index had missed.
    assert!(h.service().delete_service_account(&p, sa).await.unwrap());
    assert_eq!(h.assert_consistent().await, 1);
}

#[tokio::test]
async fn an_account_whose_index_is_incomplete_is_removed_with_every_key() {
    let h = Harness::new().await;
    let p = admin(&h).await;
    let sa = h
        .service()
        .create_service_account(&p, "legacy", None, None)
        .await
        .unwrap();
    let old = h.seed_keys(sa, AccountType::Service, 3).await;
    h.count_keys(h.tenant.id, sa, &old, false).await;
    key(&h, &p, sa, "new").await;
    assert!(h.service().delete_service_account(&p, sa).await.unwrap());
    // Found the slow way: none left behind to authenticate.
    assert_eq!(h.assert_consistent().await, 1);
}
