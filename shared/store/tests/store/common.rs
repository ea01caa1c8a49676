//! Fresh databases for tests: a temporary SQLite file, or a new PostgreSQL database that is
//! dropped again when the guard goes out of scope (even when the test panics).
//!
//! The PostgreSQL admin URL is `CARELOOP_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`. `CARELOOP_TEST_SKIP_POSTGRES=1` skips the
//! PostgreSQL half of every test (for machines without a server); nothing else skips it.

use careloop_store::Store;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var("CARELOOP_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

pub fn skip_postgres() -> bool {
    std::env::var("CARELOOP_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// Keeps a test database alive; dropping it deletes the database.
pub enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Guard::Postgres { admin_url, name } = self else {
            return;
        };
        let (admin_url, db_name) = (admin_url.clone(), name.clone());
        // Drop cannot await; use a private runtime on its own thread.
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let admin = Database::connect(&admin_url).await?;
                admin
                    .execute_unprepared(&format!(
                        "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
                    ))
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!("could not drop test database {name}");
        }
    }
}

/// A connected, *unmigrated* store on a new SQLite file (in a directory that does not exist yet,
/// so `connect` has to create it).
pub async fn fresh_sqlite() -> (Store, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("careloop.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    assert!(path.exists(), "connect must create the database file");
    (store, Guard::Sqlite(dir))
}

/// A connected, *unmigrated* store on a new PostgreSQL database; `None` when skipped.
pub async fn fresh_postgres() -> Option<(Store, Guard)> {
    if skip_postgres() {
        eprintln!("CARELOOP_TEST_SKIP_POSTGRES=1: skipping the PostgreSQL run");
        return None;
    }
    let admin_url = admin_url();
    let name = format!("careloop_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at CARELOOP_TEST_POSTGRES_URL is required: {e}"));
    admin
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE DATABASE \"{name}\""),
        ))
        .await
        .unwrap();
    admin.close().await.unwrap();
    let guard = Guard::Postgres {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url.as_str(), String::new()),
    };
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{prefix}/{name}{query}"))
        .await
        .unwrap();
    Some((store, guard))
}

pub async fn sqlite_store() -> (Store, Guard) {
    let (store, guard) = fresh_sqlite().await;
    store.migrate().await.unwrap();
    (store, guard)
}

pub async fn postgres_store() -> Option<(Store, Guard)> {
    let (store, guard) = fresh_postgres().await?;
    store.migrate().await.unwrap();
    Some((store, guard))
}

/// For each `name`, generates `name::sqlite` and `name::postgres` tests that run
/// `async fn name(store: &Store)` against a fresh migrated database of each backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (store, _guard) = crate::common::sqlite_store().await;
                assert_eq!(store.backend(), "sqlite");
                super::$name(&store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some((store, _guard)) = crate::common::postgres_store().await else {
                    return;
                };
                assert_eq!(store.backend(), "postgres");
                super::$name(&store).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

/// Runs a raw statement, for checks the repositories deliberately cannot express.
pub async fn raw(store: &Store, sql: &str) -> Result<sea_orm::ExecResult, sea_orm::DbErr> {
    store.connection().execute_unprepared(sql).await
}

/// Runs a query returning one `i64` column named `n`.
pub async fn count(store: &Store, sql: &str) -> i64 {
    let backend = store.connection().get_database_backend();
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Names of the tables in the database (excluding SQLite's internal ones).
pub async fn table_names(store: &Store) -> Vec<String> {
    let backend = store.connection().get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        _ => {
            "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        }
    };
    store
        .connection()
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect()
}
