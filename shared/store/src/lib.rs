//! Persistence of careloop: sea-orm entities and repositories over SQLite or PostgreSQL.
//!
//! Callers only ever see `careloop-core` domain types; rows are converted at this boundary and a
//! row that does not parse back is [`StoreError::Corrupt`], never a panic. Every read or write of
//! organization-owned data takes the [`OrganizationId`](careloop_core::OrganizationId) and filters
//! by it, so one tenant can never see another's rows. Content versions are immutable (only their
//! review state moves) and the audit log is append-only, enforced by database triggers as well.

mod convert;
mod entities;
mod error;
mod repos;
mod store;

pub use error::{StoreError, StoreResult};
pub use repos::{
    adherence::{AdherenceEvent, AdherenceEvents, NewAdherenceEvent},
    alerts::{Alert, Alerts, NewAlert},
    audience::{Audience, AudienceMember},
    audit::{Actor, AuditEntry, AuditLog, NewAuditEntry},
    campaign_occurrences::{
        CampaignOccurrenceChange, CampaignOccurrences, NewCampaignOccurrence, PAUSED, StepCount,
        StepMessageCount,
    },
    campaigns::{Campaign, Campaigns, NewCampaign},
    channels::{ChannelAddress, ChannelIdentities, ChannelIdentity},
    conditions::{Condition, Conditions},
    content::{
        ApprovedContent, Content, ContentItem, ContentVersion, NewContentItem, NewContentVersion,
    },
    content_import::ImportReport,
    deliveries::{DeliveryAttempt, DeliveryAttempts, NewDeliveryAttempt},
    dialogs::Dialogs,
    enrolment::{EnrolmentCode, EnrolmentCodes},
    inbound::{InboundEvent, InboundEvents},
    messages::{Conversation, Message, Messages, NewMessage, Provenance},
    occurrences::{NewReminderOccurrence, ReminderOccurrence, ReminderOccurrences},
    organizations::{Organization, Organizations},
    outbox::{Outbox, OutboxItem},
    patient_dates::PatientDates,
    patients::{ChannelOptOut, NewPatient, Patient, PatientPreferences, Patients},
    reminder_batch::{BatchSend, BatchSent, DispatchContext},
    schedules::{
        MedicationSchedule, MedicationScheduleChanges, MedicationSchedules, NewMedicationSchedule,
    },
    staff::{NewStaffUser, StaffUser, StaffUsers},
};
pub use store::Store;

/// The outcome of an insert guarded by an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted<T> {
    /// The row was new and has been written.
    New(T),
    /// A row with the same key already existed; this is that row, and nothing was written.
    Duplicate(T),
}

impl<T> Inserted<T> {
    /// Whether this call wrote the row.
    pub fn is_new(&self) -> bool {
        matches!(self, Inserted::New(_))
    }

    /// The row, new or pre-existing.
    pub fn get(&self) -> &T {
        match self {
            Inserted::New(t) | Inserted::Duplicate(t) => t,
        }
    }

    /// The row, new or pre-existing.
    pub fn into_inner(self) -> T {
        match self {
            Inserted::New(t) | Inserted::Duplicate(t) => t,
        }
    }
}
