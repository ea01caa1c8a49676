use std::collections::BTreeMap;
use std::fmt;

use careloop_core::{
    ChannelKind, ContentVersionId, ConversationId, Language, MessageDirection, MessageId,
    MessageStatus, OrganizationId, PatientId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::convert::{from_json, micros, non_negative_u32, now, parse, parse_opt, to_json};
use crate::entities::{conversations, messages};
use crate::repos::{ensure_patient, updated_one};
use crate::{Inserted, Store, StoreError};

const CONVERSATIONS: &str = "conversations";
const MESSAGES: &str = "messages";

/// The thread of messages between one patient and careloop on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub channel: ChannelKind,
    pub started_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
}

impl TryFrom<conversations::Model> for Conversation {
    type Error = StoreError;
    fn try_from(m: conversations::Model) -> Result<Self, StoreError> {
        Ok(Conversation {
            id: ConversationId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            channel: parse(CONVERSATIONS, "channel", &m.channel)?,
            started_at: m.started_at,
            last_message_at: m.last_message_at,
        })
    }
}

/// Where a generated reply came from, kept with the message for review.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// The approved content versions the reply was grounded in.
    pub content_version_ids: Vec<ContentVersionId>,
    pub model_id: Option<String>,
    pub prompt_version: Option<String>,
    /// Outcome of each safety or quality check, by check name.
    pub checks: BTreeMap<String, serde_json::Value>,
}

/// One message. `Debug` redacts the body, which is personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub organization_id: OrganizationId,
    pub conversation_id: ConversationId,
    pub patient_id: PatientId,
    pub direction: MessageDirection,
    pub channel: ChannelKind,
    pub status: MessageStatus,
    pub body: String,
    pub language: Option<Language>,
    pub idempotency_key: Option<String>,
    pub provenance: Option<Provenance>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Outbound: send attempts so far.
    pub attempts: u32,
    /// Outbound and queued: not sent before this instant (a retry's backoff, a sender's lease or
    /// a hold while a channel finishes streaming); `None` means now.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Outbound: what the channel needs beside the text (buttons, subject, threading), as the
    /// channels crate writes it.
    pub delivery_meta: Option<serde_json::Value>,
    /// Outbound and sent: the provider's id of what was sent.
    pub provider_message_id: Option<String>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("organization_id", &self.organization_id)
            .field("conversation_id", &self.conversation_id)
            .field("patient_id", &self.patient_id)
            .field("direction", &self.direction)
            .field("channel", &self.channel)
            .field("status", &self.status)
            .field("body", &"<redacted>")
            .field("language", &self.language)
            .field("idempotency_key", &self.idempotency_key)
            .field("provenance", &self.provenance)
            .field("failure_reason", &self.failure_reason)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("provider_message_id", &self.provider_message_id)
            .finish()
    }
}

impl TryFrom<messages::Model> for Message {
    type Error = StoreError;
    fn try_from(m: messages::Model) -> Result<Self, StoreError> {
        Ok(Message {
            id: MessageId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            conversation_id: ConversationId::from_uuid(m.conversation_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            direction: parse(MESSAGES, "direction", &m.direction)?,
            channel: parse(MESSAGES, "channel", &m.channel)?,
            status: parse(MESSAGES, "status", &m.status)?,
            body: m.body,
            language: parse_opt(MESSAGES, "language", m.language.as_deref())?,
            idempotency_key: m.idempotency_key,
            provenance: m
                .provenance
                .map(|p| from_json(MESSAGES, "provenance", p))
                .transpose()?,
            failure_reason: m.failure_reason,
            created_at: m.created_at,
            updated_at: m.updated_at,
            attempts: non_negative_u32(MESSAGES, "attempts", m.attempts)?,
            next_attempt_at: m.next_attempt_at,
            delivery_meta: m.delivery_meta,
            provider_message_id: m.provider_message_id,
        })
    }
}

/// A message to append. Patient and channel come from the conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub direction: MessageDirection,
    pub status: MessageStatus,
    pub body: String,
    pub language: Option<Language>,
    /// Globally unique: an inbound update id or an outbox key, namespaced by its source
    /// (`telegram:<bot>:<update_id>`). A second message with the same key is not stored.
    pub idempotency_key: Option<String>,
    pub provenance: Option<Provenance>,
    /// Outbound: what the channel needs beside the text (see [`Message::delivery_meta`]).
    pub delivery_meta: Option<serde_json::Value>,
    /// Outbound: the outbox holds the message until then (a channel that streams finishes its
    /// draft first and releases it earlier with `outbox().release`).
    pub hold_until: Option<DateTime<Utc>>,
}

