//! Dispatching many due reminders at once: what each needs, read by one query per table for the
//! whole batch, and their messages, `sent` states and audit entries written in one transaction.
//!
//! A worker that dispatches reminders one at a time makes a dozen round trips and one commit per
//! dose; a batch makes about as many in all (five reads; seven statements in one transaction:
//! the conversations and the occurrences read, the occurrences locked; the messages already
//! stored under their keys; the new messages; the state changes with their message ids, each
//! row written once; the conversations; the audit entries), and one commit. Every guarantee of
//! the one-at-a-time path holds per dose: an occurrence moves to `sent` only from the state it
//! was read in, with its audit entry and its one message (whose idempotency key is unique), or
//! not at all.

use std::collections::{HashMap, HashSet};

use careloop_core::{
    ChannelKind, ConversationId, MessageId, OccurrenceState, OrganizationId, PatientId,
    ReminderOccurrenceId,
};
use sea_orm::sea_query::{CaseStatement, Expr};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::now;
use crate::entities::{
    channel_identities, conversations, medication_schedules, messages,
    patient_channel_opt_outs as opt_outs, patients, reminder_occurrences as occ,
};
use crate::repos::messages::message_model;
use crate::repos::occurrences::ReminderOccurrences;
use crate::repos::patients::{to_opt_out, to_patient};
use crate::{
    ChannelIdentity, Conversation, MedicationSchedule, NewAuditEntry, NewMessage, Patient,
    ReminderOccurrence, StoreError,
};

/// One due occurrence with what dispatching it reads: its schedule, its patient (with
/// opt-outs) and the patient's channel identities, all of the occurrence's organization.
#[derive(Debug, Clone)]
pub struct DispatchContext {
    pub occurrence: ReminderOccurrence,
    /// `None`: a campaign step, or the schedule is gone.
    pub schedule: Option<MedicationSchedule>,
    /// `None`: the patient is gone.
    pub patient: Option<Patient>,
    pub identities: Vec<ChannelIdentity>,
}

/// One reminder to store as sent by [`ReminderOccurrences::send_many`].
#[derive(Debug, Clone)]
pub struct BatchSend {
    pub organization_id: OrganizationId,
    pub occurrence_id: ReminderOccurrenceId,
    /// The state the occurrence was read in: it moves to `sent` only from there.
    pub from: OccurrenceState,
    pub message: NewMessage,
    pub audit: NewAuditEntry,
}

/// What [`ReminderOccurrences::send_many`] did with one [`BatchSend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSent {
    /// The message the occurrence was sent as, when it moved.
    pub message_id: Option<MessageId>,
    /// `false`: the occurrence had left the state it was read in (another worker sent it, it
    /// was cancelled); nothing was written for it.
    pub moved: bool,
}

