//! The initial careloop schema: every table, key and index. Built only with sea-query's schema
//! builders, so the same migration runs on SQLite and PostgreSQL.
//!
//! Conventions: ids are `uuid` columns (UUIDv7 from `careloop-core`), closed sets and constrained
//! values are text holding their canonical string, timestamps are `timestamp with time zone`
//! holding UTC, JSON documents are `json` columns.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children before parents; dropping a table drops its indexes.
        for table in DROP_ORDER {
            manager
                .drop_table(Table::drop().table(*table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Every table this migration creates, in an order where each table comes after those it references
/// (`TABLES` in the crate root starts with these; a test keeps the two in step).
#[cfg_attr(not(test), allow(dead_code))]
pub const CREATE_ORDER: &[&str] = &[
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
];

const DROP_ORDER: &[&str] = &[
    "audit_log",
    "adherence_events",
    "delivery_attempts",
    "reminder_occurrences",
    "campaigns",
    "medication_schedules",
    "messages",
    "conversations",
    "content_versions",
    "content_items",
    "channel_identities",
    "patient_conditions",
    "conditions",
    "patient_channel_opt_outs",
    "patients",
    "staff_users",
    "organizations",
];

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    Slug,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StaffUsers {
    Table,
    Id,
    OrganizationId,
    Email,
    DisplayName,
    Role,
    PasswordHash,
    Active,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
    OrganizationId,
    DisplayName,
    Language,
    ReadingLevel,
    Timezone,
    QuietHours,
    ConsentState,
    ConsentUpdatedAt,
    Tags,
    CreatedAt,
    UpdatedAt,
}

/// A row means "this patient opted out of this channel"; opting back in deletes the row.
#[derive(DeriveIden)]
enum PatientChannelOptOuts {
    Table,
    PatientId,
    Channel,
    OrganizationId,
    OptedOutAt,
}

#[derive(DeriveIden)]
enum Conditions {
    Table,
    Id,
    Code,
    Name,
}

#[derive(DeriveIden)]
enum PatientConditions {
    Table,
    PatientId,
    ConditionId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChannelIdentities {
    Table,
    Id,
    OrganizationId,
    PatientId,
    Channel,
    Address,
    VerifiedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ContentItems {
    Table,
    Id,
    OrganizationId,
    Kind,
    Key,
    /// `''` means "not specific to a condition", so that the unique key treats it as one value on
    /// both backends (a NULL would be distinct from every other NULL).
    ConditionCode,
    Topic,
    Language,
    ReadingLevel,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ContentVersions {
    Table,
    Id,
    ContentItemId,
    Version,
    Title,
    Body,
    FrontMatter,
    ReviewState,
    AuthoredBy,
    SubmittedAt,
    ApprovedBy,
    ApprovedAt,
    RetiredAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    OrganizationId,
    PatientId,
    Channel,
    StartedAt,
    LastMessageAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    OrganizationId,
    ConversationId,
    PatientId,
    Direction,
    Channel,
    Status,
    Body,
    Language,
    IdempotencyKey,
    Provenance,
    FailureReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MedicationSchedules {
    Table,
    Id,
    OrganizationId,
    PatientId,
    MedicineName,
    DoseText,
    Rrule,
    Timezone,
    StartsOn,
    EndsOn,
    QuietHoursPolicy,
    Channels,
    Active,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Campaigns {
    Table,
    Id,
    OrganizationId,
    Name,
    State,
    Audience,
    Steps,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ReminderOccurrences {
    Table,
    Id,
    OrganizationId,
    ScheduleId,
    CampaignId,
    PatientId,
    DueAt,
    State,
    IdempotencyKey,
    MessageId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    OrganizationId,
    MessageId,
    Attempt,
    Outcome,
    Error,
    ProviderMessageId,
    AttemptedAt,
}

#[derive(DeriveIden)]
enum AdherenceEvents {
    Table,
    Id,
    OrganizationId,
    PatientId,
    OccurrenceId,
    Kind,
    SourceChannel,
    RecordedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    OrganizationId,
    Actor,
    Action,
    EntityType,
    EntityId,
    Details,
    CreatedAt,
}

fn tstz<T: IntoIden>(col: T) -> ColumnDef {
    timestamp_with_time_zone(col)
}

fn tstz_null<T: IntoIden>(col: T) -> ColumnDef {
    timestamp_with_time_zone_null(col)
}

/// A foreign key named `fk_<table>_<column>`.
fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::NoAction)
        .to_owned()
}

fn org_fk(name: &str, table: impl IntoIden, column: impl IntoIden) -> ForeignKeyCreateStatement {
    fk(
        name,
        (table, column),
        (Organizations::Table, Organizations::Id),
        ForeignKeyAction::Restrict,
    )
}

fn patient_fk(
    name: &str,
    table: impl IntoIden,
    column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    fk(
        name,
        (table, column),
        (Patients::Table, Patients::Id),
        ForeignKeyAction::Cascade,
    )
}

fn tables() -> Vec<TableCreateStatement> {
    use ForeignKeyAction::{Cascade, SetNull};
    vec![
        Table::create()
            .table(Organizations::Table)
            .col(pk_uuid(Organizations::Id))
            .col(text(Organizations::Name))
            .col(string_uniq(Organizations::Slug))
            .col(tstz(Organizations::CreatedAt))
            .to_owned(),
        Table::create()
            .table(StaffUsers::Table)
            .col(pk_uuid(StaffUsers::Id))
            .col(uuid(StaffUsers::OrganizationId))
            .col(string(StaffUsers::Email))
            .col(text(StaffUsers::DisplayName))
            .col(string(StaffUsers::Role))
            .col(text(StaffUsers::PasswordHash))
            .col(boolean(StaffUsers::Active))
            .col(tstz(StaffUsers::CreatedAt))
            .foreign_key(&mut org_fk(
                "fk_staff_users_organization_id",
                StaffUsers::Table,
                StaffUsers::OrganizationId,
            ))
            .to_owned(),
        Table::create()
            .table(Patients::Table)
            .col(pk_uuid(Patients::Id))
            .col(uuid(Patients::OrganizationId))
            .col(text(Patients::DisplayName))
            .col(string(Patients::Language))
            .col(string(Patients::ReadingLevel))
            .col(string(Patients::Timezone))
            .col(string_null(Patients::QuietHours))
            .col(string(Patients::ConsentState))
            .col(tstz(Patients::ConsentUpdatedAt))
            .col(json(Patients::Tags))
            .col(tstz(Patients::CreatedAt))
            .col(tstz(Patients::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_patients_organization_id",
                Patients::Table,
                Patients::OrganizationId,
            ))
            .to_owned(),
        Table::create()
            .table(PatientChannelOptOuts::Table)
            .col(uuid(PatientChannelOptOuts::PatientId))
            .col(string(PatientChannelOptOuts::Channel))
            .col(uuid(PatientChannelOptOuts::OrganizationId))
            .col(tstz(PatientChannelOptOuts::OptedOutAt))
            .primary_key(
                Index::create()
                    .col(PatientChannelOptOuts::PatientId)
                    .col(PatientChannelOptOuts::Channel),
            )
            .foreign_key(&mut patient_fk(
                "fk_patient_channel_opt_outs_patient_id",
                PatientChannelOptOuts::Table,
                PatientChannelOptOuts::PatientId,
            ))
            .foreign_key(&mut org_fk(
                "fk_patient_channel_opt_outs_organization_id",
                PatientChannelOptOuts::Table,
                PatientChannelOptOuts::OrganizationId,
            ))
            .to_owned(),
        Table::create()
            .table(Conditions::Table)
            .col(pk_uuid(Conditions::Id))
            .col(string_uniq(Conditions::Code))
            .col(text(Conditions::Name))
            .to_owned(),
        Table::create()
            .table(PatientConditions::Table)
            .col(uuid(PatientConditions::PatientId))
            .col(uuid(PatientConditions::ConditionId))
            .col(tstz(PatientConditions::CreatedAt))
            .primary_key(
                Index::create()
                    .col(PatientConditions::PatientId)
                    .col(PatientConditions::ConditionId),
            )
            .foreign_key(&mut patient_fk(
                "fk_patient_conditions_patient_id",
                PatientConditions::Table,
                PatientConditions::PatientId,
            ))
            .foreign_key(&mut fk(
                "fk_patient_conditions_condition_id",
                (PatientConditions::Table, PatientConditions::ConditionId),
                (Conditions::Table, Conditions::Id),
                Cascade,
            ))
            .to_owned(),
        Table::create()
            .table(ChannelIdentities::Table)
            .col(pk_uuid(ChannelIdentities::Id))
            .col(uuid(ChannelIdentities::OrganizationId))
            .col(uuid(ChannelIdentities::PatientId))
            .col(string(ChannelIdentities::Channel))
            .col(text(ChannelIdentities::Address))
            .col(tstz_null(ChannelIdentities::VerifiedAt))
            .col(tstz(ChannelIdentities::CreatedAt))
            .foreign_key(&mut org_fk(
                "fk_channel_identities_organization_id",
                ChannelIdentities::Table,
                ChannelIdentities::OrganizationId,
            ))
            .foreign_key(&mut patient_fk(
                "fk_channel_identities_patient_id",
                ChannelIdentities::Table,
                ChannelIdentities::PatientId,
            ))
            .to_owned(),
        Table::create()
            .table(ContentItems::Table)
            .col(pk_uuid(ContentItems::Id))
            .col(uuid(ContentItems::OrganizationId))
            .col(string(ContentItems::Kind))
            .col(string(ContentItems::Key))
            .col(string(ContentItems::ConditionCode).default(""))
            .col(string_null(ContentItems::Topic))
            .col(string(ContentItems::Language))
            .col(string(ContentItems::ReadingLevel))
            .col(tstz(ContentItems::CreatedAt))
            .col(tstz(ContentItems::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_content_items_organization_id",
                ContentItems::Table,
                ContentItems::OrganizationId,
            ))
            .to_owned(),
        Table::create()
            .table(ContentVersions::Table)
            .col(pk_uuid(ContentVersions::Id))
            .col(uuid(ContentVersions::ContentItemId))
            .col(integer(ContentVersions::Version))
            .col(text(ContentVersions::Title))
            .col(text(ContentVersions::Body))
            .col(json(ContentVersions::FrontMatter))
            .col(string(ContentVersions::ReviewState))
            .col(uuid_null(ContentVersions::AuthoredBy))
            .col(tstz_null(ContentVersions::SubmittedAt))
            .col(uuid_null(ContentVersions::ApprovedBy))
            .col(tstz_null(ContentVersions::ApprovedAt))
            .col(tstz_null(ContentVersions::RetiredAt))
            .col(tstz(ContentVersions::CreatedAt))
            .foreign_key(&mut fk(
                "fk_content_versions_content_item_id",
                (ContentVersions::Table, ContentVersions::ContentItemId),
                (ContentItems::Table, ContentItems::Id),
                Cascade,
            ))
            .foreign_key(&mut fk(
                "fk_content_versions_authored_by",
                (ContentVersions::Table, ContentVersions::AuthoredBy),
                (StaffUsers::Table, StaffUsers::Id),
                SetNull,
            ))
            .foreign_key(&mut fk(
                "fk_content_versions_approved_by",
                (ContentVersions::Table, ContentVersions::ApprovedBy),
                (StaffUsers::Table, StaffUsers::Id),
                SetNull,
            ))
            .to_owned(),
        Table::create()
            .table(Conversations::Table)
            .col(pk_uuid(Conversations::Id))
            .col(uuid(Conversations::OrganizationId))
            .col(uuid(Conversations::PatientId))
            .col(string(Conversations::Channel))
            .col(tstz(Conversations::StartedAt))
            .col(tstz(Conversations::LastMessageAt))
            .foreign_key(&mut org_fk(
                "fk_conversations_organization_id",
                Conversations::Table,
                Conversations::OrganizationId,
            ))
            .foreign_key(&mut patient_fk(
                "fk_conversations_patient_id",
                Conversations::Table,
                Conversations::PatientId,
            ))
            .to_owned(),
        Table::create()
            .table(Messages::Table)
            .col(pk_uuid(Messages::Id))
            .col(uuid(Messages::OrganizationId))
            .col(uuid(Messages::ConversationId))
            .col(uuid(Messages::PatientId))
            .col(string(Messages::Direction))
            .col(string(Messages::Channel))
            .col(string(Messages::Status))
            .col(text(Messages::Body))
            .col(string_null(Messages::Language))
            .col(string_null(Messages::IdempotencyKey).unique_key())
            .col(json_null(Messages::Provenance))
            .col(text_null(Messages::FailureReason))
            .col(tstz(Messages::CreatedAt))
            .col(tstz(Messages::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_messages_organization_id",
                Messages::Table,
                Messages::OrganizationId,
            ))
            .foreign_key(&mut fk(
                "fk_messages_conversation_id",
                (Messages::Table, Messages::ConversationId),
                (Conversations::Table, Conversations::Id),
                Cascade,
            ))
            .foreign_key(&mut patient_fk(
                "fk_messages_patient_id",
                Messages::Table,
                Messages::PatientId,
            ))
            .to_owned(),
        Table::create()
            .table(MedicationSchedules::Table)
            .col(pk_uuid(MedicationSchedules::Id))
            .col(uuid(MedicationSchedules::OrganizationId))
            .col(uuid(MedicationSchedules::PatientId))
            .col(text(MedicationSchedules::MedicineName))
            .col(text(MedicationSchedules::DoseText))
            .col(text(MedicationSchedules::Rrule))
            .col(string(MedicationSchedules::Timezone))
            .col(date(MedicationSchedules::StartsOn))
            .col(date_null(MedicationSchedules::EndsOn))
            .col(string(MedicationSchedules::QuietHoursPolicy))
            .col(json(MedicationSchedules::Channels))
            .col(boolean(MedicationSchedules::Active))
            .col(uuid_null(MedicationSchedules::CreatedBy))
            .col(tstz(MedicationSchedules::CreatedAt))
            .col(tstz(MedicationSchedules::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_medication_schedules_organization_id",
                MedicationSchedules::Table,
                MedicationSchedules::OrganizationId,
            ))
            .foreign_key(&mut patient_fk(
                "fk_medication_schedules_patient_id",
                MedicationSchedules::Table,
                MedicationSchedules::PatientId,
            ))
            .foreign_key(&mut fk(
                "fk_medication_schedules_created_by",
                (MedicationSchedules::Table, MedicationSchedules::CreatedBy),
                (StaffUsers::Table, StaffUsers::Id),
                SetNull,
            ))
            .to_owned(),
        Table::create()
            .table(Campaigns::Table)
            .col(pk_uuid(Campaigns::Id))
            .col(uuid(Campaigns::OrganizationId))
            .col(text(Campaigns::Name))
            .col(string(Campaigns::State))
            .col(json(Campaigns::Audience))
            .col(json(Campaigns::Steps))
            .col(uuid(Campaigns::CreatedBy))
            .col(tstz(Campaigns::CreatedAt))
            .col(tstz(Campaigns::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_campaigns_organization_id",
                Campaigns::Table,
                Campaigns::OrganizationId,
            ))
            .foreign_key(&mut fk(
                "fk_campaigns_created_by",
                (Campaigns::Table, Campaigns::CreatedBy),
                (StaffUsers::Table, StaffUsers::Id),
                ForeignKeyAction::Restrict,
            ))
            .to_owned(),
        Table::create()
            .table(ReminderOccurrences::Table)
            .col(pk_uuid(ReminderOccurrences::Id))
            .col(uuid(ReminderOccurrences::OrganizationId))
            .col(uuid_null(ReminderOccurrences::ScheduleId))
            .col(uuid_null(ReminderOccurrences::CampaignId))
            .col(uuid(ReminderOccurrences::PatientId))
            .col(tstz(ReminderOccurrences::DueAt))
            .col(string(ReminderOccurrences::State))
            .col(string_uniq(ReminderOccurrences::IdempotencyKey))
            .col(uuid_null(ReminderOccurrences::MessageId))
            .col(tstz(ReminderOccurrences::CreatedAt))
            .col(tstz(ReminderOccurrences::UpdatedAt))
            .foreign_key(&mut org_fk(
                "fk_reminder_occurrences_organization_id",
                ReminderOccurrences::Table,
                ReminderOccurrences::OrganizationId,
            ))
            .foreign_key(&mut fk(
                "fk_reminder_occurrences_schedule_id",
                (ReminderOccurrences::Table, ReminderOccurrences::ScheduleId),
                (MedicationSchedules::Table, MedicationSchedules::Id),
                Cascade,
            ))
            .foreign_key(&mut fk(
                "fk_reminder_occurrences_campaign_id",
                (ReminderOccurrences::Table, ReminderOccurrences::CampaignId),
                (Campaigns::Table, Campaigns::Id),
                Cascade,
            ))
            .foreign_key(&mut patient_fk(
                "fk_reminder_occurrences_patient_id",
                ReminderOccurrences::Table,
                ReminderOccurrences::PatientId,
            ))
            .foreign_key(&mut fk(
                "fk_reminder_occurrences_message_id",
                (ReminderOccurrences::Table, ReminderOccurrences::MessageId),
                (Messages::Table, Messages::Id),
                SetNull,
            ))
            .to_owned(),
        Table::create()
            .table(DeliveryAttempts::Table)
            .col(pk_uuid(DeliveryAttempts::Id))
            .col(uuid(DeliveryAttempts::OrganizationId))
            .col(uuid(DeliveryAttempts::MessageId))
            .col(integer(DeliveryAttempts::Attempt))
            .col(string(DeliveryAttempts::Outcome))
            .col(text_null(DeliveryAttempts::Error))
            .col(string_null(DeliveryAttempts::ProviderMessageId))
            .col(tstz(DeliveryAttempts::AttemptedAt))
            .foreign_key(&mut org_fk(
                "fk_delivery_attempts_organization_id",
                DeliveryAttempts::Table,
                DeliveryAttempts::OrganizationId,
            ))
            .foreign_key(&mut fk(
                "fk_delivery_attempts_message_id",
                (DeliveryAttempts::Table, DeliveryAttempts::MessageId),
                (Messages::Table, Messages::Id),
                Cascade,
            ))
            .to_owned(),
        Table::create()
            .table(AdherenceEvents::Table)
            .col(pk_uuid(AdherenceEvents::Id))
            .col(uuid(AdherenceEvents::OrganizationId))
            .col(uuid(AdherenceEvents::PatientId))
            .col(uuid_null(AdherenceEvents::OccurrenceId))
            .col(string(AdherenceEvents::Kind))
            .col(string_null(AdherenceEvents::SourceChannel))
            .col(tstz(AdherenceEvents::RecordedAt))
            .foreign_key(&mut org_fk(
                "fk_adherence_events_organization_id",
                AdherenceEvents::Table,
                AdherenceEvents::OrganizationId,
            ))
            .foreign_key(&mut patient_fk(
                "fk_adherence_events_patient_id",
                AdherenceEvents::Table,
                AdherenceEvents::PatientId,
            ))
            .foreign_key(&mut fk(
                "fk_adherence_events_occurrence_id",
                (AdherenceEvents::Table, AdherenceEvents::OccurrenceId),
                (ReminderOccurrences::Table, ReminderOccurrences::Id),
                SetNull,
            ))
            .to_owned(),
        // No foreign key on organization_id: the audit trail outlives whatever it describes.
        Table::create()
            .table(AuditLog::Table)
            .col(pk_uuid(AuditLog::Id))
            .col(uuid_null(AuditLog::OrganizationId))
            .col(string(AuditLog::Actor))
            .col(string(AuditLog::Action))
            .col(string(AuditLog::EntityType))
            .col(string(AuditLog::EntityId))
            .col(json(AuditLog::Details))
            .col(tstz(AuditLog::CreatedAt))
            .to_owned(),
    ]
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("uq_staff_users_organization_email")
            .table(StaffUsers::Table)
            .col(StaffUsers::OrganizationId)
            .col(StaffUsers::Email)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_patients_organization_id")
            .table(Patients::Table)
            .col(Patients::OrganizationId)
            .col(Patients::CreatedAt)
            .to_owned(),
        Index::create()
            .name("idx_patient_channel_opt_outs_organization_channel")
            .table(PatientChannelOptOuts::Table)
            .col(PatientChannelOptOuts::OrganizationId)
            .col(PatientChannelOptOuts::Channel)
            .to_owned(),
        Index::create()
            .name("idx_patient_conditions_condition_id")
            .table(PatientConditions::Table)
            .col(PatientConditions::ConditionId)
            .to_owned(),
        Index::create()
            .name("uq_channel_identities_organization_channel_address")
            .table(ChannelIdentities::Table)
            .col(ChannelIdentities::OrganizationId)
            .col(ChannelIdentities::Channel)
            .col(ChannelIdentities::Address)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_channel_identities_channel_address")
            .table(ChannelIdentities::Table)
            .col(ChannelIdentities::Channel)
            .col(ChannelIdentities::Address)
            .to_owned(),
        Index::create()
            .name("idx_channel_identities_patient_id")
            .table(ChannelIdentities::Table)
            .col(ChannelIdentities::PatientId)
            .to_owned(),
        Index::create()
            .name("uq_content_items_lookup")
            .table(ContentItems::Table)
            .col(ContentItems::OrganizationId)
            .col(ContentItems::Key)
            .col(ContentItems::ConditionCode)
            .col(ContentItems::Language)
            .col(ContentItems::ReadingLevel)
            .unique()
            .to_owned(),
        Index::create()
            .name("uq_content_versions_item_version")
            .table(ContentVersions::Table)
            .col(ContentVersions::ContentItemId)
            .col(ContentVersions::Version)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_content_versions_item_state")
            .table(ContentVersions::Table)
            .col(ContentVersions::ContentItemId)
            .col(ContentVersions::ReviewState)
            .to_owned(),
        Index::create()
            .name("idx_conversations_patient_channel")
            .table(Conversations::Table)
            .col(Conversations::OrganizationId)
            .col(Conversations::PatientId)
            .col(Conversations::Channel)
            .col(Conversations::LastMessageAt)
            .to_owned(),
        Index::create()
            .name("idx_messages_conversation_created")
            .table(Messages::Table)
            .col(Messages::ConversationId)
            .col(Messages::CreatedAt)
            .to_owned(),
        Index::create()
            .name("idx_messages_organization_patient")
            .table(Messages::Table)
            .col(Messages::OrganizationId)
            .col(Messages::PatientId)
            .to_owned(),
        Index::create()
            .name("idx_medication_schedules_organization_patient")
            .table(MedicationSchedules::Table)
            .col(MedicationSchedules::OrganizationId)
            .col(MedicationSchedules::PatientId)
            .to_owned(),
        Index::create()
            .name("idx_campaigns_organization_id")
            .table(Campaigns::Table)
            .col(Campaigns::OrganizationId)
            .to_owned(),
        Index::create()
            .name("idx_reminder_occurrences_state_due_at")
            .table(ReminderOccurrences::Table)
            .col(ReminderOccurrences::State)
            .col(ReminderOccurrences::DueAt)
            .to_owned(),
        Index::create()
            .name("idx_reminder_occurrences_organization_patient")
            .table(ReminderOccurrences::Table)
            .col(ReminderOccurrences::OrganizationId)
            .col(ReminderOccurrences::PatientId)
            .col(ReminderOccurrences::DueAt)
            .to_owned(),
        Index::create()
            .name("uq_delivery_attempts_message_attempt")
            .table(DeliveryAttempts::Table)
            .col(DeliveryAttempts::MessageId)
            .col(DeliveryAttempts::Attempt)
            .unique()
            .to_owned(),
        Index::create()
            .name("idx_adherence_events_organization_patient")
            .table(AdherenceEvents::Table)
            .col(AdherenceEvents::OrganizationId)
            .col(AdherenceEvents::PatientId)
            .col(AdherenceEvents::RecordedAt)
            .to_owned(),
        Index::create()
            .name("idx_audit_log_organization_created")
            .table(AuditLog::Table)
            .col(AuditLog::OrganizationId)
            .col(AuditLog::CreatedAt)
            .to_owned(),
    ]
}
