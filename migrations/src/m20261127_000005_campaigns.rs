//! Campaigns: patient dates and campaign steps on reminder occurrences.
//!
//! - `patient_dates`: named dates of a patient that campaign steps may be relative to
//!   (`discharge_date`, `surgery_date`), one per patient and name.
//! - `reminder_occurrences` gains, for campaign occurrences: `campaign_step` (the step's index in
//!   the campaign), `slot_at` (when the step falls for this patient, quiet hours applied; `due_at`
//!   is that or later when the fan-out is paced) and `reason` (why an occurrence is `skipped` or
//!   `cancelled`, e.g. `no_template`, `paused`, so progress can tell them apart and resume knows
//!   which to plan again). The index serves progress, pause, resume and cancel of one campaign.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PatientDates::Table)
                    .col(uuid(PatientDates::PatientId))
                    .col(string(PatientDates::Name))
                    .col(uuid(PatientDates::OrganizationId))
                    .col(date(PatientDates::Date))
                    .col(timestamp_with_time_zone(PatientDates::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(PatientDates::PatientId)
                            .col(PatientDates::Name),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_patient_dates_organization_id")
                            .from(PatientDates::Table, PatientDates::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_patient_dates_patient_id")
                            .from(PatientDates::Table, PatientDates::PatientId)
                            .to(Patients::Table, Patients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        // SQLite adds one column per ALTER TABLE.
        let columns = [
            integer_null(ReminderOccurrences::CampaignStep),
            timestamp_with_time_zone_null(ReminderOccurrences::SlotAt),
            string_null(ReminderOccurrences::Reason),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(ReminderOccurrences::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_reminder_occurrences_campaign")
                    .table(ReminderOccurrences::Table)
                    .col(ReminderOccurrences::CampaignId)
                    .col(ReminderOccurrences::State)
                    .col(ReminderOccurrences::CampaignStep)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_reminder_occurrences_campaign")
                    .table(ReminderOccurrences::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            ReminderOccurrences::Reason,
            ReminderOccurrences::SlotAt,
            ReminderOccurrences::CampaignStep,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ReminderOccurrences::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(
                Table::drop()
                    .table(PatientDates::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum PatientDates {
    Table,
    PatientId,
    Name,
    OrganizationId,
    Date,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ReminderOccurrences {
    Table,
    CampaignId,
    State,
    CampaignStep,
    SlotAt,
    Reason,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
}
