use careloop_core::{CampaignId, CampaignState, OrganizationId, StaffUserId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};

use crate::convert::{now, parse, required_text};
use crate::entities::{
    campaigns::{ActiveModel, Column, Entity, Model},
    staff_users,
};
use crate::repos::updated_one;
use crate::{Store, StoreError};

const TABLE: &str = "campaigns";

/// A series of messages sent to an audience of patients. `audience` and `steps` are JSON
/// documents whose shape belongs to the campaign engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    pub id: CampaignId,
    pub organization_id: OrganizationId,
    pub name: String,
    pub state: CampaignState,
    pub audience: serde_json::Value,
    pub steps: serde_json::Value,
    pub created_by: StaffUserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub name: String,
    pub audience: serde_json::Value,
    pub steps: serde_json::Value,
    pub created_by: StaffUserId,
}

impl TryFrom<Model> for Campaign {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(Campaign {
            id: CampaignId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            name: m.name,
            state: parse(TABLE, "state", &m.state)?,
            audience: m.audience,
            steps: m.steps,
            created_by: StaffUserId::from_uuid(m.created_by),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// `store.campaigns()`.
#[derive(Debug, Clone, Copy)]
pub struct Campaigns<'a> {
    pub(crate) store: &'a Store,
}

impl Campaigns<'_> {
    /// Creates a campaign in `Draft`. `created_by` must be staff of the organization.
    pub async fn create(
        &self,
        org: OrganizationId,
        new: NewCampaign,
    ) -> Result<Campaign, StoreError> {
        let name = required_text("campaign_name", &new.name, 200)?;
        let txn = self.store.begin_write().await?;
        let staff = staff_users::Entity::find()
            .filter(staff_users::Column::Id.eq(new.created_by.as_uuid()))
            .filter(staff_users::Column::OrganizationId.eq(org.as_uuid()))
            .count(&txn)
            .await?;
        if staff == 0 {
            return Err(StoreError::NotFound {
                entity: "staff user",
            });
        }
        let at = now();
        let model = ActiveModel {
            id: Set(CampaignId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            name: Set(name),
            state: Set(CampaignState::Draft.as_str().to_owned()),
            audience: Set(new.audience),
            steps: Set(new.steps),
            created_by: Set(new.created_by.as_uuid()),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        let campaign = Campaign::try_from(model)?;
        tracing::info!(organization_id = %org, campaign_id = %campaign.id, "campaign created");
        Ok(campaign)
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        id: CampaignId,
    ) -> Result<Option<Campaign>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .one(self.store.connection())
            .await?
            .map(Campaign::try_from)
            .transpose()
    }

    /// The organization's campaigns, newest first.
    pub async fn list(&self, org: OrganizationId) -> Result<Vec<Campaign>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Campaign::try_from)
            .collect()
    }

    /// The organization's campaigns in any of `states`, oldest first.
    pub async fn list_in_states(
        &self,
        org: OrganizationId,
        states: &[CampaignState],
    ) -> Result<Vec<Campaign>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::State.is_in(states.iter().map(|s| s.as_str())))
            .order_by_asc(Column::CreatedAt)
            .order_by_asc(Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(Campaign::try_from)
            .collect()
    }

    /// Moves the campaign `from` → `to` only if it is still in `from`; `Ok(false)` if it was not
    /// (someone else changed it first). `NotFound` if there is no such campaign.
    pub async fn transition_state(
        &self,
        org: OrganizationId,
        id: CampaignId,
        from: CampaignState,
        to: CampaignState,
    ) -> Result<bool, StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::State, Expr::value(to.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::State.eq(from.as_str()))
            .exec(self.store.connection())
            .await?;
        if res.rows_affected == 1 {
            return Ok(true);
        }
        self.get(org, id)
            .await?
            .ok_or(StoreError::NotFound { entity: "campaign" })
            .map(|_| false)
    }

    /// Sets the campaign's state; which moves are allowed is the campaign engine's decision.
    pub async fn set_state(
        &self,
        org: OrganizationId,
        id: CampaignId,
        state: CampaignState,
    ) -> Result<Campaign, StoreError> {
        let db = self.store.connection();
        let res = Entity::update_many()
            .col_expr(Column::State, Expr::value(state.as_str()))
            .col_expr(Column::UpdatedAt, Expr::value(now()))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(db)
            .await?;
        updated_one(res.rows_affected, "campaign")?;
        self.get(org, id)
            .await?
            .ok_or(StoreError::NotFound { entity: "campaign" })
    }
}
