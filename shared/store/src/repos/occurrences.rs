use careloop_core::{
    CampaignId, MedicationScheduleId, MessageId, OccurrenceState, OrganizationId, PatientId,
    ReminderOccurrenceId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use crate::convert::{micros, non_negative_u32, now, parse, required_text};
use crate::entities::{campaigns, medication_schedules, messages, reminder_occurrences as occ};
use crate::repos::{ensure_patient, updated_one};
use crate::{Inserted, Store, StoreError};

const TABLE: &str = "reminder_occurrences";

/// One planned reminder: a dose of a schedule or a step of a campaign, due at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderOccurrence {
    pub id: ReminderOccurrenceId,
    pub organization_id: OrganizationId,
    pub schedule_id: Option<MedicationScheduleId>,
    pub campaign_id: Option<CampaignId>,
    pub patient_id: PatientId,
    pub due_at: DateTime<Utc>,
    pub state: OccurrenceState,
    pub idempotency_key: String,
    pub message_id: Option<MessageId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A campaign occurrence's step (its index in the campaign's steps).
    pub campaign_step: Option<u32>,
    /// A campaign occurrence's own time for the patient; `due_at` is this or later when the
    /// campaign's fan-out was paced.
    pub slot_at: Option<DateTime<Utc>>,
    /// Why a campaign occurrence is skipped or cancelled (`no_template`, `paused`, …).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReminderOccurrence {
    pub schedule_id: Option<MedicationScheduleId>,
    pub campaign_id: Option<CampaignId>,
    pub patient_id: PatientId,
    pub due_at: DateTime<Utc>,
    /// Globally unique, derived from what the occurrence is for (e.g.
    /// `schedule:<id>:<local slot date-time>`), so planning the same dose twice stores it once.
    pub idempotency_key: String,
}

impl TryFrom<occ::Model> for ReminderOccurrence {
    type Error = StoreError;
    fn try_from(m: occ::Model) -> Result<Self, StoreError> {
        Ok(ReminderOccurrence {
            id: ReminderOccurrenceId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            schedule_id: m.schedule_id.map(MedicationScheduleId::from_uuid),
            campaign_id: m.campaign_id.map(CampaignId::from_uuid),
            patient_id: PatientId::from_uuid(m.patient_id),
            due_at: m.due_at,
            state: parse(TABLE, "state", &m.state)?,
            idempotency_key: m.idempotency_key,
            message_id: m.message_id.map(MessageId::from_uuid),
            created_at: m.created_at,
            updated_at: m.updated_at,
            campaign_step: m
                .campaign_step
                .map(|s| non_negative_u32(TABLE, "campaign_step", s))
                .transpose()?,
            slot_at: m.slot_at,
            reason: m.reason,
        })
    }
}

/// `store.reminder_occurrences()`.
#[derive(Debug, Clone, Copy)]
pub struct ReminderOccurrences<'a> {
    pub(crate) store: &'a Store,
}

