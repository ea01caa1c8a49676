//! Schema migrations of careloop: one ordered set that runs unchanged on SQLite and PostgreSQL.
//!
//! Invariants: every migration has a working `down`, so `Migrator::down(db, None)` leaves no
//! careloop table behind; tables and indexes are built with sea-query's schema builders, and raw
//! SQL appears only where the backends differ (the triggers that keep `audit_log` append-only).
//! Apply with [`Migrator`] through [`MigratorTrait`] (`up`, `down`, `status`), e.g. from a CLI.

mod m20250601_000001_initial_schema;
mod m20250601_000002_audit_log_append_only;
mod m20261127_000003_alerts_and_dialogs;
mod m20261127_000004_outbox_and_inbound;
mod m20261127_000005_campaigns;
mod m20261127_000006_adherence_and_alert_mail;

pub use m20250601_000002_audit_log_append_only::APPEND_ONLY_MESSAGE;
use sea_orm_migration::async_trait;
pub use sea_orm_migration::{MigrationTrait, MigratorTrait, sea_orm};

/// Every table the migrations create (not counting `seaql_migrations`, the migration ledger).
pub const TABLES: &[&str] = &[
    "organizations",
    "staff_users",
    "patients",
    "patient_channel_opt_outs",
    "conditions",
    "patient_conditions",
    "channel_identities",
    "content_items",
    "content_versions",
    "conversations",
    "messages",
    "medication_schedules",
    "campaigns",
    "reminder_occurrences",
    "delivery_attempts",
    "adherence_events",
    "audit_log",
    "alerts",
    "patient_dialogs",
    "inbound_events",
    "enrolment_codes",
    "patient_dates",
];

/// The careloop migrations, in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250601_000001_initial_schema::Migration),
            Box::new(m20250601_000002_audit_log_append_only::Migration),
            Box::new(m20261127_000003_alerts_and_dialogs::Migration),
            Box::new(m20261127_000004_outbox_and_inbound::Migration),
            Box::new(m20261127_000005_campaigns::Migration),
            Box::new(m20261127_000006_adherence_and_alert_mail::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

    async fn table_names(db: &sea_orm::DatabaseConnection) -> Vec<String> {
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect()
    }

    #[test]
    fn tables_lists_the_initial_schema_first() {
        let initial = m20250601_000001_initial_schema::CREATE_ORDER;
        assert_eq!(&TABLES[..initial.len()], initial);
    }

    #[tokio::test]
    async fn up_down_up_on_in_memory_sqlite() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        Migrator::up(&db, None).await.unwrap();
        let names = table_names(&db).await;
        for table in TABLES {
            assert!(
                names.iter().any(|n| n == table),
                "missing {table}: {names:?}"
            );
        }
        assert_eq!(
            Migrator::get_pending_migrations(&db).await.unwrap().len(),
            0
        );

        Migrator::down(&db, None).await.unwrap();
        assert_eq!(table_names(&db).await, vec!["seaql_migrations".to_owned()]);
        assert_eq!(
            Migrator::get_applied_migrations(&db).await.unwrap().len(),
            0
        );

        Migrator::up(&db, None).await.unwrap();
        assert_eq!(table_names(&db).await.len(), TABLES.len() + 1);
    }
}
