//! The occurrences of campaigns, in bulk: a campaign of 100,000 patients is written and counted
//! in batches, never one query per patient.

use careloop_core::{
    CampaignId, MessageStatus, OccurrenceState, OrganizationId, PatientId, ReminderOccurrenceId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Alias, Expr, ExprTrait, Query},
};

use crate::convert::{micros, non_negative_u32, now, parse, required_text};
use crate::entities::{campaigns, messages, patients, reminder_occurrences as occ};
use crate::repos::audit::{NewAuditEntry, append_in};
use crate::repos::occurrences::ReminderOccurrence;
use crate::{Store, StoreError};

const TABLE: &str = "reminder_occurrences";

/// `reason` of the occurrences a pause holds back (cancelled, planned again on resume).
pub const PAUSED: &str = "paused";

/// One step of a campaign for one patient, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaignOccurrence {
    pub patient_id: PatientId,
    pub step: u32,
    /// `Planned`, or `Skipped` with a `reason`.
    pub state: OccurrenceState,
    pub due_at: DateTime<Utc>,
    pub slot_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Globally unique (`campaign:<id>:step<n>:patient:<id>`).
    pub idempotency_key: String,
}

/// What a campaign occurrence becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignOccurrenceChange {
    pub state: OccurrenceState,
    pub due_at: DateTime<Utc>,
    pub slot_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// How many occurrences of one step are in one state (and, for skipped and cancelled ones, for
/// one reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepCount {
    pub step: u32,
    pub state: OccurrenceState,
    pub reason: Option<String>,
    pub count: u64,
}

/// How many messages of one step are in one outbox status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepMessageCount {
    pub step: u32,
    pub status: MessageStatus,
    pub count: u64,
}

/// `store.campaign_occurrences()`.
#[derive(Debug, Clone, Copy)]
pub struct CampaignOccurrences<'a> {
    pub(crate) store: &'a Store,
}

fn of_campaign(org: OrganizationId, campaign: CampaignId) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(occ::Column::OrganizationId.eq(org.as_uuid()))
        .add(occ::Column::CampaignId.eq(campaign.as_uuid()))
}

pub(crate) fn held() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(occ::Column::State.eq(OccurrenceState::Cancelled.as_str()))
        .add(occ::Column::Reason.eq(PAUSED))
}

