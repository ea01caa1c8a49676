use careloop_core::{
    ChannelKind, DoseText, MedicationScheduleId, MedicineName, OrganizationId, PatientId,
    QuietHoursPolicy, RecurrenceRule, StaffUserId, TimeZone,
};
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};

use crate::convert::{from_json, now, parse, to_json};
use crate::entities::medication_schedules::{ActiveModel, Column, Entity, Model};
use crate::repos::{ensure_patient, updated_one};
use crate::{Store, StoreError};

const TABLE: &str = "medication_schedules";

/// When a patient should take a medicine, as the care team wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicationSchedule {
    pub id: MedicationScheduleId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub medicine_name: MedicineName,
    pub dose_text: DoseText,
    pub rrule: RecurrenceRule,
    /// The zone the rule's wall-clock times are in.
    pub timezone: TimeZone,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub quiet_hours_policy: QuietHoursPolicy,
    /// Channels to remind on, in order of preference.
    pub channels: Vec<ChannelKind>,
    pub active: bool,
    pub created_by: Option<StaffUserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMedicationSchedule {
    pub patient_id: PatientId,
    pub medicine_name: MedicineName,
    pub dose_text: DoseText,
    pub rrule: RecurrenceRule,
    pub timezone: TimeZone,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub quiet_hours_policy: QuietHoursPolicy,
    pub channels: Vec<ChannelKind>,
    pub created_by: Option<StaffUserId>,
}

/// A change to a schedule: what the care team edited (`None`: unchanged). The patient and the
/// creator never change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MedicationScheduleChanges {
    pub medicine_name: Option<MedicineName>,
    pub dose_text: Option<DoseText>,
    pub rrule: Option<RecurrenceRule>,
    pub timezone: Option<TimeZone>,
    pub starts_on: Option<NaiveDate>,
    /// `Some(None)` removes the end date.
    pub ends_on: Option<Option<NaiveDate>>,
    pub quiet_hours_policy: Option<QuietHoursPolicy>,
    pub channels: Option<Vec<ChannelKind>>,
    pub active: Option<bool>,
}

fn unique_channels(channels: &[ChannelKind]) -> Result<Vec<&'static str>, StoreError> {
    if channels.is_empty() {
        return Err(careloop_core::ParseError::new("channels", "must name a channel").into());
    }
    let mut out: Vec<&'static str> = Vec::new();
    for c in channels {
        if !out.contains(&c.as_str()) {
            out.push(c.as_str());
        }
    }
    Ok(out)
}

impl TryFrom<Model> for MedicationSchedule {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        let channels: Vec<String> = from_json(TABLE, "channels", m.channels)?;
        Ok(MedicationSchedule {
            id: MedicationScheduleId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            medicine_name: parse(TABLE, "medicine_name", &m.medicine_name)?,
            dose_text: parse(TABLE, "dose_text", &m.dose_text)?,
            rrule: parse(TABLE, "rrule", &m.rrule)?,
            timezone: parse(TABLE, "timezone", &m.timezone)?,
            starts_on: m.starts_on,
            ends_on: m.ends_on,
            quiet_hours_policy: parse(TABLE, "quiet_hours_policy", &m.quiet_hours_policy)?,
            channels: channels
                .iter()
                .map(|c| parse(TABLE, "channels", c))
                .collect::<Result<_, _>>()?,
            active: m.active,
            created_by: m.created_by.map(StaffUserId::from_uuid),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// `store.medication_schedules()`.
#[derive(Debug, Clone, Copy)]
pub struct MedicationSchedules<'a> {
    pub(crate) store: &'a Store,
}

impl MedicationSchedules<'_> {
    /// Creates an active schedule for a patient of this organization.
    pub async fn create(
        &self,
        org: OrganizationId,
        new: NewMedicationSchedule,
    ) -> Result<MedicationSchedule, StoreError> {
        if new.ends_on.is_some_and(|end| end < new.starts_on) {
            return Err(
                careloop_core::ParseError::new("ends_on", "must not be before starts_on").into(),
            );
        }
        let channels = unique_channels(&new.channels)?;
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, new.patient_id).await?;
        let at = now();
        let model = ActiveModel {
            id: Set(MedicationScheduleId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            patient_id: Set(new.patient_id.as_uuid()),
            medicine_name: Set(new.medicine_name.as_str().to_owned()),
            dose_text: Set(new.dose_text.as_str().to_owned()),
            rrule: Set(new.rrule.as_str().to_owned()),
            timezone: Set(new.timezone.to_string()),
            starts_on: Set(new.starts_on),
            ends_on: Set(new.ends_on),
            quiet_hours_policy: Set(new.quiet_hours_policy.as_str().to_owned()),
            channels: Set(to_json(&channels)),
            active: Set(true),
            created_by: Set(new.created_by.map(|s| s.as_uuid())),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        let schedule = MedicationSchedule::try_from(model)?;
        tracing::info!(organization_id = %org, patient_id = %schedule.patient_id, schedule_id = %schedule.id, "medication schedule created");
        Ok(schedule)
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        id: MedicationScheduleId,
    ) -> Result<Option<MedicationSchedule>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .one(self.store.connection())
            .await?
            .map(MedicationSchedule::try_from)
            .transpose()
    }

    /// The patient's schedules, active or not, oldest first.
    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Vec<MedicationSchedule>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(MedicationSchedule::try_from)
            .collect()
    }