impl ReminderOccurrences<'_> {
    /// Reads the occurrences `wanted` with what dispatching them needs, in five queries whatever
    /// their number. The answer is in the order of `wanted`; `None` where the occurrence does not
    /// exist in that organization.
    pub async fn dispatch_contexts(
        &self,
        wanted: &[(OrganizationId, ReminderOccurrenceId)],
    ) -> Result<Vec<Option<DispatchContext>>, StoreError> {
        let db = self.store.connection();
        let ids: HashSet<_> = wanted.iter().map(|(_, id)| id.as_uuid()).collect();
        let mut found: HashMap<uuid::Uuid, ReminderOccurrence> = HashMap::new();
        for model in occ::Entity::find()
            .filter(occ::Column::Id.is_in(ids))
            .all(db)
            .await?
        {
            found.insert(model.id, ReminderOccurrence::try_from(model)?);
        }
        let belongs = |org: &OrganizationId, id: &ReminderOccurrenceId| {
            found
                .get(&id.as_uuid())
                .filter(|o| o.organization_id == *org)
        };
        let mine: Vec<&ReminderOccurrence> =
            wanted.iter().filter_map(|(o, id)| belongs(o, id)).collect();
        let schedule_ids: HashSet<_> = mine
            .iter()
            .filter_map(|o| o.schedule_id.map(|s| s.as_uuid()))
            .collect();
        let patient_ids: HashSet<_> = mine.iter().map(|o| o.patient_id.as_uuid()).collect();

        let mut schedules = HashMap::new();
        if !schedule_ids.is_empty() {
            for model in medication_schedules::Entity::find()
                .filter(medication_schedules::Column::Id.is_in(schedule_ids))
                .all(db)
                .await?
            {
                let schedule = MedicationSchedule::try_from(model)?;
                schedules.insert(schedule.id, schedule);
            }
        }
        let mut opt_outs_of: HashMap<(uuid::Uuid, uuid::Uuid), Vec<_>> = HashMap::new();
        for model in opt_outs::Entity::find()
            .filter(opt_outs::Column::PatientId.is_in(patient_ids.iter().copied()))
            .all(db)
            .await?
        {
            opt_outs_of
                .entry((model.organization_id, model.patient_id))
                .or_default()
                .push(to_opt_out(&model)?);
        }
        let mut patients_by_id = HashMap::new();
        for model in patients::Entity::find()
            .filter(patients::Column::Id.is_in(patient_ids.iter().copied()))
            .all(db)
            .await?
        {
            let outs = opt_outs_of
                .remove(&(model.organization_id, model.id))
                .unwrap_or_default();
            let patient = to_patient(model, outs)?;
            patients_by_id.insert(patient.id, patient);
        }
        let mut identities: HashMap<PatientId, Vec<ChannelIdentity>> = HashMap::new();
        for model in channel_identities::Entity::find()
            .filter(channel_identities::Column::PatientId.is_in(patient_ids))
            .order_by_asc(channel_identities::Column::Channel)
            .order_by_asc(channel_identities::Column::CreatedAt)
            .all(db)
            .await?
        {
            let identity = ChannelIdentity::try_from(model)?;
            identities
                .entry(identity.patient_id)
                .or_default()
                .push(identity);
        }

        Ok(wanted
            .iter()
            .map(|(org, id)| {
                let occurrence = belongs(org, id)?.clone();
                let same_org = |o: &OrganizationId| o == org;
                let schedule = occurrence
                    .schedule_id
                    .and_then(|s| schedules.get(&s))
                    .filter(|s| {
                        same_org(&s.organization_id) && s.patient_id == occurrence.patient_id
                    })
                    .cloned();
                let patient = patients_by_id
                    .get(&occurrence.patient_id)
                    .filter(|p| same_org(&p.organization_id))
                    .cloned();
                let identities = identities
                    .get(&occurrence.patient_id)
                    .map(|all| {
                        all.iter()
                            .filter(|i| same_org(&i.organization_id))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                Some(DispatchContext {
                    occurrence,
                    schedule,
                    patient,
                    identities,
                })
            })
            .collect())
    }

    /// Moves each reminder's occurrence from the state it was read in to `sent` and stores its
    /// message, auditing each move, all in one transaction; the answer is in the order of
    /// `items`. An occurrence that is no longer in that state (another worker sent it, the
    /// patient opted out, the campaign paused) does not move and gets no message. A message in a
    /// conversation that is not its item's organization's, or a key another organization used,
    /// fails the whole batch with nothing written (dispatch one at a time to find which).
    pub async fn send_many(&self, items: Vec<BatchSend>) -> Result<Vec<BatchSent>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.store.begin_write().await?;
        let conversation_ids: HashSet<_> = items
            .iter()
            .map(|i| i.message.conversation_id.as_uuid())
            .collect();
        let conversations: HashMap<uuid::Uuid, conversations::Model> =
            conversations::Entity::find()
                .filter(conversations::Column::Id.is_in(conversation_ids))
                .all(&txn)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
        for item in &items {
            if item.message.body.is_empty() {
                return Err(careloop_core::ParseError::new("body", "must not be empty").into());
            }
            if item.message.idempotency_key.is_none() {
                return Err(careloop_core::ParseError::new(
                    "idempotency_key",
                    "a reminder message needs one",
                )
                .into());
            }
            let owned = conversations
                .get(&item.message.conversation_id.as_uuid())
                .is_some_and(|c| c.organization_id == item.organization_id.as_uuid());
            if !owned {
                return Err(StoreError::NotFound {
                    entity: "conversation",
                });
            }
        }

        // 1. The occurrences, locked (PostgreSQL; SQLite's write transaction holds the whole
        //    database) in id order so that two workers never wait on each other in a circle.
        //    Each moves only from the state it was read in, and only in its own organization.
        let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.occurrence_id.as_uuid()).collect();
        let current: HashMap<uuid::Uuid, (uuid::Uuid, String)> = occ::Entity::find()
            .select_only()
            .columns([
                occ::Column::Id,
                occ::Column::OrganizationId,
                occ::Column::State,
            ])
            .filter(occ::Column::Id.is_in(ids))
            .order_by_asc(occ::Column::Id)
            .lock_exclusive()
            .into_tuple::<(uuid::Uuid, uuid::Uuid, String)>()
            .all(&txn)
            .await?
            .into_iter()
            .map(|(id, org, state)| (id, (org, state)))
            .collect();
        let movable = |item: &BatchSend| {
            current
                .get(&item.occurrence_id.as_uuid())
                .is_some_and(|(org, state)| {
                    *org == item.organization_id.as_uuid() && state == item.from.as_str()
                })
        };

        // 2. A key already used (by hand, or by an older version of this path) keeps its
        //    message, if it is the organization's; the others get a new message.
        let keys: Vec<String> = items
            .iter()
            .filter(|i| movable(i))
            .filter_map(|i| i.message.idempotency_key.clone())
            .collect();
        let existing: HashMap<String, (uuid::Uuid, uuid::Uuid)> = if keys.is_empty() {
            HashMap::new()
        } else {
            messages::Entity::find()
                .select_only()
                .columns([
                    messages::Column::IdempotencyKey,
                    messages::Column::Id,
                    messages::Column::OrganizationId,
                ])
                .filter(messages::Column::IdempotencyKey.is_in(keys))
                .into_tuple::<(Option<String>, uuid::Uuid, uuid::Uuid)>()
                .all(&txn)
                .await?
                .into_iter()
                .filter_map(|(key, id, org)| Some((key?, (id, org))))
                .collect()
        };
        let at = now();
        let mut rows = Vec::new();
        let mut audits = Vec::new();
        let mut touched = HashSet::new();
        let mut moved = Vec::new();
        let mut message_of = None::<CaseStatement>;
        let mut answers = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for item in items {
            // An occurrence listed twice moves once.
            if !movable(&item) || !seen.insert(item.occurrence_id) {
                answers.push(BatchSent {
                    message_id: None,
                    moved: false,
                });
                continue;
            }
            let conversation = conversations
                .get(&item.message.conversation_id.as_uuid())
                .ok_or(StoreError::NotFound {
                    entity: "conversation",
                })?;
            let key = item.message.idempotency_key.clone().unwrap_or_default();
            let message = match existing.get(&key) {
                Some((id, owner)) if *owner == item.organization_id.as_uuid() => *id,
                Some(_) => {
                    return Err(StoreError::Conflict {
                        what: "idempotency key used by another organization",
                    });
                }
                None => {
                    let id = MessageId::new();
                    rows.push(message_model(
                        id,
                        item.organization_id,
                        conversation,
                        item.message,
                        at,
                    ));
                    id.as_uuid()
                }
            };
            touched.insert(conversation.id);
            audits.push(item.audit);
            let when = occ::Column::Id.eq(item.occurrence_id.as_uuid());
            let then = Expr::value(Some(message));
            message_of = Some(match message_of {
                None => Expr::case(when, then),
                Some(case) => case.case(when, then),
            });
            moved.push(item.occurrence_id.as_uuid());
            answers.push(BatchSent {
                message_id: Some(MessageId::from_uuid(message)),
                moved: true,
            });
        }
        let Some(message_of) = message_of else {
            txn.commit().await?;
            return Ok(answers);
        };

        // 3. The new messages, one statement (the keys were checked under the row locks above:
        //    a conflict now is an error, not a duplicate).
        if !rows.is_empty() {
            messages::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }

        // 4. Each occurrence to `sent`, pointing at its message: one statement, each row once.
        occ::Entity::update_many()
            .col_expr(
                occ::Column::State,
                Expr::value(OccurrenceState::Sent.as_str()),
            )
            .col_expr(occ::Column::UpdatedAt, Expr::value(at))
            .col_expr(occ::Column::MessageId, message_of.into())
            .filter(occ::Column::Id.is_in(moved))
            .exec(&txn)
            .await?;
        conversations::Entity::update_many()
            .col_expr(conversations::Column::LastMessageAt, Expr::value(at))
            .filter(conversations::Column::Id.is_in(touched))
            .exec(&txn)
            .await?;
        crate::repos::audit::append_many_in(&txn, audits).await?;
        txn.commit().await?;
        Ok(answers)
    }
}