impl ReminderOccurrences<'_> {
    /// Plans an occurrence unless one with the same idempotency key exists; in that case nothing
    /// is written and the existing one is returned as [`Inserted::Duplicate`] (a key used by
    /// another organization is [`StoreError::Conflict`]). The schedule and campaign, if given,
    /// must belong to the organization and the patient.
    pub async fn insert_if_absent(
        &self,
        org: OrganizationId,
        new: NewReminderOccurrence,
    ) -> Result<Inserted<ReminderOccurrence>, StoreError> {
        let key = required_text("idempotency_key", &new.idempotency_key, 300)?;
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, new.patient_id).await?;
        if let Some(schedule) = new.schedule_id {
            let n = medication_schedules::Entity::find()
                .filter(medication_schedules::Column::Id.eq(schedule.as_uuid()))
                .filter(medication_schedules::Column::OrganizationId.eq(org.as_uuid()))
                .filter(medication_schedules::Column::PatientId.eq(new.patient_id.as_uuid()))
                .count(&txn)
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    entity: "medication schedule",
                });
            }
        }
        if let Some(campaign) = new.campaign_id {
            let n = campaigns::Entity::find()
                .filter(campaigns::Column::Id.eq(campaign.as_uuid()))
                .filter(campaigns::Column::OrganizationId.eq(org.as_uuid()))
                .count(&txn)
                .await?;
            if n == 0 {
                return Err(StoreError::NotFound { entity: "campaign" });
            }
        }
        let at = now();
        let id = ReminderOccurrenceId::new();
        let res = occ::Entity::insert(occ::ActiveModel {
            id: Set(id.as_uuid()),
            organization_id: Set(org.as_uuid()),
            schedule_id: Set(new.schedule_id.map(|s| s.as_uuid())),
            campaign_id: Set(new.campaign_id.map(|c| c.as_uuid())),
            patient_id: Set(new.patient_id.as_uuid()),
            due_at: Set(micros(new.due_at)),
            state: Set(OccurrenceState::Planned.as_str().to_owned()),
            idempotency_key: Set(key.clone()),
            message_id: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
            campaign_step: Set(None),
            slot_at: Set(None),
            reason: Set(None),
        })
        .on_conflict_do_nothing_on([occ::Column::IdempotencyKey])
        .exec_without_returning(&txn)
        .await?;
        let inserted = matches!(res, sea_orm::TryInsertResult::Inserted(n) if n > 0);
        let model = occ::Entity::find()
            .filter(occ::Column::IdempotencyKey.eq(key))
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "reminder occurrence",
            })?;
        txn.commit().await?;
        if model.organization_id != org.as_uuid() {
            return Err(StoreError::Conflict {
                what: "idempotency key used by another organization",
            });
        }
        let occurrence = ReminderOccurrence::try_from(model)?;
        Ok(if inserted {
            Inserted::New(occurrence)
        } else {
            Inserted::Duplicate(occurrence)
        })
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
    ) -> Result<Option<ReminderOccurrence>, StoreError> {
        occ::Entity::find_by_id(id.as_uuid())
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .one(self.store.connection())
            .await?
            .map(ReminderOccurrence::try_from)
            .transpose()
    }

    /// Planned occurrences due at or before `now`, of every organization, earliest first, at most
    /// `limit`. For the dispatcher (a system job): claim each with [`Self::transition_state`]
    /// before sending, and scope all further work to its `organization_id`.
    pub async fn due(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        occ::Entity::find()
            .filter(occ::Column::State.eq(OccurrenceState::Planned.as_str()))
            .filter(occ::Column::DueAt.lte(micros(now)))
            .order_by_asc(occ::Column::DueAt)
            .order_by_asc(occ::Column::Id)
            .limit(limit)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }

    /// The patient's occurrences due in `[from, to)`, earliest first.
    pub async fn list_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        occ::Entity::find()
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::PatientId.eq(patient.as_uuid()))
            .filter(occ::Column::DueAt.gte(micros(from)))
            .filter(occ::Column::DueAt.lt(micros(to)))
            .order_by_asc(occ::Column::DueAt)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }

    /// The schedule's occurrences still `Planned` and due at or after `from`, earliest first: what
    /// re-planning may still move or cancel.
    pub async fn list_planned_for_schedule(
        &self,
        org: OrganizationId,
        schedule: MedicationScheduleId,
        from: DateTime<Utc>,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        occ::Entity::find()
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::ScheduleId.eq(schedule.as_uuid()))
            .filter(occ::Column::State.eq(OccurrenceState::Planned.as_str()))
            .filter(occ::Column::DueAt.gte(micros(from)))
            .order_by_asc(occ::Column::DueAt)
            .order_by_asc(occ::Column::Id)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ReminderOccurrence::try_from)
            .collect()
    }

    /// Re-plans an occurrence for `due_at`: one still `Planned` and not yet due at `as_of`, or one
    /// `Cancelled`, becomes `Planned` at `due_at`; `Ok(false)` if it is in any other state or
    /// already due (the dispatcher's from then on), and then nothing changes.
    pub async fn replan(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        due_at: DateTime<Utc>,
        as_of: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let still_open = sea_orm::Condition::any()
            .add(occ::Column::State.eq(OccurrenceState::Cancelled.as_str()))
            .add(
                sea_orm::Condition::all()
                    .add(occ::Column::State.eq(OccurrenceState::Planned.as_str()))
                    .add(occ::Column::DueAt.gt(micros(as_of))),
            );
        let res = occ::Entity::update_many()
            .col_expr(occ::Column::DueAt, Expr::value(micros(due_at)))
            .col_expr(
                occ::Column::State,
                Expr::value(OccurrenceState::Planned.as_str()),
            )
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(still_open)
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Sets the state unconditionally.
    pub async fn set_state(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        state: OccurrenceState,
    ) -> Result<(), StoreError> {
        let res = occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(state.as_str()))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "reminder occurrence")
    }

    /// Cancels every occurrence of the patient still to be sent (after an opt-out): `Planned`
    /// ones, and campaign steps held by a paused campaign (which a resume would otherwise plan
    /// again); each is marked with the reason `opted_out`. Returns how many. Occurrences already
    /// being dispatched are left to the dispatcher, which checks consent again before sending.
    pub async fn cancel_planned_for_patient(
        &self,
        org: OrganizationId,
        patient: PatientId,
    ) -> Result<u64, StoreError> {
        let still_to_send = sea_orm::Condition::all()
            .add(occ::Column::OrganizationId.eq(org.as_uuid()))
            .add(occ::Column::PatientId.eq(patient.as_uuid()))
            .add(
                sea_orm::Condition::any()
                    .add(occ::Column::State.eq(OccurrenceState::Planned.as_str()))
                    .add(crate::repos::campaign_occurrences::held()),
            );
        crate::repos::campaign_occurrences::cancel_where(
            self.store.connection(),
            still_to_send,
            "opted_out",
        )
        .await
    }

    /// Moves `from` → `to` only if the occurrence is still in `from`; `Ok(false)` if it was not
    /// (another worker got there first). Use `Planned` → `Dispatching` to claim an occurrence.
    pub async fn transition_state(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        from: OccurrenceState,
        to: OccurrenceState,
    ) -> Result<bool, StoreError> {
        let res = occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(to.as_str()))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::State.eq(from.as_str()))
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected == 1)
    }
}

