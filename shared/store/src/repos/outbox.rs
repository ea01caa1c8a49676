//! The outbox side of `messages`: outbound messages are stored `queued` first (by whoever made
//! them) and a sender claims, sends and settles them. A claim is a lease: `next_attempt_at` moves
//! to the end of the lease, so another process only takes the message again if the first one
//! died without settling it.
//!
//! The sender works for every organization, so [`Outbox::claim_due`] is not scoped by one; every
//! claimed item names its organization and the settling calls are scoped by it.

use careloop_core::{
    ChannelKind, ConsentState, MessageDirection, MessageId, MessageStatus, OrganizationId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use crate::convert::{micros, now};
use crate::entities::{channel_identities, messages};
use crate::repos::channels::ChannelIdentity;
use crate::repos::messages::Message;
use crate::repos::updated_one;
use crate::{Store, StoreError};

/// A claimed outbound message with what sending it needs.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub message: Message,
    /// The patient's address on the message's channel (the most recently linked one), if any.
    pub identity: Option<ChannelIdentity>,
    pub consent: ConsentState,
    /// The patient opted out of this channel (or the channel reported them unreachable).
    pub channel_opted_out: bool,
}

/// `store.outbox()`.
#[derive(Debug, Clone, Copy)]
pub struct Outbox<'a> {
    pub(crate) store: &'a Store,
}

fn due(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(messages::Column::NextAttemptAt.is_null())
        .add(messages::Column::NextAttemptAt.lte(now))
}

