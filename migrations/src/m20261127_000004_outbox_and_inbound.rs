//! The outbox and inbound idempotency of the channels.
//!
//! - `messages` gains what the outbox needs to send an outbound message from any process:
//!   `attempts`, `next_attempt_at` (also the claim lease of the process sending it),
//!   `delivery_meta` (buttons, subject, threading) and the provider's id of what was sent.
//! - `inbound_events`: every channel update (Telegram update, inbound email, web chat message)
//!   is persisted here first, keyed by the channel's own id, and processed after; a redelivered
//!   update hits the unique key and is processed once.
//! - `enrolment_codes`: one-time codes a care team gives a patient to link a channel (Telegram
//!   `/start <code>`); only a hash of the code is stored.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(Messages::Attempts)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
            timestamp_with_time_zone_null(Messages::NextAttemptAt),
            json_null(Messages::DeliveryMeta),
            string_null(Messages::ProviderMessageId),
        ];
        for column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_outbox")
                    .table(Messages::Table)
                    .col(Messages::Direction)
                    .col(Messages::Status)
                    .col(Messages::NextAttemptAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(InboundEvents::Table)
                    .col(pk_uuid(InboundEvents::Id))
                    .col(uuid(InboundEvents::OrganizationId))
                    .col(string(InboundEvents::Channel))
                    .col(string_uniq(InboundEvents::IdempotencyKey))
                    .col(json_null(InboundEvents::Payload))
                    .col(string(InboundEvents::Status))
                    .col(integer(InboundEvents::Attempts).default(0))
                    .col(string_null(InboundEvents::Error))
                    .col(timestamp_with_time_zone(InboundEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(InboundEvents::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(InboundEvents::ProcessedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_inbound_events_organization_id")
                            .from(InboundEvents::Table, InboundEvents::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_inbound_events_pending")
                    .table(InboundEvents::Table)
                    .col(InboundEvents::Status)
                    .col(InboundEvents::NextAttemptAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EnrolmentCodes::Table)
                    .col(pk_uuid(EnrolmentCodes::Id))
                    .col(uuid(EnrolmentCodes::OrganizationId))
                    .col(uuid(EnrolmentCodes::PatientId))
                    .col(string_uniq(EnrolmentCodes::CodeHash))
                    .col(timestamp_with_time_zone(EnrolmentCodes::ExpiresAt))
                    .col(timestamp_with_time_zone_null(EnrolmentCodes::UsedAt))
                    .col(timestamp_with_time_zone(EnrolmentCodes::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_enrolment_codes_organization_id")
                            .from(EnrolmentCodes::Table, EnrolmentCodes::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_enrolment_codes_patient_id")
                            .from(EnrolmentCodes::Table, EnrolmentCodes::PatientId)
                            .to(Patients::Table, Patients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["enrolment_codes", "inbound_events"] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_messages_outbox")
                    .table(Messages::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Messages::ProviderMessageId,
            Messages::DeliveryMeta,
            Messages::NextAttemptAt,
            Messages::Attempts,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Direction,
    Status,
    Attempts,
    NextAttemptAt,
    DeliveryMeta,
    ProviderMessageId,
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    Id,
    OrganizationId,
    Channel,
    IdempotencyKey,
    Payload,
    Status,
    Attempts,
    Error,
    ReceivedAt,
    NextAttemptAt,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum EnrolmentCodes {
    Table,
    Id,
    OrganizationId,
    PatientId,
    CodeHash,
    ExpiresAt,
    UsedAt,
    CreatedAt,
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
