use careloop_core::{OrganizationId, Slug};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use crate::convert::{now, parse, required_text};
use crate::entities::organizations::{ActiveModel, Column, Entity, Model};
use crate::{Store, StoreError};

const TABLE: &str = "organizations";

/// A tenant: a clinic or care provider. Every other row belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub slug: Slug,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<Model> for Organization {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(Organization {
            id: OrganizationId::from_uuid(m.id),
            name: m.name,
            slug: parse(TABLE, "slug", &m.slug)?,
            created_at: m.created_at,
        })
    }
}

/// `store.organizations()`.
#[derive(Debug, Clone, Copy)]
pub struct Organizations<'a> {
    pub(crate) store: &'a Store,
}

impl Organizations<'_> {
    /// Creates an organization; a taken slug is [`StoreError::Conflict`].
    pub async fn create(&self, name: &str, slug: &Slug) -> Result<Organization, StoreError> {
        let name = required_text("organization_name", name, 200)?;
        let model = ActiveModel {
            id: Set(OrganizationId::new().as_uuid()),
            name: Set(name),
            slug: Set(slug.as_str().to_owned()),
            created_at: Set(now()),
        }
        .insert(self.store.connection())
        .await
        .map_err(|e| StoreError::conflict_or_db(e, "organization slug"))?;
        let org = Organization::try_from(model)?;
        tracing::info!(organization_id = %org.id, "organization created");
        Ok(org)
    }

    pub async fn get(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .one(self.store.connection())
            .await?
            .map(Organization::try_from)
            .transpose()
    }

    pub async fn find_by_slug(&self, slug: &Slug) -> Result<Option<Organization>, StoreError> {
        Entity::find()
            .filter(Column::Slug.eq(slug.as_str()))
            .one(self.store.connection())
            .await?
            .map(Organization::try_from)
            .transpose()
    }

    /// All organizations, oldest first. For operators; tenant code has no reason to call it.
    pub async fn list(&self) -> Result<Vec<Organization>, StoreError> {
        Entity::find()
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Organization::try_from)
            .collect()
    }
}