/// Batch claims for the due sweeper: one transaction per batch instead of a round trip per
/// occurrence.
impl ReminderOccurrences<'_> {
    /// Claims up to `limit` `Planned` occurrences due at or before `now`, of every organization,
    /// earliest first, moving them to `Dispatching`. Two sweepers never claim the same one (the
    /// batch is read and moved in one write transaction; PostgreSQL skips rows another claim holds,
    /// SQLite's write lock serializes claims). For the sweeper, which enqueues a job for each;
    /// scope all further work to each one's `organization_id`.
    pub async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        self.claim_batch(
            OccurrenceState::Planned,
            occ::Column::DueAt.lte(micros(now)),
            occ::Column::DueAt,
            limit,
        )
        .await
    }

    /// Takes up to `limit` occurrences left in `Dispatching` since before `before` (their job was
    /// lost, or is waiting in a long queue), oldest first, and touches them (`updated_at` = now)
    /// so that the next round does not take them again. For the sweeper, which enqueues them again.
    pub async fn claim_stale_dispatching(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        self.claim_batch(
            OccurrenceState::Dispatching,
            occ::Column::UpdatedAt.lt(micros(before)),
            occ::Column::UpdatedAt,
            limit,
        )
        .await
    }

    /// Moves claimed occurrences that could not be enqueued back from `Dispatching` to `Planned`
    /// (those still dispatching), so the next sweep takes them at once instead of after the stale
    /// delay; returns how many moved. Like the claims, this works across organizations on the
    /// claimer's own rows.
    pub async fn release_claims(
        &self,
        claimed: &[ReminderOccurrenceId],
    ) -> Result<u64, StoreError> {
        if claimed.is_empty() {
            return Ok(0);
        }
        let res = occ::Entity::update_many()
            .col_expr(
                occ::Column::State,
                Expr::value(OccurrenceState::Planned.as_str()),
            )
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.is_in(claimed.iter().map(|id| id.as_uuid())))
            .filter(occ::Column::State.eq(OccurrenceState::Dispatching.as_str()))
            .exec(self.store.connection())
            .await?;
        Ok(res.rows_affected)
    }

    /// Moves `from` → `to` only if the occurrence is still in `from`, recording `message` (the
    /// one it was sent as, which must belong to the organization) when given, and appends `audit`
    /// in the same transaction: the change and its audit entry commit together or not at all.
    /// `Ok(false)`, with nothing written, when it was not in `from` (another worker got there
    /// first) or the message is not the organization's.
    pub async fn transition_audited(
        &self,
        org: OrganizationId,
        id: ReminderOccurrenceId,
        from: OccurrenceState,
        to: OccurrenceState,
        message: Option<MessageId>,
        audit: crate::NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let txn = self.store.begin_write().await?;
        let mut update = occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(to.as_str()))
            .col_expr(occ::Column::UpdatedAt, Expr::value(now()))
            .filter(occ::Column::Id.eq(id.as_uuid()))
            .filter(occ::Column::OrganizationId.eq(org.as_uuid()))
            .filter(occ::Column::State.eq(from.as_str()));
        if let Some(message) = message {
            update = update
                .col_expr(occ::Column::MessageId, Expr::value(Some(message.as_uuid())))
                .filter(Expr::exists(
                    sea_orm::sea_query::Query::select()
                        .column(messages::Column::Id)
                        .from(messages::Entity)
                        .and_where(messages::Column::Id.eq(message.as_uuid()))
                        .and_where(messages::Column::OrganizationId.eq(org.as_uuid()))
                        .to_owned(),
                ));
        }
        let moved = update.exec(&txn).await?.rows_affected == 1;
        if moved {
            crate::repos::audit::append_in(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(moved)
    }

    async fn claim_batch(
        &self,
        from: OccurrenceState,
        due: sea_orm::sea_query::SimpleExpr,
        order: occ::Column,
        limit: u64,
    ) -> Result<Vec<ReminderOccurrence>, StoreError> {
        use sea_orm::sea_query::{LockBehavior, LockType};
        let txn = self.store.begin_write().await?;
        let models = occ::Entity::find()
            .filter(occ::Column::State.eq(from.as_str()))
            .filter(due)
            .order_by_asc(order)
            .order_by_asc(occ::Column::Id)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        if models.is_empty() {
            txn.commit().await?;
            return Ok(Vec::new());
        }
        let at = now();
        let to = OccurrenceState::Dispatching;
        // The rows are locked (PostgreSQL) or the database is (SQLite): all of them move.
        occ::Entity::update_many()
            .col_expr(occ::Column::State, Expr::value(to.as_str()))
            .col_expr(occ::Column::UpdatedAt, Expr::value(at))
            .filter(occ::Column::Id.is_in(models.iter().map(|m| m.id)))
            .filter(occ::Column::State.eq(from.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        models
            .into_iter()
            .map(|mut m| {
                m.state = to.as_str().to_owned();
                m.updated_at = at;
                ReminderOccurrence::try_from(m)
            })
            .collect()
    }
}