    /// The organization's active schedules.
    pub async fn list_active(
        &self,
        org: OrganizationId,
    ) -> Result<Vec<MedicationSchedule>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::Active.eq(true))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(MedicationSchedule::try_from)
            .collect()
    }

    /// Active schedules of every organization, for the reminder planner (a system job). Each
    /// schedule names its organization; use it to scope everything done with the result.
    pub async fn list_all_active(&self) -> Result<Vec<MedicationSchedule>, StoreError> {
        Entity::find()
            .filter(Column::Active.eq(true))
            .order_by_asc(Column::OrganizationId)
            .order_by_asc(Column::CreatedAt)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(MedicationSchedule::try_from)
            .collect()
    }

    pub async fn set_active(
        &self,
        org: OrganizationId,
        id: MedicationScheduleId,
        active: bool,
    ) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::Active, Expr::value(active))
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "medication schedule")
    }

    /// Applies `changes` to the schedule and returns it as stored; all or nothing. The caller
    /// re-plans it (`careloop_reminders::plan`), which moves or cancels only doses not yet sent.
    pub async fn update(
        &self,
        org: OrganizationId,
        id: MedicationScheduleId,
        changes: MedicationScheduleChanges,
    ) -> Result<MedicationSchedule, StoreError> {
        let txn = self.store.begin_write().await?;
        let current = Entity::find_by_id(id.as_uuid())
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "medication schedule",
            })?;
        let starts_on = changes.starts_on.unwrap_or(current.starts_on);
        let ends_on = changes.ends_on.unwrap_or(current.ends_on);
        if ends_on.is_some_and(|end| end < starts_on) {
            return Err(
                careloop_core::ParseError::new("ends_on", "must not be before starts_on").into(),
            );
        }
        let mut model: ActiveModel = current.into();
        if let Some(v) = changes.medicine_name {
            model.medicine_name = Set(v.as_str().to_owned());
        }
        if let Some(v) = changes.dose_text {
            model.dose_text = Set(v.as_str().to_owned());
        }
        if let Some(v) = changes.rrule {
            model.rrule = Set(v.as_str().to_owned());
        }
        if let Some(v) = changes.timezone {
            model.timezone = Set(v.to_string());
        }
        model.starts_on = Set(starts_on);
        model.ends_on = Set(ends_on);
        if let Some(v) = changes.quiet_hours_policy {
            model.quiet_hours_policy = Set(v.as_str().to_owned());
        }
        if let Some(v) = changes.channels {
            model.channels = Set(to_json(&unique_channels(&v)?));
        }
        if let Some(v) = changes.active {
            model.active = Set(v);
        }
        model.updated_at = Set(now());
        let model = model.update(&txn).await?;
        txn.commit().await?;
        let schedule = MedicationSchedule::try_from(model)?;
        tracing::info!(organization_id = %org, schedule_id = %schedule.id, "medication schedule updated");
        Ok(schedule)
    }
}
