//! Test 1: the migrations apply, create every table, roll back to nothing and apply again.

use careloop_migrations::{Migrator, MigratorTrait, TABLES};
use careloop_store::Store;
use sea_orm::DbBackend;

use crate::common;

async fn trigger_count(store: &Store) -> i64 {
    match store.connection().get_database_backend() {
        DbBackend::Sqlite => {
            common::count(
                store,
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger'",
            )
            .await
        }
        _ => {
            common::count(
                store,
                "SELECT count(*) AS n FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 WHERE NOT t.tgisinternal AND c.relname = 'audit_log'",
            )
            .await
        }
    }
}

async fn up_down_up(store: &Store) {
    let db = store.connection();
    assert!(
        common::table_names(store).await.is_empty(),
        "fresh database must be empty"
    );

    Migrator::up(db, None).await.unwrap();
    let tables = common::table_names(store).await;
    for table in TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing after up: {tables:?}"
        );
    }
    assert_eq!(
        tables.len(),
        TABLES.len() + 1,
        "unexpected tables: {tables:?}"
    );
    assert!(tables.iter().any(|t| t == "seaql_migrations"));
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        Migrator::get_applied_migrations(db).await.unwrap().len(),
        Migrator::migrations().len()
    );
    let triggers = trigger_count(store).await;
    assert!(triggers >= 2, "append-only triggers missing: {triggers}");

    Migrator::down(db, None).await.unwrap();
    assert_eq!(
        common::table_names(store).await,
        vec!["seaql_migrations".to_owned()]
    );
    assert!(
        Migrator::get_applied_migrations(db)
            .await
            .unwrap()
            .is_empty()
    );
    if db.get_database_backend() == DbBackend::Postgres {
        let functions = common::count(
            store,
            "SELECT count(*) AS n FROM pg_proc WHERE proname = 'careloop_audit_log_append_only'",
        )
        .await;
        assert_eq!(functions, 0, "down must drop the trigger function");
    }

    // And again: down really undid everything, so up works a second time.
    Migrator::up(db, None).await.unwrap();
    assert_eq!(common::table_names(store).await.len(), TABLES.len() + 1);
    assert_eq!(trigger_count(store).await, triggers);

    // The store works on the re-applied schema.
    let org = crate::fixtures::org(store, "after-redo").await;
    assert!(store.organizations().get(org.id).await.unwrap().is_some());

    // `reset` drops the ledger too.
    Migrator::reset(db).await.unwrap();
    assert!(common::table_names(store).await.is_empty());
}

#[tokio::test]
async fn sqlite_up_down_up() {
    let (store, _guard) = common::fresh_sqlite().await;
    up_down_up(&store).await;
}

#[tokio::test]
async fn postgres_up_down_up() {
    let Some((store, _guard)) = common::fresh_postgres().await else {
        return;
    };
    up_down_up(&store).await;
}

#[tokio::test]
async fn store_migrate_is_idempotent_on_sqlite() {
    let (store, _guard) = common::sqlite_store().await;
    store.migrate().await.unwrap();
    assert_eq!(common::table_names(&store).await.len(), TABLES.len() + 1);
}
