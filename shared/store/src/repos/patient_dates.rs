use std::collections::{BTreeMap, HashMap};

use careloop_core::{OrganizationId, PatientId, Slug};
use chrono::NaiveDate;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};

use crate::convert::{now, parse};
use crate::entities::patient_dates::{ActiveModel, Column, Entity};
use crate::repos::audit::{Actor, NewAuditEntry, append_in};
use crate::repos::ensure_patient;
use crate::{Store, StoreError};

const TABLE: &str = "patient_dates";

/// `store.patient_dates()`: named dates of a patient (`discharge_date`, `surgery_date`) that
/// campaign steps may be relative to; one date per patient and name.
#[derive(Debug, Clone, Copy)]
pub struct PatientDates<'a> {
    pub(crate) store: &'a Store,
}

impl PatientDates<'_> {
    /// Sets (or replaces) the patient's date called `name`, audited (the name, not the date).
    pub async fn set(
        &self,
        org: OrganizationId,
        patient: PatientId,
        name: &Slug,
        date: NaiveDate,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, patient).await?;
        Entity::insert(ActiveModel {
            patient_id: Set(patient.as_uuid()),
            name: Set(name.as_str().to_owned()),
            organization_id: Set(org.as_uuid()),
            date: Set(date),
            updated_at: Set(now()),
        })
        .on_conflict(
            OnConflict::columns([Column::PatientId, Column::Name])
                .update_columns([Column::Date, Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        append_in(
            &txn,
            NewAuditEntry {
                organization_id: Some(org),
                actor: *actor,
                action: "patient.date_set".to_owned(),
                entity_type: "patient".to_owned(),
                entity_id: patient.to_string(),
                details: serde_json::json!({ "field": name.as_str() }),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(organization_id = %org, patient_id = %patient, field = %name, "patient date set");
        Ok(())
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        patient: PatientId,
        name: &Slug,
    ) -> Result<Option<NaiveDate>, StoreError> {
        Ok(Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .filter(Column::Name.eq(name.as_str()))
            .one(self.store.connection())
            .await?
            .map(|m| m.date))
    }

    /// Removes the date; `false` if the patient had none by that name.
    pub async fn remove(
        &self,
        org: OrganizationId,
        patient: PatientId,
        name: &Slug,
    ) -> Result<bool, StoreError> {
        let res = Entity::delete_many()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .filter(Column::Name.eq(name.as_str()))
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected > 0)
    }

    /// Every date of the patient, by name.
    pub async fn list(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<BTreeMap<Slug, NaiveDate>, StoreError> {
        Ok(self
            .for_patients(org, &[patient])
            .await?
            .remove(&patient)
            .unwrap_or_default())
    }

    /// The dates of several patients at once (those with none are absent).
    pub async fn for_patients(
        &self,
        org: OrganizationId,
        patients: &[PatientId],
    ) -> Result<HashMap<PatientId, BTreeMap<Slug, NaiveDate>>, StoreError> {
        let mut out: HashMap<PatientId, BTreeMap<Slug, NaiveDate>> = HashMap::new();
        if patients.is_empty() {
            return Ok(out);
        }
        let rows = Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.is_in(patients.iter().map(|p| p.as_uuid())))
            .order_by_asc(Column::PatientId)
            .order_by_asc(Column::Name)
            .all(self.store.connection())
            .await?;
        for row in rows {
            out.entry(PatientId::from_uuid(row.patient_id))
                .or_default()
                .insert(parse(TABLE, "name", &row.name)?, row.date);
        }
        Ok(out)
    }
}
