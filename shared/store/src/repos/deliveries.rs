use careloop_core::{DeliveryAttemptId, DeliveryOutcome, MessageId, OrganizationId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::convert::{non_negative_u32, now, parse};
use crate::entities::{
    delivery_attempts::{ActiveModel, Column, Entity, Model},
    messages,
};
use crate::{Store, StoreError};

const TABLE: &str = "delivery_attempts";

/// One try at handing a message to its channel's provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub id: DeliveryAttemptId,
    pub organization_id: OrganizationId,
    pub message_id: MessageId,
    /// 1 for the first try of this message, then 2, 3, ...
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    /// The provider's error, for operators. Must not contain message text.
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
    pub attempted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeliveryAttempt {
    pub message_id: MessageId,
    pub outcome: DeliveryOutcome,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
}

impl TryFrom<Model> for DeliveryAttempt {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(DeliveryAttempt {
            id: DeliveryAttemptId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            message_id: MessageId::from_uuid(m.message_id),
            attempt: non_negative_u32(TABLE, "attempt", m.attempt)?,
            outcome: parse(TABLE, "outcome", &m.outcome)?,
            error: m.error,
            provider_message_id: m.provider_message_id,
            attempted_at: m.attempted_at,
        })
    }
}

/// `store.delivery_attempts()`.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryAttempts<'a> {
    pub(crate) store: &'a Store,
}

impl DeliveryAttempts<'_> {
    /// Records the next attempt (number = attempts so far + 1) for a message of this organization.
    pub async fn record(
        &self,
        org: OrganizationId,
        new: NewDeliveryAttempt,
    ) -> Result<DeliveryAttempt, StoreError> {
        let txn = self.store.begin_write().await?;
        let n = messages::Entity::find()
            .filter(messages::Column::Id.eq(new.message_id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .count(&txn)
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound { entity: "message" });
        }
        let max: Option<i32> = Entity::find()
            .select_only()
            .column_as(Column::Attempt.max(), "max_attempt")
            .filter(Column::MessageId.eq(new.message_id.as_uuid()))
            .into_tuple::<Option<i32>>()
            .one(&txn)
            .await?
            .flatten();
        let model = ActiveModel {
            id: Set(DeliveryAttemptId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            message_id: Set(new.message_id.as_uuid()),
            attempt: Set(max.unwrap_or(0) + 1),
            outcome: Set(new.outcome.as_str().to_owned()),
            error: Set(new.error),
            provider_message_id: Set(new.provider_message_id),
            attempted_at: Set(now()),
        }
        .insert(&txn)
        .await
        .map_err(|e| StoreError::conflict_or_db(e, "delivery attempt number"))?;
        txn.commit().await?;
        DeliveryAttempt::try_from(model)
    }

    /// The message's attempts, first first.
    pub async fn list_for_message(
        &self,
        org: OrganizationId,
        message: MessageId,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::MessageId.eq(message.as_uuid()))
            .order_by_asc(Column::Attempt)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(DeliveryAttempt::try_from)
            .collect()
    }
}