impl Outbox<'_> {
    /// Claims up to `limit` queued outbound messages on `channels` that are due, oldest first,
    /// for `lease`. Messages claimed by another process whose lease has not run out are not
    /// returned.
    pub async fn claim_due(
        &self,
        at: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u64,
        channels: &[ChannelKind],
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let db = self.store.connection();
        let candidates: Vec<messages::Model> = messages::Entity::find()
            .filter(messages::Column::Channel.is_in(channels.iter().map(|c| c.as_str())))
            .filter(messages::Column::Direction.eq(MessageDirection::Outbound.as_str()))
            .filter(messages::Column::Status.eq(MessageStatus::Queued.as_str()))
            .filter(due(at))
            .order_by_asc(messages::Column::CreatedAt)
            .order_by_asc(messages::Column::Id)
            .limit(limit)
            .all(db)
            .await?;
        let until = micros(at + lease);
        let mut claimed = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            // The claim: only one process moves a due message's lease forward.
            let res = messages::Entity::update_many()
                .col_expr(messages::Column::NextAttemptAt, Expr::value(Some(until)))
                .filter(messages::Column::Id.eq(candidate.id))
                .filter(messages::Column::Status.eq(MessageStatus::Queued.as_str()))
                .filter(due(at))
                .exec(db)
                .await?;
            if res.rows_affected == 0 {
                continue;
            }
            let mut model = candidate;
            model.next_attempt_at = Some(until);
            let message = Message::try_from(model)?;
            let org = message.organization_id;
            let identity = channel_identities::Entity::find()
                .filter(channel_identities::Column::OrganizationId.eq(org.as_uuid()))
                .filter(channel_identities::Column::PatientId.eq(message.patient_id.as_uuid()))
                .filter(channel_identities::Column::Channel.eq(message.channel.as_str()))
                .order_by_desc(channel_identities::Column::CreatedAt)
                .one(db)
                .await?
                .map(ChannelIdentity::try_from)
                .transpose()?;
            let patient = self
                .store
                .patients()
                .get(org, message.patient_id)
                .await?
                .ok_or(StoreError::NotFound { entity: "patient" })?;
            claimed.push(OutboxItem {
                channel_opted_out: patient.is_opted_out(message.channel),
                consent: patient.consent,
                identity,
                message,
            });
        }
        Ok(claimed)
    }

    /// Settles a claimed message as sent (or delivered, where the channel confirmed it).
    pub async fn mark_sent(
        &self,
        org: OrganizationId,
        id: MessageId,
        provider_message_id: Option<&str>,
        delivered: bool,
    ) -> Result<(), StoreError> {
        let status = if delivered {
            MessageStatus::Delivered
        } else {
            MessageStatus::Sent
        };
        let res = messages::Entity::update_many()
            .col_expr(messages::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                messages::Column::ProviderMessageId,
                Expr::value(provider_message_id.map(str::to_owned)),
            )
            .col_expr(
                messages::Column::Attempts,
                Expr::col(messages::Column::Attempts).add(1),
            )
            .col_expr(
                messages::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                messages::Column::FailureReason,
                Expr::value(Option::<String>::None),
            )
            .col_expr(messages::Column::UpdatedAt, Expr::value(now()))
            .filter(messages::Column::Id.eq(id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "message")
    }

    /// A transient failure: the message stays queued and is due again at `retry_at`.
    pub async fn mark_retry(
        &self,
        org: OrganizationId,
        id: MessageId,
        retry_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let res = messages::Entity::update_many()
            .col_expr(
                messages::Column::Attempts,
                Expr::col(messages::Column::Attempts).add(1),
            )
            .col_expr(
                messages::Column::NextAttemptAt,
                Expr::value(Some(micros(retry_at))),
            )
            .col_expr(
                messages::Column::FailureReason,
                Expr::value(Some(reason.to_owned())),
            )
            .col_expr(messages::Column::UpdatedAt, Expr::value(now()))
            .filter(messages::Column::Id.eq(id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .filter(messages::Column::Status.eq(MessageStatus::Queued.as_str()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "message")
    }

    /// A permanent failure (or a message that must not be sent any more): `failed` with why.
    pub async fn mark_failed(
        &self,
        org: OrganizationId,
        id: MessageId,
        reason: &str,
        attempted: bool,
    ) -> Result<(), StoreError> {
        let mut update = messages::Entity::update_many()
            .col_expr(
                messages::Column::Status,
                Expr::value(MessageStatus::Failed.as_str()),
            )
            .col_expr(
                messages::Column::NextAttemptAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                messages::Column::FailureReason,
                Expr::value(Some(reason.to_owned())),
            )
            .col_expr(messages::Column::UpdatedAt, Expr::value(now()));
        if attempted {
            update = update.col_expr(
                messages::Column::Attempts,
                Expr::col(messages::Column::Attempts).add(1),
            );
        }
        let res = update
            .filter(messages::Column::Id.eq(id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "message")
    }

    /// Releases a held message (a streamed draft is ready to be replaced): due now, with the
    /// channel's delivery data. A message no longer queued is left alone (`Ok(false)`).
    pub async fn release(
        &self,
        org: OrganizationId,
        id: MessageId,
        delivery_meta: Option<serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let mut update = messages::Entity::update_many().col_expr(
            messages::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
        if let Some(meta) = delivery_meta {
            update = update.col_expr(messages::Column::DeliveryMeta, Expr::value(meta));
        }
        let res = update
            .filter(messages::Column::Id.eq(id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .filter(messages::Column::Status.eq(MessageStatus::Queued.as_str()))
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// The outbound message a provider knows by this id (a bounce names the `Message-ID` it
    /// returns), in any organization; the result names its organization.
    pub async fn find_by_provider_id(
        &self,
        channel: ChannelKind,
        provider_message_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        messages::Entity::find()
            .filter(messages::Column::Channel.eq(channel.as_str()))
            .filter(messages::Column::Direction.eq(MessageDirection::Outbound.as_str()))
            .filter(messages::Column::ProviderMessageId.eq(provider_message_id))
            .one(self.store.connection())
            .await?
            .map(Message::try_from)
            .transpose()
    }

    /// How many outbound messages are queued on a channel (all organizations), for metrics and
    /// tests.
    pub async fn queued_count(&self, channel: Option<ChannelKind>) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        let mut q = messages::Entity::find()
            .filter(messages::Column::Direction.eq(MessageDirection::Outbound.as_str()))
            .filter(messages::Column::Status.eq(MessageStatus::Queued.as_str()));
        if let Some(channel) = channel {
            q = q.filter(messages::Column::Channel.eq(channel.as_str()));
        }
        Ok(q.count(self.store.connection()).await?)
    }
}
