//! Missed doses and the care team's alert mail.
//!
//! - `adherence_events (occurrence_id, kind)` is unique: one answer of each kind per reminder
//!   (pressing Taken twice, or two missed-dose sweeps at once, record it once; NULL occurrence ids,
//!   events recorded by staff without a reminder, are not constrained), and the index serves the
//!   missed-dose sweep and a typed "taken", which look for reminders that have no event yet.
//! - `alerts.notified_at`: when the care team was mailed about the alert (set when a notifier
//!   claims it, cleared again if the mail could not be sent), so each alert is mailed once
//!   whichever process notices it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_adherence_events_occurrence")
                    .table(AdherenceEvents::Table)
                    .col(AdherenceEvents::OccurrenceId)
                    .col(AdherenceEvents::Kind)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .add_column(timestamp_with_time_zone_null(Alerts::NotifiedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alerts_notified")
                    .table(Alerts::Table)
                    .col(Alerts::NotifiedAt)
                    .col(Alerts::CreatedAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_alerts_notified")
                    .table(Alerts::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .drop_column(Alerts::NotifiedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_adherence_events_occurrence")
                    .table(AdherenceEvents::Table)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AdherenceEvents {
    Table,
    OccurrenceId,
    Kind,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    NotifiedAt,
    CreatedAt,
}
