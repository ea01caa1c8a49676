//! Care-team alerts (raised by safety triage, dosing questions and missed doses) and the small
//! per-patient dialog state the conversation engine keeps between messages (onboarding step, a
//! language switch waiting for confirmation).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .col(pk_uuid(Alerts::Id))
                    .col(uuid(Alerts::OrganizationId))
                    .col(uuid(Alerts::PatientId))
                    .col(string(Alerts::Kind))
                    .col(string_null(Alerts::Category))
                    .col(uuid_null(Alerts::MessageId))
                    .col(json(Alerts::Details))
                    .col(timestamp_with_time_zone(Alerts::CreatedAt))
                    .col(timestamp_with_time_zone_null(Alerts::AcknowledgedAt))
                    .col(uuid_null(Alerts::AcknowledgedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alerts_organization_id")
                            .from(Alerts::Table, Alerts::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alerts_patient_id")
                            .from(Alerts::Table, Alerts::PatientId)
                            .to(Patients::Table, Patients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alerts_message_id")
                            .from(Alerts::Table, Alerts::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alerts_acknowledged_by")
                            .from(Alerts::Table, Alerts::AcknowledgedBy)
                            .to(StaffUsers::Table, StaffUsers::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alerts_organization_open")
                    .table(Alerts::Table)
                    .col(Alerts::OrganizationId)
                    .col(Alerts::AcknowledgedAt)
                    .col(Alerts::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PatientDialogs::Table)
                    .col(pk_uuid(PatientDialogs::PatientId))
                    .col(uuid(PatientDialogs::OrganizationId))
                    .col(json(PatientDialogs::State))
                    .col(timestamp_with_time_zone(PatientDialogs::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_patient_dialogs_patient_id")
                            .from(PatientDialogs::Table, PatientDialogs::PatientId)
                            .to(Patients::Table, Patients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["patient_dialogs", "alerts"] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    OrganizationId,
    PatientId,
    Kind,
    Category,
    MessageId,
    Details,
    CreatedAt,
    AcknowledgedAt,
    AcknowledgedBy,
}

#[derive(DeriveIden)]
enum PatientDialogs {
    Table,
    PatientId,
    OrganizationId,
    State,
    UpdatedAt,
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

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum StaffUsers {
    Table,
    Id,
}
