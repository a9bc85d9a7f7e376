//! How each store method reads a refused transaction: the labels DynamoDB's
//! cancellation reasons name, and each operation's outcome for every label
//! its transaction holds (and an error for any it does not explain).

use super::tx::{CancelReason, Outcome, Refused};
use super::*;

use CancelReason::{ConditionFailed as Failed, Conflict, None as Fine};

fn refused(parts: &[Part]) -> Outcome {
    Err(Refused::from_reasons(parts, &vec![Failed; parts.len()]))
}

fn unexplained<T: std::fmt::Debug>(result: Result<T>) -> bool {
    matches!(result, Err(StoreError::Unexplained { .. }))
}

#[test]
fn reasons_are_read_against_the_labels_by_position() {
    let parts = [
        Part::NewKey,
        Part::NewKey,
        Part::Member,
        Part::Caller,
        Part::Audit,
    ];
    let r = Refused::from_reasons(&parts, &[Fine, Fine, Failed, Conflict, Fine]);
    assert_eq!(r.parts(), &[Part::Member]);
    assert!(r.has(Part::Member));
    assert!(!r.has(Part::Caller), "a conflict is no refusal");
    let r = Refused::from_reasons(&parts, &[Fine, Fine, Fine, Failed, Fine]);
    assert_eq!(r.parts(), &[Part::Caller]);
}

#[test]
fn the_indexes_of_refused_listed_keys_are_reported() {
    let parts = [
        Part::Member,
        Part::KeyAt(0),
        Part::KeyAt(1),
        Part::KeyAt(2),
        Part::Audit,
    ];
    let r = Refused::from_reasons(&parts, &[Fine, Failed, Fine, Failed, Fine]);
    assert_eq!(r.keys_at(), vec![0, 2]);
}

#[test]
fn reasons_that_do_not_match_the_items_name_nothing() {
    // Fewer reasons than items (an answer from a server that trims them):
    // what cannot be matched is not guessed.
    let r = Refused::from_reasons(&[Part::Member, Part::Caller], &[Fine]);
    assert!(r.parts().is_empty());
    assert!(unexplained(KeyInsert::of(Err(r))));
}

#[test]
fn insert_key() {
    assert_eq!(KeyInsert::of(Ok(())).unwrap(), KeyInsert::Written);
    assert_eq!(
        KeyInsert::of(refused(&[Part::Member])).unwrap(),
        KeyInsert::OwnerRefused
    );
    assert_eq!(
        KeyInsert::of(refused(&[Part::Caller])).unwrap(),
        KeyInsert::CallerNotAdmin
    );
    // The owner is read again first: what it says decides.
    assert_eq!(
        KeyInsert::of(refused(&[Part::Member, Part::Caller])).unwrap(),
        KeyInsert::OwnerRefused
    );
    assert!(unexplained(KeyInsert::of(refused(&[Part::NewKey]))));
    assert!(unexplained(KeyInsert::of(refused(&[Part::Audit]))));
}

#[test]
fn delete_key() {
    assert_eq!(KeyDelete::of(Ok(())).unwrap(), KeyDelete::Deleted);
    assert_eq!(
        KeyDelete::of(refused(&[Part::Key])).unwrap(),
        KeyDelete::KeyGone
    );
    assert_eq!(
        KeyDelete::of(refused(&[Part::Member])).unwrap(),
        KeyDelete::OwnerGone
    );
    assert_eq!(
        KeyDelete::of(refused(&[Part::Caller])).unwrap(),
        KeyDelete::CallerNotAdmin
    );
    // The key gone with its owner: gone, not an orphan to remove alone.
    assert_eq!(
        KeyDelete::of(refused(&[Part::Key, Part::Member])).unwrap(),
        KeyDelete::KeyGone
    );
    assert!(unexplained(KeyDelete::of(refused(&[Part::Audit]))));
}

#[test]
fn rotate_key() {
    assert_eq!(Rotation::of(Ok(())).unwrap(), Rotation::Rotated);
    assert_eq!(
        Rotation::of(refused(&[Part::Member])).unwrap(),
        Rotation::OwnerRefused
    );
    assert_eq!(
        Rotation::of(refused(&[Part::Key])).unwrap(),
        Rotation::OldKeyChanged
    );
    assert_eq!(
        Rotation::of(refused(&[Part::Caller])).unwrap(),
        Rotation::CallerNotAdmin
    );
    assert_eq!(
        Rotation::of(refused(&[Part::Key, Part::Caller])).unwrap(),
        Rotation::OldKeyChanged
    );
    assert!(unexplained(Rotation::of(refused(&[Part::NewKey]))));
}

