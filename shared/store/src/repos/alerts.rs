use careloop_core::{AlertId, AlertKind, MessageId, OrganizationId, PatientId, StaffUserId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use crate::convert::{micros, now, parse};
use crate::entities::alerts::{ActiveModel, Column, Entity, Model};
use crate::repos::audit::{Actor, NewAuditEntry, append_in};
use crate::repos::ensure_patient;
use crate::{Store, StoreError};

const TABLE: &str = "alerts";

/// Something the care team must look at: a red-flag message, a dosing question, missed doses.
/// Alerts hold ids and a category, never the patient's words (those stay in the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: AlertId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub kind: AlertKind,
    /// The triage category (`chest_pain`, `amount`, …).
    pub category: Option<String>,
    /// The inbound message that raised it.
    pub message_id: Option<MessageId>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<StaffUserId>,
    /// When the care team was mailed about it (or a notifier claimed it for mailing).
    pub notified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub patient_id: PatientId,
    pub kind: AlertKind,
    pub category: Option<String>,
    pub message_id: Option<MessageId>,
    pub details: serde_json::Value,
}

impl TryFrom<Model> for Alert {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(Alert {
            id: AlertId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            kind: parse(TABLE, "kind", &m.kind)?,
            category: m.category,
            message_id: m.message_id.map(MessageId::from_uuid),
            details: m.details,
            created_at: m.created_at,
            acknowledged_at: m.acknowledged_at,
            acknowledged_by: m.acknowledged_by.map(StaffUserId::from_uuid),
            notified_at: m.notified_at,
        })
    }
}

/// `store.alerts()`: raised by the system, acknowledged by staff; both steps are audited.
#[derive(Debug, Clone, Copy)]
pub struct Alerts<'a> {
    pub(crate) store: &'a Store,
}

impl Alerts<'_> {
    pub async fn raise(&self, org: OrganizationId, new: NewAlert) -> Result<Alert, StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, new.patient_id).await?;
        let model = ActiveModel {
            id: Set(AlertId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            patient_id: Set(new.patient_id.as_uuid()),
            kind: Set(new.kind.as_str().to_owned()),
            category: Set(new.category),
            message_id: Set(new.message_id.map(|m| m.as_uuid())),
            details: Set(new.details),
            created_at: Set(now()),
            acknowledged_at: Set(None),
            acknowledged_by: Set(None),
            notified_at: Set(None),
        }
        .insert(&txn)
        .await?;
        let alert = Alert::try_from(model)?;
        append_in(
            &txn,
            NewAuditEntry {
                organization_id: Some(org),
                actor: Actor::System,
                action: "alert.raised".to_owned(),
                entity_type: "alert".to_owned(),
                entity_id: alert.id.to_string(),
                details: serde_json::json!({
                    "patient_id": alert.patient_id.to_string(),
                    "kind": alert.kind.as_str(),
                    "category": alert.category,
                }),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(
            organization_id = %org,
            patient_id = %alert.patient_id,
            alert_id = %alert.id,
            kind = %alert.kind,
            "alert raised"
        );
        Ok(alert)
    }

    /// Alerts nobody has acknowledged yet, newest first, at most `limit`.
    pub async fn list_open(
        &self,
        org: OrganizationId,
        limit: u64,
    ) -> Result<Vec<Alert>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::AcknowledgedAt.is_null())
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Alert::try_from)
            .collect()
    }

    /// Every alert about one patient, oldest first.
    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Vec<Alert>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Alert::try_from)
            .collect()
    }

    /// Alerts of every organization raised at or after `since` that no notifier has claimed,
    /// oldest first, at most `limit`. For the alert mailer (a system job): claim each with
    /// [`Self::claim_notification`] and scope further work to its organization.
    pub async fn unnotified(
        &self,
        since: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Alert>, StoreError> {
        Entity::find()
            .filter(Column::NotifiedAt.is_null())
            .filter(Column::CreatedAt.gte(micros(since)))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Alert::try_from)
            .collect()
    }

    /// Marks the alert as being mailed, if no other notifier did; `Ok(false)` if one did.
    pub async fn claim_notification(
        &self,
        org: OrganizationId,
        id: AlertId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::NotifiedAt, Expr::value(Some(micros(at))))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::NotifiedAt.is_null())
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Gives a claimed notification back (the mail could not be sent), so a later round retries.
    pub async fn release_notification(
        &self,
        org: OrganizationId,
        id: AlertId,
    ) -> Result<(), StoreError> {
        Entity::update_many()
            .col_expr(
                Column::NotifiedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        Ok(())
    }
}