impl fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewMessage")
            .field("conversation_id", &self.conversation_id)
            .field("direction", &self.direction)
            .field("status", &self.status)
            .field("body", &"<redacted>")
            .field("language", &self.language)
            .field("idempotency_key", &self.idempotency_key)
            .field("provenance", &self.provenance)
            .field("hold_until", &self.hold_until)
            .finish()
    }
}

/// `store.messages()`: conversations and their messages.
#[derive(Debug, Clone, Copy)]
pub struct Messages<'a> {
    pub(crate) store: &'a Store,
}

async fn conversation_in<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    id: ConversationId,
) -> Result<Option<conversations::Model>, StoreError> {
    Ok(conversations::Entity::find_by_id(id.as_uuid())
        .filter(conversations::Column::OrganizationId.eq(org.as_uuid()))
        .one(db)
        .await?)
}

async fn latest_conversation<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    patient: PatientId,
    channel: ChannelKind,
) -> Result<Option<conversations::Model>, StoreError> {
    Ok(conversations::Entity::find()
        .filter(conversations::Column::OrganizationId.eq(org.as_uuid()))
        .filter(conversations::Column::PatientId.eq(patient.as_uuid()))
        .filter(conversations::Column::Channel.eq(channel.as_str()))
        .order_by_desc(conversations::Column::LastMessageAt)
        .order_by_desc(conversations::Column::Id)
        .one(db)
        .await?)
}

