use careloop_core::{OrganizationId, PatientId};
use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};
use serde::{Serialize, de::DeserializeOwned};

use crate::convert::{from_json, now, to_json};
use crate::entities::patient_dialogs::{ActiveModel, Column, Entity};
use crate::repos::ensure_patient;
use crate::{Store, StoreError};

const TABLE: &str = "patient_dialogs";

/// `store.dialogs()`: a small JSON document per patient that a conversation keeps between
/// messages (which onboarding question is open, a language switch waiting for a yes). The
/// conversation engine owns its shape; the store only keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Dialogs<'a> {
    pub(crate) store: &'a Store,
}

impl Dialogs<'_> {
    /// The stored state, or `None` when there is none.
    pub async fn get<T: DeserializeOwned>(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Option<T>, StoreError> {
        let row = Entity::find_by_id(patient.as_uuid())
            .one(self.store.connection())
            .await?;
        match row {
            Some(m) if m.organization_id == org.as_uuid() => {
                Ok(Some(from_json(TABLE, "state", m.state)?))
            }
            _ => Ok(None),
        }
    }

    /// Replaces the state.
    pub async fn put<T: Serialize>(
        &self,
        org: OrganizationId,
        patient: PatientId,
        state: &T,
    ) -> Result<(), StoreError> {
        let db = self.store.connection();
        ensure_patient(db, org, patient).await?;
        let model = ActiveModel {
            patient_id: Set(patient.as_uuid()),
            organization_id: Set(org.as_uuid()),
            state: Set(to_json(state)),
            updated_at: Set(now()),
        };
        Entity::insert(model)
            .on_conflict(
                OnConflict::column(Column::PatientId)
                    .update_columns([Column::State, Column::UpdatedAt])
                    .to_owned(),
            )
            .exec(db)
            .await?;
        Ok(())
    }
}
