//! One-time enrolment codes: a care team creates one for a patient and gives it to them (a
//! Telegram deep link `t.me/<bot>?start=<code>`); the first channel that presents it before it
//! expires is linked to that patient. Only the SHA-256 of a code is stored.

use careloop_core::{EnrolmentCodeId, OrganizationId, PatientId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use sha2::{Digest, Sha256};

use crate::convert::{micros, now};
use crate::entities::enrolment_codes::{ActiveModel, Column, Entity};
use crate::repos::ensure_patient;
use crate::{Store, StoreError};

/// A code as handed to the patient: 32 lowercase hex characters (122 random bits), valid in a
/// Telegram deep link. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolmentCode(String);

impl EnrolmentCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrolmentCode(<redacted>)")
    }
}

fn hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_lowercase().as_bytes()))
}

/// `store.enrolment_codes()`.
#[derive(Debug, Clone, Copy)]
pub struct EnrolmentCodes<'a> {
    pub(crate) store: &'a Store,
}

impl EnrolmentCodes<'_> {
    /// A new code for the patient, valid until `expires_at`.
    pub async fn create(
        &self,
        org: OrganizationId,
        patient: PatientId,
        expires_at: DateTime<Utc>,
    ) -> Result<(EnrolmentCodeId, EnrolmentCode), StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, patient).await?;
        let code = uuid::Uuid::new_v4().simple().to_string();
        let id = EnrolmentCodeId::new();
        ActiveModel {
            id: Set(id.as_uuid()),
            organization_id: Set(org.as_uuid()),
            patient_id: Set(patient.as_uuid()),
            code_hash: Set(hash(&code)),
            expires_at: Set(micros(expires_at)),
            used_at: Set(None),
            created_at: Set(now()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        tracing::info!(organization_id = %org, patient_id = %patient, "enrolment code created");
        Ok((id, EnrolmentCode(code)))
    }

    /// Uses a code: the organization and patient it was made for, once, before it expires.
    /// `None` for an unknown, used or expired code (the caller cannot tell which, on purpose).
    pub async fn redeem(
        &self,
        code: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(OrganizationId, PatientId)>, StoreError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let h = hash(code);
        let txn = self.store.begin_write().await?;
        let res = Entity::update_many()
            .col_expr(Column::UsedAt, Expr::value(Some(micros(at))))
            .filter(Column::CodeHash.eq(&h))
            .filter(Column::UsedAt.is_null())
            .filter(Column::ExpiresAt.gt(micros(at)))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            txn.commit().await?;
            return Ok(None);
        }
        let row = Entity::find()
            .filter(Column::CodeHash.eq(&h))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "enrolment code",
            })?;
        txn.commit().await?;
        Ok(Some((
            OrganizationId::from_uuid(row.organization_id),
            PatientId::from_uuid(row.patient_id),
        )))
    }
}
