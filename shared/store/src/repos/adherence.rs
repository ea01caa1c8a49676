use careloop_core::{
    AdherenceEventId, AdherenceKind, ChannelKind, OccurrenceState, OrganizationId, PatientId,
    ReminderOccurrenceId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};

use crate::convert::{micros, parse, parse_opt};
use crate::entities::{
    adherence_events::{ActiveModel, Column, Entity, Model},
    reminder_occurrences,
};
use crate::repos::ensure_patient;
use crate::{ReminderOccurrence, Store, StoreError};

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

    /// Records an event for a reminder unless one of the same kind was recorded for it before
    /// (by anyone, at any time): `Ok(None)` then, and nothing is written. The occurrence must be
    /// the patient's.
    pub async fn record_once(
        &self,
        org: OrganizationId,
        patient: PatientId,
        occurrence: ReminderOccurrenceId,
        kind: AdherenceKind,
        source_channel: Option<ChannelKind>,
        recorded_at: DateTime<Utc>,
    ) -> Result<Option<AdherenceEvent>, StoreError> {
        let txn = self.store.begin_write().await?;
        let n = reminder_occurrences::Entity::find()
            .filter(reminder_occurrences::Column::Id.eq(occurrence.as_uuid()))
            .filter(reminder_occurrences::Column::OrganizationId.eq(org.as_uuid()))
            .filter(reminder_occurrences::Column::PatientId.eq(patient.as_uuid()))
            .count(&txn)
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound {
                entity: "reminder occurrence",
            });
        }
        let model = Model {
            id: AdherenceEventId::new().as_uuid(),
            organization_id: org.as_uuid(),
            patient_id: patient.as_uuid(),
            occurrence_id: Some(occurrence.as_uuid()),
            kind: kind.as_str().to_owned(),
            source_channel: source_channel.map(|c| c.as_str().to_owned()),
            recorded_at: micros(recorded_at),
        };
        let res = Entity::insert(ActiveModel::from(model.clone()))
            .on_conflict_do_nothing_on([Column::OccurrenceId, Column::Kind])
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        if matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            AdherenceEvent::try_from(model).map(Some)
        } else {
            Ok(None)
        }
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

    /// The patient's newest events, newest first, at most `limit`.
    pub async fn recent_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
        limit: u64,
    ) -> Result<Vec<AdherenceEvent>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .order_by_desc(Column::RecordedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(AdherenceEvent::try_from)
            .collect()
    }

    /// The events recorded for one occurrence, oldest first.
    pub async fn list_for_occurrence(
        &self,
        org: OrganizationId,
        occurrence: ReminderOccurrenceId,
    ) -> Result<Vec<AdherenceEvent>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::OccurrenceId.eq(occurrence.as_uuid()))
            .order_by_asc(Column::RecordedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(AdherenceEvent::try_from)
            .collect()
    }

    /// The patient's newest medication reminder (a schedule's dose, not a campaign message) that
    /// was sent, is due at or after `since`, and has no answer yet: what a typed "taken" answers.
    pub async fn open_reminder(
        &self,
        org: OrganizationId,
        patient: PatientId,
        since: DateTime<Utc>,
    ) -> Result<Option<ReminderOccurrence>, StoreError> {
        unanswered_doses()
            .filter(reminder_occurrences::Column::OrganizationId.eq(org.as_uuid()))
            .filter(reminder_occurrences::Column::PatientId.eq(patient.as_uuid()))
            .filter(reminder_occurrences::Column::DueAt.gte(micros(since)))
            .order_by_desc(reminder_occurrences::Column::DueAt)
            .order_by_desc(reminder_occurrences::Column::Id)
            .one(self.store.connection())
            .await?
            .map(ReminderOccurrence::try_from)
            .transpose()
    }

    /// Sent medication reminders of every organization, due in `[from, before)`, that nobody
    /// answered: the doses to mark missed. Oldest first, at most `limit`. For the missed-dose
    /// sweep (a system job): scope further work to each occurrence's organization.
    pub async fn unanswered_before(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        unanswered_doses()
            .filter(reminder_occurrences::Column::DueAt.gte(micros(from)))
            .filter(reminder_occurrences::Column::DueAt.lt(micros(before)))
            .order_by_asc(reminder_occurrences::Column::DueAt)
            .order_by_asc(reminder_occurrences::Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }
}

/// Medication reminders (a schedule's doses, not campaign messages) that were sent and have no
/// adherence event yet.
fn unanswered_doses() -> sea_orm::Select<reminder_occurrences::Entity> {
    reminder_occurrences::Entity::find()
        .filter(reminder_occurrences::Column::ScheduleId.is_not_null())
        .filter(reminder_occurrences::Column::State.eq(OccurrenceState::Sent.as_str()))
        .filter(Expr::exists(unanswered_probe()).not())
}

/// `SELECT 1 FROM adherence_events WHERE occurrence_id = reminder_occurrences.id`: any event
/// (taken, skipped, snoozed, missed) answers an occurrence.
fn unanswered_probe() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .expr(Expr::val(1))
        .from(Entity)
        .and_where(Expr::col((Entity, Column::OccurrenceId)).equals((
            reminder_occurrences::Entity,
            reminder_occurrences::Column::Id,
        )))
        .to_owned()
}
