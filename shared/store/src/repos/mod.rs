//! Repositories: one handle per aggregate, borrowed from a [`Store`]. Every method that touches
//! organization-owned rows takes the [`OrganizationId`] and filters by it.

pub mod adherence;
pub mod alerts;
pub mod audience;
pub mod audit;
pub mod campaign_occurrences;
pub mod campaigns;
pub mod channels;
pub mod conditions;
pub mod content;
pub mod content_import;
pub mod deliveries;
pub mod dialogs;
pub mod enrolment;
pub mod inbound;
pub mod messages;
pub mod occurrences;
pub mod organizations;
pub mod outbox;
pub mod patient_dates;
pub mod patients;
pub mod reminder_batch;
pub mod schedules;
pub mod staff;

use careloop_core::{OrganizationId, PatientId};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::{Store, StoreError, entities};

impl Store {
    pub fn organizations(&self) -> organizations::Organizations<'_> {
        organizations::Organizations { store: self }
    }
    pub fn staff_users(&self) -> staff::StaffUsers<'_> {
        staff::StaffUsers { store: self }
    }
    pub fn patients(&self) -> patients::Patients<'_> {
        patients::Patients { store: self }
    }
    pub fn conditions(&self) -> conditions::Conditions<'_> {
        conditions::Conditions { store: self }
    }
    pub fn channel_identities(&self) -> channels::ChannelIdentities<'_> {
        channels::ChannelIdentities { store: self }
    }
    pub fn content(&self) -> content::Content<'_> {
        content::Content { store: self }
    }
    pub fn messages(&self) -> messages::Messages<'_> {
        messages::Messages { store: self }
    }
    pub fn medication_schedules(&self) -> schedules::MedicationSchedules<'_> {
        schedules::MedicationSchedules { store: self }
    }
    pub fn reminder_occurrences(&self) -> occurrences::ReminderOccurrences<'_> {
        occurrences::ReminderOccurrences { store: self }
    }
    pub fn campaigns(&self) -> campaigns::Campaigns<'_> {
        campaigns::Campaigns { store: self }
    }
    pub fn campaign_occurrences(&self) -> campaign_occurrences::CampaignOccurrences<'_> {
        campaign_occurrences::CampaignOccurrences { store: self }
    }
    pub fn patient_dates(&self) -> patient_dates::PatientDates<'_> {
        patient_dates::PatientDates { store: self }
    }
    pub fn audience(&self) -> audience::Audience<'_> {
        audience::Audience { store: self }
    }
    pub fn delivery_attempts(&self) -> deliveries::DeliveryAttempts<'_> {
        deliveries::DeliveryAttempts { store: self }
    }
    pub fn adherence_events(&self) -> adherence::AdherenceEvents<'_> {
        adherence::AdherenceEvents { store: self }
    }
    pub fn audit(&self) -> audit::AuditLog<'_> {
        audit::AuditLog { store: self }
    }
    pub fn alerts(&self) -> alerts::Alerts<'_> {
        alerts::Alerts { store: self }
    }
    pub fn dialogs(&self) -> dialogs::Dialogs<'_> {
        dialogs::Dialogs { store: self }
    }
    pub fn outbox(&self) -> outbox::Outbox<'_> {
        outbox::Outbox { store: self }
    }
    pub fn inbound_events(&self) -> inbound::InboundEvents<'_> {
        inbound::InboundEvents { store: self }
    }
    pub fn enrolment_codes(&self) -> enrolment::EnrolmentCodes<'_> {
        enrolment::EnrolmentCodes { store: self }
    }
}

/// `NotFound { entity: "patient" }` unless the patient exists in this organization.
pub(crate) async fn ensure_patient<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    patient: PatientId,
) -> Result<(), StoreError> {
    use entities::patients::{Column, Entity};
    let n = Entity::find()
        .filter(Column::Id.eq(patient.as_uuid()))
        .filter(Column::OrganizationId.eq(org.as_uuid()))
        .count(db)
        .await?;
    if n == 0 {
        Err(StoreError::NotFound { entity: "patient" })
    } else {
        Ok(())
    }
}

/// Maps "no row was updated" to `NotFound`.
pub(crate) fn updated_one(rows_affected: u64, entity: &'static str) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound { entity })
    } else {
        Ok(())
    }
}