async fn message_by_key<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<messages::Model>, StoreError> {
    Ok(messages::Entity::find()
        .filter(messages::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

impl Messages<'_> {
    /// The patient's most recent conversation on this channel, or a new one.
    pub async fn open_or_get_conversation(
        &self,
        org: OrganizationId,
        patient: PatientId,
        channel: ChannelKind,
    ) -> Result<Conversation, StoreError> {
        // The common case is a conversation that exists: read it without taking the write lock.
        if let Some(m) = latest_conversation(self.store.connection(), org, patient, channel).await?
        {
            return Conversation::try_from(m);
        }
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, patient).await?;
        let model = match latest_conversation(&txn, org, patient, channel).await? {
            Some(m) => m,
            None => {
                let at = now();
                conversations::ActiveModel {
                    id: Set(ConversationId::new().as_uuid()),
                    organization_id: Set(org.as_uuid()),
                    patient_id: Set(patient.as_uuid()),
                    channel: Set(channel.as_str().to_owned()),
                    started_at: Set(at),
                    last_message_at: Set(at),
                }
                .insert(&txn)
                .await?
            }
        };
        txn.commit().await?;
        Conversation::try_from(model)
    }

    pub async fn get_conversation(
        &self,
        org: OrganizationId,
        id: ConversationId,
    ) -> Result<Option<Conversation>, StoreError> {
        conversation_in(self.store.connection(), org, id)
            .await?
            .map(Conversation::try_from)
            .transpose()
    }

    /// The patient's conversations, most recently active first.
    pub async fn list_conversations(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Vec<Conversation>, StoreError> {
        conversations::Entity::find()
            .filter(conversations::Column::OrganizationId.eq(org.as_uuid()))
            .filter(conversations::Column::PatientId.eq(patient.as_uuid()))
            .order_by_desc(conversations::Column::LastMessageAt)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Conversation::try_from)
            .collect()
    }

    /// Appends a message to a conversation of this organization and bumps its
    /// `last_message_at`. With an idempotency key already used, nothing is written and the
    /// existing message is returned as [`Inserted::Duplicate`]; a key used by another
    /// organization is [`StoreError::Conflict`].
    pub async fn append_message(
        &self,
        org: OrganizationId,
        new: NewMessage,
    ) -> Result<Inserted<Message>, StoreError> {
        let txn = self.store.begin_write().await?;
        let appended = append_in(&txn, org, new).await?;
        txn.commit().await?;
        Ok(appended)
    }

    /// Sets a message's delivery status (and why it failed, if it did).
    pub async fn update_message_status(
        &self,
        org: OrganizationId,
        id: MessageId,
        status: MessageStatus,
        failure_reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let res = messages::Entity::update_many()
            .col_expr(messages::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                messages::Column::FailureReason,
                Expr::value(failure_reason.map(str::to_owned)),
            )
            .col_expr(messages::Column::UpdatedAt, Expr::value(now()))
            .filter(messages::Column::Id.eq(id.as_uuid()))
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "message")
    }

    pub async fn get_message(
        &self,
        org: OrganizationId,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        messages::Entity::find_by_id(id.as_uuid())
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .one(self.store.connection())
            .await?
            .map(Message::try_from)
            .transpose()
    }

    pub async fn find_by_idempotency_key(
        &self,
        org: OrganizationId,
        key: &str,
    ) -> Result<Option<Message>, StoreError> {
        messages::Entity::find()
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .filter(messages::Column::IdempotencyKey.eq(key))
            .one(self.store.connection())
            .await?
            .map(Message::try_from)
            .transpose()
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn list_messages(
        &self,
        org: OrganizationId,
        conversation: ConversationId,
        limit: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let mut rows = messages::Entity::find()
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .filter(messages::Column::ConversationId.eq(conversation.as_uuid()))
            .order_by_desc(messages::Column::CreatedAt)
            .order_by_desc(messages::Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?;
        rows.reverse();
        rows.into_iter().map(Message::try_from).collect()
    }

    /// The last `limit` messages with a patient on any channel, oldest first.
    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
        limit: u64,
    ) -> Result<Vec<Message>, StoreError> {
        let mut rows = messages::Entity::find()
            .filter(messages::Column::OrganizationId.eq(org.as_uuid()))
            .filter(messages::Column::PatientId.eq(patient.as_uuid()))
            .order_by_desc(messages::Column::CreatedAt)
            .order_by_desc(messages::Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?;
        rows.reverse();
        rows.into_iter().map(Message::try_from).collect()
    }
}

/// [`Messages::append_message`] inside the caller's write transaction, so that a message and
/// what it settles (a reminder's occurrence, its audit entry) commit together.
/// The row for `new` in `conversation` (already checked to be the organization's).
pub(crate) fn message_model(
    id: MessageId,
    org: OrganizationId,
    conversation: &conversations::Model,
    new: NewMessage,
    at: DateTime<Utc>,
) -> messages::ActiveModel {
    messages::ActiveModel {
        id: Set(id.as_uuid()),
        organization_id: Set(org.as_uuid()),
        conversation_id: Set(conversation.id),
        patient_id: Set(conversation.patient_id),
        direction: Set(new.direction.as_str().to_owned()),
        channel: Set(conversation.channel.clone()),
        status: Set(new.status.as_str().to_owned()),
        body: Set(new.body),
        language: Set(new.language.map(|l| l.to_string())),
        idempotency_key: Set(new.idempotency_key),
        provenance: Set(new.provenance.as_ref().map(to_json)),
        failure_reason: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        attempts: Set(0),
        next_attempt_at: Set(new.hold_until.map(micros)),
        delivery_meta: Set(new.delivery_meta),
        provider_message_id: Set(None),
    }
}

pub(crate) async fn append_in<C: ConnectionTrait>(
    txn: &C,
    org: OrganizationId,
    new: NewMessage,
) -> Result<Inserted<Message>, StoreError> {
    if new.body.is_empty() {
        return Err(careloop_core::ParseError::new("body", "must not be empty").into());
    }
    let conversation = conversation_in(txn, org, new.conversation_id)
        .await?
        .ok_or(StoreError::NotFound {
            entity: "conversation",
        })?;
    let at = now();
    let id = MessageId::new();
    let key = new.idempotency_key.clone();
    let insert = messages::Entity::insert(message_model(id, org, &conversation, new, at))
        .on_conflict_do_nothing_on([messages::Column::IdempotencyKey])
        .exec_without_returning(txn)
        .await?;
    let inserted = matches!(insert, sea_orm::TryInsertResult::Inserted(n) if n > 0);
    if !inserted {
        let existing = match &key {
            Some(k) => message_by_key(txn, k).await?,
            None => None,
        };
        return match existing {
            Some(m) if m.organization_id == org.as_uuid() => {
                tracing::debug!(organization_id = %org, message_id = %m.id, "duplicate message ignored");
                Ok(Inserted::Duplicate(Message::try_from(m)?))
            }
            Some(_) => Err(StoreError::Conflict {
                what: "idempotency key used by another organization",
            }),
            None => Err(StoreError::NotFound { entity: "message" }),
        };
    }
    conversations::Entity::update_many()
        .col_expr(conversations::Column::LastMessageAt, Expr::value(at))
        .filter(conversations::Column::Id.eq(conversation.id))
        .exec(txn)
        .await?;
    let model = messages::Entity::find_by_id(id.as_uuid())
        .one(txn)
        .await?
        .ok_or(StoreError::NotFound { entity: "message" })?;
    tracing::debug!(organization_id = %org, message_id = %id, "message appended");
    Ok(Inserted::New(Message::try_from(model)?))
}
