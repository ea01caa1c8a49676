//! `Store::connect` on each backend.

use careloop_store::Store;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::common;

async fn pragma(store: &Store, name: &str) -> String {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
        .unwrap()
}

#[tokio::test]
async fn sqlite_file_gets_directory_wal_foreign_keys_and_busy_timeout() {
    let (store, _guard) = common::fresh_sqlite().await;
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();
    assert_eq!(pragma(&store, "journal_mode").await, "wal");
    assert_eq!(pragma(&store, "foreign_keys").await, "1");
    assert_eq!(pragma(&store, "busy_timeout").await, "5000");
}

#[tokio::test]
async fn sqlite_in_memory_migrates_and_keeps_its_data() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let org = crate::fixtures::org(&store, "memory").await;
    assert_eq!(store.organizations().get(org.id).await.unwrap(), Some(org));
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
}

#[tokio::test]
async fn foreign_keys_are_enforced_on_sqlite() {
    let (store, _guard) = common::sqlite_store().await;
    let err = common::raw(
        &store,
        "INSERT INTO patient_conditions (patient_id, condition_id, created_at) \
         VALUES (X'00000000000000000000000000000001', X'00000000000000000000000000000002', '2025-01-01T00:00:00+00:00')",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("foreign key"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_connects_and_pings() {
    let Some((store, _guard)) = common::fresh_postgres().await else {
        return;
    };
    assert_eq!(store.backend(), "postgres");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn bad_url_is_an_error_not_a_panic() {
    assert!(Store::connect("nosuchdb://x").await.is_err());
}
