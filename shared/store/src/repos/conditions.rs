use careloop_core::{ConditionId, Slug};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};

use crate::convert::{parse, required_text};
use crate::entities::conditions::{ActiveModel, Column, Entity, Model};
use crate::{Store, StoreError};

const TABLE: &str = "conditions";

/// A health condition content can be written for (`type2_diabetes`). Shared by all organizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub id: ConditionId,
    pub code: Slug,
    pub name: String,
}

impl TryFrom<Model> for Condition {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(Condition {
            id: ConditionId::from_uuid(m.id),
            code: parse(TABLE, "code", &m.code)?,
            name: m.name,
        })
    }
}

/// `store.conditions()`: the global catalogue of conditions.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    pub(crate) store: &'a Store,
}

impl Conditions<'_> {
    /// Creates the condition, or renames the existing one with this code; returns it either way.
    pub async fn upsert(&self, code: &Slug, name: &str) -> Result<Condition, StoreError> {
        let name = required_text("condition_name", name, 200)?;
        Entity::insert(ActiveModel {
            id: Set(ConditionId::new().as_uuid()),
            code: Set(code.as_str().to_owned()),
            name: Set(name),
        })
        .on_conflict(
            OnConflict::column(Column::Code)
                .update_column(Column::Name)
                .to_owned(),
        )
        .exec_without_returning(self.store.connection())
        .await?;
        self.find_by_code(code).await?.ok_or(StoreError::NotFound {
            entity: "condition",
        })
    }

    pub async fn get(&self, id: ConditionId) -> Result<Option<Condition>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .one(self.store.connection())
            .await?
            .map(Condition::try_from)
            .transpose()
    }

    pub async fn find_by_code(&self, code: &Slug) -> Result<Option<Condition>, StoreError> {
        Entity::find()
            .filter(Column::Code.eq(code.as_str()))
            .one(self.store.connection())
            .await?
            .map(Condition::try_from)
            .transpose()
    }

    /// All conditions, by code.
    pub async fn list(&self) -> Result<Vec<Condition>, StoreError> {
        Entity::find()
            .order_by_asc(Column::Code)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Condition::try_from)
            .collect()
    }
}
