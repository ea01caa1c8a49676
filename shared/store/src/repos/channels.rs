use std::fmt;

use careloop_core::{
    ChannelIdentityId, ChannelKind, EmailAddress, OrganizationId, ParseError, PatientId,
    TelegramChatId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};

use crate::convert::{corrupt, micros, now, parse};
use crate::entities::channel_identities::{ActiveModel, Column, Entity, Model};
use crate::repos::{ensure_patient, updated_one};
use crate::{Store, StoreError};

const TABLE: &str = "channel_identities";

/// Where a patient can be reached: the address on one channel. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ChannelAddress {
    Telegram(TelegramChatId),
    Email(EmailAddress),
    /// The web chat session identifier the widget presents.
    WebChat(String),
}

impl fmt::Debug for ChannelAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelAddress::{:?}(<redacted>)", self.kind())
    }
}

impl ChannelAddress {
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelAddress::Telegram(_) => ChannelKind::Telegram,
            ChannelAddress::Email(_) => ChannelKind::Email,
            ChannelAddress::WebChat(_) => ChannelKind::WebChat,
        }
    }

    /// The address as stored in the `address` column.
    pub fn as_stored(&self) -> String {
        match self {
            ChannelAddress::Telegram(id) => id.to_string(),
            ChannelAddress::Email(e) => e.as_str().to_owned(),
            ChannelAddress::WebChat(s) => s.clone(),
        }
    }

    /// Parses an address for `kind` (a chat id, an email, a session id).
    pub fn parse(kind: ChannelKind, address: &str) -> Result<ChannelAddress, ParseError> {
        match kind {
            ChannelKind::Telegram => address.parse().map(ChannelAddress::Telegram),
            ChannelKind::Email => address.parse().map(ChannelAddress::Email),
            ChannelKind::WebChat => {
                let s = address.trim();
                if s.is_empty() || s.len() > 200 || s.chars().any(char::is_control) {
                    Err(ParseError::new(
                        "web_chat_session",
                        "must be 1-200 characters without control characters",
                    ))
                } else {
                    Ok(ChannelAddress::WebChat(s.to_owned()))
                }
            }
        }
    }
}

/// A patient's address on one channel, within one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelIdentity {
    pub id: ChannelIdentityId,
    pub organization_id: OrganizationId,
    pub patient_id: PatientId,
    pub address: ChannelAddress,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ChannelIdentity {
    pub fn channel(&self) -> ChannelKind {
        self.address.kind()
    }
}

impl TryFrom<Model> for ChannelIdentity {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        let kind: ChannelKind = parse(TABLE, "channel", &m.channel)?;
        let address =
            ChannelAddress::parse(kind, &m.address).map_err(|_| corrupt(TABLE, "address"))?;
        Ok(ChannelIdentity {
            id: ChannelIdentityId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            patient_id: PatientId::from_uuid(m.patient_id),
            address,
            verified_at: m.verified_at,
            created_at: m.created_at,
        })
    }
}

/// `store.channel_identities()`.
#[derive(Debug, Clone, Copy)]
pub struct ChannelIdentities<'a> {
    pub(crate) store: &'a Store,
}

impl ChannelIdentities<'_> {
    /// Links an address to a patient. Linking the same address to the same patient again returns
    /// the existing link (recording `verified_at` if it was not yet verified); an address already
    /// linked to another patient of the organization is [`StoreError::Conflict`].
    pub async fn link(
        &self,
        org: OrganizationId,
        patient: PatientId,
        address: &ChannelAddress,
        verified_at: Option<DateTime<Utc>>,
    ) -> Result<ChannelIdentity, StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, patient).await?;
        let existing = Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::Channel.eq(address.kind().as_str()))
            .filter(Column::Address.eq(address.as_stored()))
            .one(&txn)
            .await?;
        let model = match existing {
            Some(m) if m.patient_id != patient.as_uuid() => {
                return Err(StoreError::Conflict {
                    what: "channel address linked to another patient",
                });
            }
            Some(m) => match (m.verified_at, verified_at) {
                (None, Some(at)) => {
                    let mut am: ActiveModel = m.into();
                    am.verified_at = Set(Some(micros(at)));
                    am.update(&txn).await?
                }
                _ => m,
            },
            None => ActiveModel {
                id: Set(ChannelIdentityId::new().as_uuid()),
                organization_id: Set(org.as_uuid()),
                patient_id: Set(patient.as_uuid()),
                channel: Set(address.kind().as_str().to_owned()),
                address: Set(address.as_stored()),
                verified_at: Set(verified_at.map(micros)),
                created_at: Set(now()),
            }
            .insert(&txn)
            .await
            .map_err(|e| StoreError::conflict_or_db(e, "channel address"))?,
        };
        txn.commit().await?;
        let identity = ChannelIdentity::try_from(model)?;
        tracing::info!(organization_id = %org, patient_id = %patient, channel = %identity.channel(), "channel identity linked");
        Ok(identity)
    }

    /// The identity with this address in this organization.
    pub async fn find_by_address(
        &self,
        org: OrganizationId,
        address: &ChannelAddress,
    ) -> Result<Option<ChannelIdentity>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::Channel.eq(address.kind().as_str()))
            .filter(Column::Address.eq(address.as_stored()))
            .one(self.store.connection())
            .await?
            .map(ChannelIdentity::try_from)
            .transpose()
    }

    /// Every identity with this address, in any organization, oldest first. For inbound messages
    /// whose organization is not known yet; each result names its organization, and all further
    /// reads must be scoped to it.
    pub async fn find_by_address_any_org(
        &self,
        address: &ChannelAddress,
    ) -> Result<Vec<ChannelIdentity>, StoreError> {
        Entity::find()
            .filter(Column::Channel.eq(address.kind().as_str()))
            .filter(Column::Address.eq(address.as_stored()))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ChannelIdentity::try_from)
            .collect()
    }

    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<Vec<ChannelIdentity>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::PatientId.eq(patient.as_uuid()))
            .order_by_asc(Column::Channel)
            .order_by_asc(Column::CreatedAt)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ChannelIdentity::try_from)
            .collect()
    }

    pub async fn mark_verified(
        &self,
        org: OrganizationId,
        id: ChannelIdentityId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::VerifiedAt, Expr::value(Some(micros(at))))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "channel identity")
    }

    pub async fn unlink(
        &self,
        org: OrganizationId,
        id: ChannelIdentityId,
    ) -> Result<(), StoreError> {
        let res = Entity::delete_many()
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "channel identity")
    }
}
