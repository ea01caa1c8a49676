use std::{fmt, str::FromStr};

use careloop_core::{AuditEntryId, OrganizationId, ParseError, PatientId, StaffUserId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::convert::{now, parse};
use crate::entities::audit_log::{ActiveModel, Column, Entity, Model};
use crate::{Store, StoreError};

const TABLE: &str = "audit_log";

/// Who did something: stored as `staff:<uuid>`, `patient:<uuid>` or `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    Staff(StaffUserId),
    Patient(PatientId),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::Patient(id) => write!(f, "patient:{id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

impl FromStr for Actor {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::new("actor", "must be system, staff:<uuid> or patient:<uuid>");
        match s.split_once(':') {
            None if s == "system" => Ok(Actor::System),
            Some(("staff", id)) => id.parse().map(Actor::Staff).map_err(|_| err()),
            Some(("patient", id)) => id.parse().map(Actor::Patient).map_err(|_| err()),
            _ => Err(err()),
        }
    }
}

/// One line of the append-only audit trail. `details` must not hold personal data: ids and
/// states, not names or message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    pub organization_id: Option<OrganizationId>,
    pub actor: Actor,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// `None` for events that belong to no organization (e.g. system maintenance).
    pub organization_id: Option<OrganizationId>,
    pub actor: Actor,
    /// What happened, dotted: `content_version.transition`, `patient.consent_changed`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub details: serde_json::Value,
}

impl TryFrom<Model> for AuditEntry {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: AuditEntryId::from_uuid(m.id),
            organization_id: m.organization_id.map(OrganizationId::from_uuid),
            actor: parse(TABLE, "actor", &m.actor)?,
            action: m.action,
            entity_type: m.entity_type,
            entity_id: m.entity_id,
            details: m.details,
            created_at: m.created_at,
        })
    }
}

/// Appends on any connection or transaction, so that a change and its audit entry commit together.
/// The row for `entry`, stamped now.
pub(crate) fn entry_model(entry: NewAuditEntry) -> ActiveModel {
    ActiveModel {
        id: Set(AuditEntryId::new().as_uuid()),
        organization_id: Set(entry.organization_id.map(|o| o.as_uuid())),
        actor: Set(entry.actor.to_string()),
        action: Set(entry.action),
        entity_type: Set(entry.entity_type),
        entity_id: Set(entry.entity_id),
        details: Set(entry.details),
        created_at: Set(now()),
    }
}

pub(crate) async fn append_in<C: ConnectionTrait>(
    db: &C,
    entry: NewAuditEntry,
) -> Result<AuditEntry, StoreError> {
    AuditEntry::try_from(entry_model(entry).insert(db).await?)
}

/// Appends every entry in one statement.
pub(crate) async fn append_many_in<C: ConnectionTrait>(
    db: &C,
    entries: Vec<NewAuditEntry>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    Entity::insert_many(entries.into_iter().map(entry_model))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// `store.audit()`: append and read only. There is deliberately no way to change or remove an
/// entry, and the database rejects `UPDATE`/`DELETE` on the table as well.
#[derive(Debug, Clone, Copy)]
pub struct AuditLog<'a> {
    pub(crate) store: &'a Store,
}

impl AuditLog<'_> {
    pub async fn append(&self, entry: NewAuditEntry) -> Result<AuditEntry, StoreError> {
        append_in(self.store.connection(), entry).await
    }

    /// The organization's entries, newest first, at most `limit`.
    pub async fn list(
        &self,
        org: OrganizationId,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(AuditEntry::try_from)
            .collect()
    }

    /// The organization's entries about one entity, oldest first.
    pub async fn list_for_entity(
        &self,
        org: OrganizationId,
        entity_type: &str,
        entity_id: &str,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::EntityType.eq(entity_type))
            .filter(Column::EntityId.eq(entity_id))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(AuditEntry::try_from)
            .collect()
    }
}
