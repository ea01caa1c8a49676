//! Inbound channel events (a Telegram update, an inbound email, a web chat message), persisted
//! before they are acknowledged to the channel and processed after. The channel's own id is the
//! idempotency key: an event delivered twice is stored and processed once. Processing claims an
//! event with a lease like the outbox, so a process that dies mid-way leaves it to another.
//! The payload (which holds message text) is cleared once the event is processed.

use std::fmt;

use careloop_core::{ChannelKind, InboundEventId, InboundStatus, OrganizationId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::convert::{micros, non_negative_u32, now, parse};
use crate::entities::inbound_events::{ActiveModel, Column, Entity, Model};
use crate::{Inserted, Store, StoreError};

const TABLE: &str = "inbound_events";

/// One stored inbound event. `Debug` does not show the payload.
#[derive(Clone, PartialEq)]
pub struct InboundEvent {
    pub id: InboundEventId,
    pub organization_id: OrganizationId,
    pub channel: ChannelKind,
    pub idempotency_key: String,
    /// The channel's payload as received (cleared once processed).
    pub payload: Option<serde_json::Value>,
    pub status: InboundStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for InboundEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundEvent")
            .field("id", &self.id)
            .field("organization_id", &self.organization_id)
            .field("channel", &self.channel)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl TryFrom<Model> for InboundEvent {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(InboundEvent {
            id: InboundEventId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            channel: parse(TABLE, "channel", &m.channel)?,
            idempotency_key: m.idempotency_key,
            payload: m.payload,
            status: parse(TABLE, "status", &m.status)?,
            attempts: non_negative_u32(TABLE, "attempts", m.attempts)?,
            error: m.error,
            received_at: m.received_at,
            processed_at: m.processed_at,
        })
    }
}

/// `store.inbound_events()`.
#[derive(Debug, Clone, Copy)]
pub struct InboundEvents<'a> {
    pub(crate) store: &'a Store,
}

fn due(at: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(Column::NextAttemptAt.is_null())
        .add(Column::NextAttemptAt.lte(at))
}

impl InboundEvents<'_> {
    /// Stores an event unless its key was seen before ([`Inserted::Duplicate`]).
    pub async fn record(
        &self,
        org: OrganizationId,
        channel: ChannelKind,
        idempotency_key: &str,
        payload: serde_json::Value,
    ) -> Result<Inserted<InboundEvent>, StoreError> {
        if idempotency_key.is_empty() || idempotency_key.len() > 300 {
            return Err(careloop_core::ParseError::new(
                "idempotency_key",
                "must be 1-300 characters",
            )
            .into());
        }
        let db = self.store.connection();
        let model = Model {
            id: InboundEventId::new().as_uuid(),
            organization_id: org.as_uuid(),
            channel: channel.as_str().to_owned(),
            idempotency_key: idempotency_key.to_owned(),
            payload: Some(payload),
            status: InboundStatus::Pending.as_str().to_owned(),
            attempts: 0,
            error: None,
            received_at: now(),
            next_attempt_at: None,
            processed_at: None,
        };
        let res = Entity::insert(ActiveModel::from(model.clone()))
            .on_conflict_do_nothing_on([Column::IdempotencyKey])
            .exec_without_returning(db)
            .await?;
        if matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            // One statement on the hot path (webhooks): the row is what was written.
            return Ok(Inserted::New(InboundEvent::try_from(model)?));
        }
        let existing = Entity::find()
            .filter(Column::IdempotencyKey.eq(idempotency_key))
            .one(db)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "inbound event",
            })?;
        if existing.organization_id != org.as_uuid() {
            return Err(StoreError::Conflict {
                what: "idempotency key used by another organization",
            });
        }
        Ok(Inserted::Duplicate(InboundEvent::try_from(existing)?))
    }

    /// Claims up to `limit` pending events that are due, oldest first, for `lease`.
    pub async fn claim_pending(
        &self,
        at: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u64,
    ) -> Result<Vec<InboundEvent>, StoreError> {
        let db = self.store.connection();
        let candidates = Entity::find()
            .filter(Column::Status.eq(InboundStatus::Pending.as_str()))
            .filter(due(at))
            .order_by_asc(Column::ReceivedAt)
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(db)
            .await?;
        let until = micros(at + lease);
        let mut claimed = Vec::with_capacity(candidates.len());
        for mut candidate in candidates {
            let res = Entity::update_many()
                .col_expr(Column::NextAttemptAt, Expr::value(Some(until)))
                .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
                .filter(Column::Id.eq(candidate.id))
                .filter(Column::Status.eq(InboundStatus::Pending.as_str()))
                .filter(due(at))
                .exec(db)
                .await?;
            if res.rows_affected == 1 {
                candidate.next_attempt_at = Some(until);
                candidate.attempts += 1;
                claimed.push(InboundEvent::try_from(candidate)?);
            }
        }
        Ok(claimed)
    }

    /// The event was handled: its payload is dropped.
    pub async fn mark_processed(&self, id: InboundEventId) -> Result<(), StoreError> {
        self.settle(id, InboundStatus::Processed, None).await
    }

    /// Processing failed. With `retry_at` the event stays pending until then; without, it is
    /// given up on (`failed`, payload dropped).
    pub async fn mark_failed(
        &self,
        id: InboundEventId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        match retry_at {
            Some(at) => {
                let res = Entity::update_many()
                    .col_expr(Column::NextAttemptAt, Expr::value(Some(micros(at))))
                    .col_expr(Column::Error, Expr::value(Some(error.to_owned())))
                    .filter(Column::Id.eq(id.as_uuid()))
                    .exec(self.store.connection())
                    .await?;
                crate::repos::updated_one(res.rows_affected, "inbound event")
            }
            None => self.settle(id, InboundStatus::Failed, Some(error)).await,
        }
    }

    async fn settle(
        &self,
        id: InboundEventId,
        status: InboundStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::Status, Expr::value(status.as_str()))
            .col_expr(
                Column::Payload,
                Expr::value(Option::<serde_json::Value>::None),
            )
            .col_expr(Column::Error, Expr::value(error.map(str::to_owned)))
            .col_expr(
                Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(Column::ProcessedAt, Expr::value(Some(now())))
            .filter(Column::Id.eq(id.as_uuid()))
            .exec(self.store.connection())
            .await?;
        crate::repos::updated_one(res.rows_affected, "inbound event")
    }

    pub async fn get(&self, id: InboundEventId) -> Result<Option<InboundEvent>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .one(self.store.connection())
            .await?
            .map(InboundEvent::try_from)
            .transpose()
    }

    /// The event stored under a channel's id (`telegram:<bot>:<update_id>`).
    pub async fn find_by_key(&self, key: &str) -> Result<Option<InboundEvent>, StoreError> {
        Entity::find()
            .filter(Column::IdempotencyKey.eq(key))
            .one(self.store.connection())
            .await?
            .map(InboundEvent::try_from)
            .transpose()
    }

    /// Events by status on a channel (all organizations), for metrics and tests.
    pub async fn count(
        &self,
        channel: ChannelKind,
        status: InboundStatus,
    ) -> Result<u64, StoreError> {
        Ok(Entity::find()
            .filter(Column::Channel.eq(channel.as_str()))
            .filter(Column::Status.eq(status.as_str()))
            .count(self.store.connection())
            .await?)
    }
}