type ConversationKey = (OrganizationId, PatientId, ChannelKind);

/// Each patient's most recent conversation on the channel asked for, where one exists.
async fn latest_conversations_in<C: ConnectionTrait>(
    db: &C,
    wanted: &[ConversationKey],
) -> Result<HashMap<ConversationKey, Conversation>, StoreError> {
    let mut latest = HashMap::new();
    if wanted.is_empty() {
        return Ok(latest);
    }
    let wanted_set: HashSet<_> = wanted.iter().copied().collect();
    let patient_ids: HashSet<_> = wanted.iter().map(|(_, p, _)| p.as_uuid()).collect();
    for model in conversations::Entity::find()
        .filter(conversations::Column::PatientId.is_in(patient_ids))
        .order_by_desc(conversations::Column::LastMessageAt)
        .order_by_desc(conversations::Column::Id)
        .all(db)
        .await?
    {
        let conversation = Conversation::try_from(model)?;
        let key = (
            conversation.organization_id,
            conversation.patient_id,
            conversation.channel,
        );
        if wanted_set.contains(&key) {
            latest.entry(key).or_insert(conversation);
        }
    }
    Ok(latest)
}

impl crate::Messages<'_> {
    /// Each patient's most recent conversation on the channel asked for, where one exists (see
    /// [`Self::open_conversations`] for the others), by one query.
    pub async fn latest_conversations(
        &self,
        wanted: &[ConversationKey],
    ) -> Result<HashMap<ConversationKey, Conversation>, StoreError> {
        latest_conversations_in(self.store.connection(), wanted).await
    }

    /// Each patient's most recent conversation on the channel asked for, opening one for those
    /// who have none: `open_or_get_conversation` for many patients at once (one read when all
    /// have one; else one transaction that checks each patient belongs to the organization
    /// asked for, reads again and opens the missing ones with one statement). A patient who is
    /// not the organization's fails the lot with nothing opened.
    pub async fn open_conversations(
        &self,
        wanted: &[ConversationKey],
    ) -> Result<HashMap<ConversationKey, Conversation>, StoreError> {
        let mut found = self.latest_conversations(wanted).await?;
        if wanted.iter().all(|k| found.contains_key(k)) {
            return Ok(found);
        }
        let txn = self.store.begin_write().await?;
        let missing: HashSet<ConversationKey> = wanted
            .iter()
            .filter(|k| !found.contains_key(k))
            .copied()
            .collect();
        let owners: HashMap<uuid::Uuid, uuid::Uuid> = patients::Entity::find()
            .select_only()
            .columns([patients::Column::Id, patients::Column::OrganizationId])
            .filter(patients::Column::Id.is_in(missing.iter().map(|(_, p, _)| p.as_uuid())))
            .into_tuple::<(uuid::Uuid, uuid::Uuid)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        for (org, patient, _) in &missing {
            if owners.get(&patient.as_uuid()) != Some(&org.as_uuid()) {
                return Err(StoreError::NotFound { entity: "patient" });
            }
        }
        // Read again under the write transaction: another worker may have opened some.
        let missing: Vec<ConversationKey> = missing.into_iter().collect();
        let opened_meanwhile = latest_conversations_in(&txn, &missing).await?;
        let at = now();
        let mut models = Vec::new();
        for key in missing {
            if let Some(c) = opened_meanwhile.get(&key) {
                found.insert(key, c.clone());
                continue;
            }
            let (org, patient, channel) = key;
            let model = conversations::Model {
                id: ConversationId::new().as_uuid(),
                organization_id: org.as_uuid(),
                patient_id: patient.as_uuid(),
                channel: channel.as_str().to_owned(),
                started_at: at,
                last_message_at: at,
            };
            found.insert(key, Conversation::try_from(model.clone())?);
            models.push(conversations::ActiveModel::from(model));
        }
        if !models.is_empty() {
            conversations::Entity::insert_many(models)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(found)
    }
}