#[test]
fn insert_membership() {
    assert_eq!(
        MembershipInsert::of(Ok(())).unwrap(),
        MembershipInsert::Written
    );
    assert_eq!(
        MembershipInsert::of(refused(&[Part::Tenant])).unwrap(),
        MembershipInsert::TenantRefused
    );
    assert_eq!(
        MembershipInsert::of(refused(&[Part::Caller])).unwrap(),
        MembershipInsert::CallerNotAdmin
    );
    // A fresh id that exists already is no state of the data.
    assert!(unexplained(MembershipInsert::of(refused(&[
        Part::NewMember
    ]))));
}

#[test]
fn insert_member() {
    assert_eq!(MemberInsert::of(Ok(())).unwrap(), MemberInsert::Written);
    assert_eq!(
        MemberInsert::of(refused(&[Part::NewMember])).unwrap(),
        MemberInsert::AlreadyMember
    );
    assert_eq!(
        MemberInsert::of(refused(&[Part::Tenant])).unwrap(),
        MemberInsert::TenantGone
    );
    assert_eq!(
        MemberInsert::of(refused(&[Part::User])).unwrap(),
        MemberInsert::UserTaken
    );
    assert!(unexplained(MemberInsert::of(refused(&[Part::Audit]))));
}

#[test]
fn delete_membership() {
    assert_eq!(
        MembershipDelete::of(Ok(())).unwrap(),
        MembershipDelete::Deleted
    );
    assert_eq!(
        MembershipDelete::of(refused(&[Part::Tenant])).unwrap(),
        MembershipDelete::LastAdmin
    );
    assert_eq!(
        MembershipDelete::of(refused(&[Part::Caller])).unwrap(),
        MembershipDelete::CallerNotAdmin
    );
    assert_eq!(
        MembershipDelete::of(refused(&[Part::Member])).unwrap(),
        MembershipDelete::LeaseLost
    );
    // The key deletes carry no condition: a refusal of one is a bug.
    assert!(unexplained(MembershipDelete::of(refused(&[Part::KeyAt(
        0
    )]))));
}

#[test]
fn set_role() {
    assert_eq!(RoleSet::of(Ok(())).unwrap(), RoleSet::Set);
    assert_eq!(
        RoleSet::of(refused(&[Part::Tenant])).unwrap(),
        RoleSet::LastAdmin
    );
    assert_eq!(
        RoleSet::of(refused(&[Part::Caller])).unwrap(),
        RoleSet::CallerNotAdmin
    );
    assert_eq!(
        RoleSet::of(refused(&[Part::Member])).unwrap(),
        RoleSet::LeaseLost
    );
    assert_eq!(
        RoleSet::of(refused(&[Part::KeyAt(1), Part::KeyAt(3)])).unwrap(),
        RoleSet::KeysGone(vec![1, 3])
    );
    // The lease lost says more than a key gone since the listing.
    assert_eq!(
        RoleSet::of(refused(&[Part::Member, Part::KeyAt(0)])).unwrap(),
        RoleSet::LeaseLost
    );
    assert!(unexplained(RoleSet::of(refused(&[Part::Audit]))));
}

#[test]
fn insert_tenant() {
    assert_eq!(TenantInsert::of(Ok(())).unwrap(), TenantInsert::Written);
    assert_eq!(
        TenantInsert::of(refused(&[Part::Slug])).unwrap(),
        TenantInsert::SlugTaken
    );
    assert_eq!(
        TenantInsert::of(refused(&[Part::User])).unwrap(),
        TenantInsert::UserTaken
    );
    assert!(unexplained(TenantInsert::of(refused(&[Part::NewTenant]))));
}

#[test]
fn set_disabled() {
    assert_eq!(KeyToggle::of(Ok(())).unwrap(), KeyToggle::Done);
    assert_eq!(
        KeyToggle::of(refused(&[Part::Key])).unwrap(),
        KeyToggle::KeyUnchanged
    );
    assert_eq!(
        KeyToggle::of(refused(&[Part::Caller])).unwrap(),
        KeyToggle::CallerNotAdmin
    );
    assert!(unexplained(KeyToggle::of(refused(&[Part::Audit]))));
}

#[test]
fn a_refusal_without_a_part_keeps_the_others() {
    let r = Refused::from_reasons(&[Part::Member, Part::ActingKey], &[Failed, Failed])
        .without(Part::ActingKey);
    assert_eq!(r.parts(), &[Part::Member]);
}
