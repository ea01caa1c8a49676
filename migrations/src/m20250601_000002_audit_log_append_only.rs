//! Makes `audit_log` append-only inside the database itself, so that not even a hand-written
//! statement can rewrite history. Triggers differ between backends, so this is raw SQL chosen by
//! backend.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The error text both backends raise when something tries to change or remove an audit entry.
pub const APPEND_ONLY_MESSAGE: &str = "audit_log is append-only";

const POSTGRES_UP: &[&str] = &[
    "CREATE OR REPLACE FUNCTION careloop_audit_log_append_only() RETURNS trigger AS $$
     BEGIN
         RAISE EXCEPTION 'audit_log is append-only';
     END;
     $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_log_append_only
     BEFORE UPDATE OR DELETE ON audit_log
     FOR EACH ROW EXECUTE FUNCTION careloop_audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate
     BEFORE TRUNCATE ON audit_log
     FOR EACH STATEMENT EXECUTE FUNCTION careloop_audit_log_append_only()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "DROP FUNCTION IF EXISTS careloop_audit_log_append_only()",
];

const SQLITE_UP: &[&str] = &[
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER IF EXISTS audit_log_no_delete",
    "DROP TRIGGER IF EXISTS audit_log_no_update",
];

fn statements(backend: DbBackend, up: bool) -> Result<&'static [&'static str], DbErr> {
    match (backend, up) {
        (DbBackend::Postgres, true) => Ok(POSTGRES_UP),
        (DbBackend::Postgres, false) => Ok(POSTGRES_DOWN),
        (DbBackend::Sqlite, true) => Ok(SQLITE_UP),
        (DbBackend::Sqlite, false) => Ok(SQLITE_DOWN),
        (other, _) => Err(DbErr::BackendNotSupported {
            db: other.as_str(),
            ctx: "audit_log append-only triggers",
        }),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in statements(manager.get_database_backend(), true)? {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for sql in statements(manager.get_database_backend(), false)? {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
