//! Test 6: staff passwords are stored as Argon2 PHC strings and checked correctly.

use careloop_core::*;
use careloop_store::*;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};

use crate::common::on_both_backends;
use crate::fixtures::*;

on_both_backends!(passwords_are_argon2_and_verified);

const PASSWORD: &str = "correct horse battery staple";

async fn stored_hash(store: &Store, id: StaffUserId) -> String {
    let stmt = Query::select()
        .column(Alias::new("password_hash"))
        .from(Alias::new("staff_users"))
        .and_where(Expr::col(Alias::new("id")).eq(id.as_uuid()))
        .to_owned();
    let row = store.connection().query_one(&stmt).await.unwrap().unwrap();
    row.try_get::<String>("", "password_hash").unwrap()
}

async fn passwords_are_argon2_and_verified(store: &Store) {
    let org = org(store, "clinic").await;
    let user = staff(store, org.id, "nurse@example.org", Role::CareTeam).await;
    let email: EmailAddress = "nurse@example.org".parse().unwrap();

    let ok = store
        .staff_users()
        .verify_password(org.id, &email, PASSWORD)
        .await
        .unwrap();
    assert_eq!(ok, Some(user.clone()));
    assert_eq!(
        store
            .staff_users()
            .verify_password(org.id, &email, "correct horse battery stapl")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .staff_users()
            .verify_password(org.id, &email, "")
            .await
            .unwrap(),
        None
    );
    let unknown: EmailAddress = "nobody@example.org".parse().unwrap();
    assert_eq!(
        store
            .staff_users()
            .verify_password(org.id, &unknown, PASSWORD)
            .await
            .unwrap(),
        None
    );

    let hash = stored_hash(store, user.id).await;
    assert_ne!(hash, PASSWORD);
    assert!(!hash.contains(PASSWORD));
    assert!(
        hash.starts_with("$argon2id$v=19$m="),
        "not an Argon2id PHC string: {hash}"
    );
    assert_eq!(hash.split('$').count(), 6, "PHC: $alg$v$params$salt$hash");

    // A second user with the same password gets a different salt.
    let other = staff(store, org.id, "other@example.org", Role::CareTeam).await;
    assert_ne!(stored_hash(store, other.id).await, hash);

    // Changing the password replaces the hash; the old password stops working.
    store
        .staff_users()
        .set_password(org.id, user.id, "a new passphrase")
        .await
        .unwrap();
    assert_eq!(
        store
            .staff_users()
            .verify_password(org.id, &email, PASSWORD)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .staff_users()
            .verify_password(org.id, &email, "a new passphrase")
            .await
            .unwrap()
            .is_some()
    );

    // Deactivated staff cannot log in even with the right password.
    store
        .staff_users()
        .set_active(org.id, user.id, false)
        .await
        .unwrap();
    assert_eq!(
        store
            .staff_users()
            .verify_password(org.id, &email, "a new passphrase")
            .await
            .unwrap(),
        None
    );

    // Same email twice in one organization is a conflict; empty passwords are refused.
    assert!(matches!(
        store
            .staff_users()
            .create(
                org.id,
                NewStaffUser {
                    email: email.clone(),
                    display_name: "Twin".parse().unwrap(),
                    role: Role::Admin
                },
                PASSWORD,
            )
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store
            .staff_users()
            .create(
                org.id,
                NewStaffUser {
                    email: "x@example.org".parse().unwrap(),
                    display_name: "X".parse().unwrap(),
                    role: Role::Admin
                },
                "",
            )
            .await,
        Err(StoreError::Invalid(_))
    ));
}
