use careloop_core::{
    AdherenceEventId, AdherenceKind, ChannelKind, OrganizationId, PatientId, ReminderOccurrenceId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};

use crate::convert::{micros, parse, parse_opt};
use crate::entities::{
    adherence_events::{ActiveModel, Column, Entity, Model},
    reminder_occurrences,
};
use crate::repos::ensure_patient;
use crate::{Store, StoreError};

const TABLE: &str = "adherence_events";

/// What a patient reported (or the system concluded) about one dose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdherenceEvent {
    pub id: AdherenceEventId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub occurrence_id: Option<ReminderOccurrenceId>,
    pub kind: AdherenceKind,
    /// The channel the report came in on; `None` when recorded by staff or the system.
    pub source_channel: Option<ChannelKind>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdherenceEvent {
    pub patient_id: PatientId,
    pub occurrence_id: Option<ReminderOccurrenceId>,
    pub kind: AdherenceKind,
    pub source_channel: Option<ChannelKind>,
    pub recorded_at: DateTime<Utc>,
}

impl TryFrom<Model> for AdherenceEvent {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(AdherenceEvent {
            id: AdherenceEventId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            occurrence_id: m.occurrence_id.map(ReminderOccurrenceId::from_uuid),
            kind: parse(TABLE, "kind", &m.kind)?,
            source_channel: parse_opt(TABLE, "source_channel", m.source_channel.as_deref())?,
            recorded_at: m.recorded_at,
        })
    }
}

/// `store.adherence_events()`.
#[derive(Debug, Clone, Copy)]
pub struct AdherenceEvents<'a> {
    pub(crate) store: &'a Store,
}

impl AdherenceEvents<'_> {
    /// Records an event for a patient of this organization; the occurrence, if given, must be
    /// that patient's.
    pub async fn record(
        &self,
        org: OrganizationId,
        new: NewAdherenceEvent,
    ) -> Result<AdherenceEvent, StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, new.patient_id).await?;
        if let Some(occurrence) = new.occurrence_id {
            let n = reminder_occurrences::Entity::find()
                .filter(reminder_occurrences::Column::Id.eq(occurrence.as_uuid()))
                .filter(reminder_occurrences::Column::OrganizationId.eq(org.as_uuid()))
                .filter(reminder_occurrences::Column::PatientId.eq(new.patient_id.as_uuid()))
                .count(&txn)
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    entity: "reminder occurrence",
                });
            }
        }
        let model = ActiveModel {
            id: Set(AdherenceEventId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            patient_id: Set(new.patient_id.as_uuid()),
            occurrence_id: Set(new.occurrence_id.map(|o| o.as_uuid())),
            kind: Set(new.kind.as_str().to_owned()),
            source_channel: Set(new.source_channel.map(|c| c.as_str().to_owned())),
            recorded_at: Set(micros(new.recorded_at)),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        AdherenceEvent::try_from(model)
    }

    /// The patient's events, oldest first.
    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Vec<AdherenceEvent>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .order_by_asc(Column::RecordedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(AdherenceEvent::try_from)
            .collect()
    }
}