/// Cancels the occurrences matching `which`, marking them with `reason`; returns how many.
pub(crate) async fn cancel_where(
    db: &impl sea_orm::ConnectionTrait,
    which: sea_orm::Condition,
    reason: &str,
) -> Result<u64, StoreError> {
    let res = occ::Entity::update_many()
        .col_expr(
            occ::Column::State,
            Expr::value(OccurrenceState::Cancelled.as_str()),
        )
        .col_expr(occ::Column::Reason, Expr::value(reason))
        .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
        .filter(which)
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Planned, or held by a pause: what a cancel or an opt-out still has to stop.
fn open() -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(occ::Column::State.eq(OccurrenceState::Planned.as_str()))
        .add(held())
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl CampaignOccurrences<'_> {
    /// Stores the rows in one transaction, skipping any whose idempotency key exists (that row is
    /// left as it is); returns how many were written. The campaign and every patient must belong
    /// to the organization. Meant for batches of a few hundred rows.
    pub async fn insert_many(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
        rows: &[NewCampaignOccurrence],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let txn = self.store.begin_write().await?;
        let found = campaigns::Entity::find()
            .filter(campaigns::Column::Id.eq(campaign.as_uuid()))
            .filter(campaigns::Column::OrganizationId.eq(org.as_uuid()))
            .count(&txn)
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound { entity: "campaign" });
        }
        let mut ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.patient_id.as_uuid()).collect();
        ids.sort();
        ids.dedup();
        let known = patients::Entity::find()
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .filter(patients::Column::Id.is_in(ids.clone()))
            .count(&txn)
            .await?;
        if known != ids.len() as u64 {
            return Err(StoreError::NotFound { entity: "patient" });
        }
        let at = now();
        let mut models = Vec::with_capacity(rows.len());
        for row in rows {
            let step = i32::try_from(row.step)
                .map_err(|_| careloop_core::ParseError::new("campaign_step", "is out of range"))?;
            models.push(occ::ActiveModel {
                id: Set(ReminderOccurrenceId::new().as_uuid()),
                organization_id: Set(org.as_uuid()),
                schedule_id: Set(None),
                campaign_id: Set(Some(campaign.as_uuid())),
                patient_id: Set(row.patient_id.as_uuid()),
                due_at: Set(micros(row.due_at)),
                state: Set(row.state.as_str().to_owned()),
                idempotency_key: Set(required_text("idempotency_key", &row.idempotency_key, 300)?),
                message_id: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
                campaign_step: Set(Some(step)),
                slot_at: Set(row.slot_at.map(micros)),
                reason: Set(row.reason.clone()),
            });
        }
        let res = occ::Entity::insert_many(models)
            .on_conflict_do_nothing_on([occ::Column::IdempotencyKey])
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(match res {
            sea_orm::TryInsertResult::Inserted(n) => n,
            _ => 0,
        })
    }

    /// The campaign's occurrences for these patients, by patient and step.
    pub async fn for_patients(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
        patients: &[PatientId],
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        occ::Entity::find()
            .filter(of_campaign(org, campaign))
            .filter(occ::Column::PatientId.is_in(patients.iter().map(|p| p.as_uuid())))
            .order_by_asc(occ::Column::PatientId)
            .order_by_asc(occ::Column::CampaignStep)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }

    /// Applies `change` if the occurrence is still in `from` (and, when `from` is `Planned`, not
    /// yet due at `as_of`: a due one is the dispatcher's); `Ok(false)` otherwise.
    pub async fn update(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        from: OccurrenceState,
        as_of: DateTime<Utc>,
        change: &CampaignOccurrenceChange,
    ) -> Result<bool, StoreError> {
        let mut query = occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(change.state.as_str()))
            .col_expr(occ::Column::DueAt, Expr::value(micros(change.due_at)))
            .col_expr(occ::Column::SlotAt, Expr::value(change.slot_at.map(micros)))
            .col_expr(occ::Column::Reason, Expr::value(change.reason.clone()))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::CampaignId.is_not_null())
            .filter(occ::Column::State.eq(from.as_str()));
        if from == OccurrenceState::Planned {
            query = query.filter(occ::Column::DueAt.gt(micros(as_of)));
        }
        Ok(query.exec(self.store.connection()).await?.rows_affected == 1)
    }

    /// Moves `from` → `to` with `reason` only if the occurrence is still in `from`, and appends
    /// `audit` in the same transaction; `Ok(false)`, with nothing written, if it was not (another
    /// worker got there first). For a dispatcher settling a campaign occurrence it did not send.
    pub async fn transition_audited(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        from: OccurrenceState,
        to: OccurrenceState,
        reason: Option<&str>,
        audit: NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let txn = self.store.begin_write().await?;
        let res = occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(to.as_str()))
            .col_expr(occ::Column::Reason, Expr::value(reason.map(str::to_owned)))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::State.eq(from.as_str()))
            .exec(&txn)
            .await?;
        let moved = res.rows_affected == 1;
        if moved {
            append_in(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(moved)
    }

    /// Plans an occurrence held by a pause again, for `due_at`; `Ok(false)` if it is no longer
    /// held (cancelled for good, or released already).
    pub async fn release(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        due_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = occ::Entity::update_many()
            .col_expr(
                occ::Column::State,
                Expr::value(OccurrenceState::Planned.as_str()),
            )
            .col_expr(occ::Column::DueAt, Expr::value(micros(due_at)))
            .col_expr(occ::Column::Reason, Expr::value(Option::<String>::None))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(held())
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Holds back every planned occurrence of the campaign (cancelled with reason
    /// [`PAUSED`]); returns how many.
    pub async fn hold(&self, org: OrganizationId, campaign: CampaignId) -> Result<u64, StoreError> {
        let planned = of_campaign(org, campaign)
            .add(occ::Column::State.eq(OccurrenceState::Planned.as_str()));
        cancel_where(self.store.connection(), planned, PAUSED).await
    }

    /// Up to `limit` occurrences held by a pause, by due time then id, after `after` (the last
    /// one of the previous page).
    pub async fn held_page(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
        after: Option<(DateTime<Utc>, ReminderOccurrenceId)>,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        let mut query = occ::Entity::find()
            .filter(of_campaign(org, campaign))
            .filter(held())
            .order_by_asc(occ::Column::DueAt)
            .order_by_asc(occ::Column::Id)
            .limit(limit);
        if let Some((due, id)) = after {
            query = query.filter(
                sea_orm::Condition::any()
                    .add(occ::Column::DueAt.gt(micros(due)))
                    .add(
                        sea_orm::Condition::all()
                            .add(occ::Column::DueAt.eq(micros(due)))
                            .add(occ::Column::Id.gt(id.as_uuid())),
                    ),
            );
        }
        query
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }

    /// Cancels every occurrence of the campaign that is planned or held by a pause, with
    /// `reason`; returns how many.
    pub async fn cancel_open(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
        reason: &str,
    ) -> Result<u64, StoreError> {
        cancel_where(
            self.store.connection(),
            of_campaign(org, campaign).add(open()),
            reason,
        )
        .await
    }

    /// Whether anything of the campaign is still to be sent: planned, being dispatched, or held
    /// by a pause.
    pub async fn has_open(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
    ) -> Result<bool, StoreError> {
        let pending = sea_orm::Condition::any()
            .add(open())
            .add(occ::Column::State.eq(OccurrenceState::Dispatching.as_str()));
        Ok(occ::Entity::find()
            .select_only()
            .column(occ::Column::Id)
            .filter(of_campaign(org, campaign))
            .filter(pending)
            .limit(1)
            .into_tuple::<uuid::Uuid>()
            .one(self.store.connection())
            .await?
            .is_some())
    }

    /// The campaign's occurrences counted by step, state and reason.
    pub async fn counts(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
    ) -> Result<Vec<StepCount>, StoreError> {
        let o = Alias::new(TABLE);
        let stmt = Query::select()
            .column((o.clone(), occ::Column::CampaignStep))
            .column((o.clone(), occ::Column::State))
            .column((o.clone(), occ::Column::Reason))
            .expr_as(
                Expr::col((o.clone(), occ::Column::Id)).count(),
                Alias::new("n"),
            )
            .from(o.clone())
            .and_where(Expr::col((o.clone(), occ::Column::OrganizationId)).eq(org.as_uuid()))
            .and_where(Expr::col((o.clone(), occ::Column::CampaignId)).eq(campaign.as_uuid()))
            .group_by_col((o.clone(), occ::Column::CampaignStep))
            .group_by_col((o.clone(), occ::Column::State))
            .group_by_col((o, occ::Column::Reason))
            .to_owned();
        let mut out = Vec::new();
        for row in self.store.connection().query_all(&stmt).await? {
            let Some(step) = row.try_get::<Option<i32>>("", "campaign_step")? else {
                continue;
            };
            let state: String = row.try_get("", "state")?;
            out.push(StepCount {
                step: non_negative_u32(TABLE, "campaign_step", step)?,
                state: parse(TABLE, "state", &state)?,
                reason: row.try_get("", "reason")?,
                count: count(row.try_get("", "n")?),
            });
        }
        out.sort_by(|a, b| {
            (a.step, a.state.as_str(), &a.reason).cmp(&(b.step, b.state.as_str(), &b.reason))
        });
        Ok(out)
    }

    /// The messages the campaign's occurrences became, counted by step and outbox status.
    pub async fn message_counts(
        &self,
        org: OrganizationId,
        campaign: CampaignId,
    ) -> Result<Vec<StepMessageCount>, StoreError> {
        let o = Alias::new(TABLE);
        let m = Alias::new("messages");
        let stmt = Query::select()
            .column((o.clone(), occ::Column::CampaignStep))
            .column((m.clone(), messages::Column::Status))
            .expr_as(
                Expr::col((m.clone(), messages::Column::Id)).count(),
                Alias::new("n"),
            )
            .from(o.clone())
            .inner_join(
                m.clone(),
                Expr::col((m.clone(), messages::Column::Id))
                    .equals((o.clone(), occ::Column::MessageId)),
            )
            .and_where(Expr::col((o.clone(), occ::Column::OrganizationId)).eq(org.as_uuid()))
            .and_where(Expr::col((o.clone(), occ::Column::CampaignId)).eq(campaign.as_uuid()))
            .group_by_col((o, occ::Column::CampaignStep))
            .group_by_col((m, messages::Column::Status))
            .to_owned();
        let mut out = Vec::new();
        for row in self.store.connection().query_all(&stmt).await? {
            let Some(step) = row.try_get::<Option<i32>>("", "campaign_step")? else {
                continue;
            };
            let status: String = row.try_get("", "status")?;
            out.push(StepMessageCount {
                step: non_negative_u32(TABLE, "campaign_step", step)?,
                status: parse("messages", "status", &status)?,
                count: count(row.try_get("", "n")?),
            });
        }
        out.sort_by(|a, b| (a.step, a.status.as_str()).cmp(&(b.step, b.status.as_str())));
        Ok(out)
    }
}
