//! Campaigns: a series of approved templates sent to an audience of patients, each step at an
//! absolute time or relative to a patient date, in each patient's language and own time.
//!
//! A campaign is written as a [`CampaignFile`] and checked once ([`CampaignService::create`]:
//! every problem named by its field, nothing stored unless all is well). Its life cycle is
//! `draft → running ⇄ paused`, `→ cancelled` from any of them, and `running → completed`.
//!
//! **Occurrences.** Starting a campaign materializes one reminder occurrence per patient of the
//! audience and step, with the idempotency key `campaign:<id>:step<n>:patient:<id>`, a page of
//! patients at a time (a fixed number of queries per page, rows inserted in batches), so it suits
//! 100,000 patients. A step that cannot reach a patient is stored `skipped` with its reason
//! (`no_consent`, `opted_out`, `no_channel`, `no_date`, `no_template`, `past`) so progress shows
//! it; [`CampaignService::preview`] computes the same plan without writing. The pass is
//! idempotent: running it again (a `start` that died half way, a resume, a late enrolment)
//! inserts what is missing, plans again a skipped step that can now be sent, moves a planned
//! step whose patient date changed, and never touches one being sent or sent. The due sweeper and
//! the reminder worker send campaign occurrences like doses ([`dispatch`]).
//!
//! **Pause** holds back every planned occurrence: each becomes `cancelled` with reason `paused`,
//! so the sweeper has nothing to claim and no query elsewhere needs to know about pauses; one in
//! flight is held back by the dispatcher, which reads the campaign's state before sending.
//! **Resume** plans the held ones again (a step whose time passed during the pause is sent
//! late, from the resume on, outside quiet hours), then runs the pass for patients who joined
//! meanwhile. **Cancel** cancels what is planned or held. Messages already in the outbox are
//! not recalled.
//!
//! **Throttling.** The outbox already keeps each channel under its provider's limits (Telegram:
//! 30 messages a second per bot, one a second per chat), but it sends in order, so 100,000
//! messages queued at once would hold replies and medication reminders back for an hour. The
//! fan-out is therefore paced when it is planned ([`Pacer`]): at most [`Pacing`] messages per
//! channel fall in any second (Telegram 20/s by default), so the campaign trickles into the
//! outbox below the channel's limit, a pause stops everything not yet due, and progress moves
//! while it runs. `slot_at` keeps each step's own time, so a later pass knows an occurrence that
//! was only paced from one whose date changed.
//!
//! **Patients joining and leaving.** [`enrol_patient`] runs the pass for one patient in every
//! running campaign. The reminder worker calls it for every patient who changed, whoever changed
//! them ([`crate::follow`]: created, a channel linked, consent given again, a date, tag or
//! condition set), within seconds; `careloop patient set-date` calls it at once. [`remove_patient`] cancels the patient's planned and held campaign occurrences (call
//! it on opt-out; the STOP command already cancels every planned occurrence of the patient, and
//! the dispatcher removes a patient whose consent it finds withdrawn from every remaining step).
//! A patient no longer in the audience has their planned steps cancelled (`left_audience`).
//!
//! **Completion.** A campaign whose steps are all absolute completes once nothing is planned,
//! dispatching or held and every step's time has passed in every zone (checked by
//! [`CampaignService::progress`] and after each dispatch). A campaign with relative steps keeps
//! running, since patient dates may be set at any time, until it is cancelled.

pub mod definition;
pub(crate) mod dispatch;
pub mod plan;

use std::collections::{BTreeMap, HashMap};

use careloop_core::{
    CampaignId, CampaignState, OccurrenceState, OrganizationId, PatientId, StaffUserId,
};
use careloop_store::{
    Actor, AudienceMember, Campaign, CampaignOccurrenceChange, NewAuditEntry, NewCampaign,
    NewCampaignOccurrence, PAUSED, ReminderOccurrence, Store, StoreError,
};
use chrono::{DateTime, Utc};

pub use definition::{
    CampaignDefinition, CampaignFile, FieldError, Format, InvalidCampaign, parse_document,
};
pub use plan::{Delivery, Pacer, Pacing, SkipReason, StepPlan, Templates};

use plan::{channel_for, in_audience, occurrence_key, plan_step, quiet_rule};

/// Patients read per page.
const PAGE: u64 = 500;
/// Occurrences written per insert (14 values each, well under every backend's bound).
const INSERT_BATCH: usize = 400;
/// `reason` of occurrences cancelled because the campaign was.
pub const CAMPAIGN_CANCELLED: &str = "campaign_cancelled";
/// `reason` of occurrences cancelled because the patient left the audience.
pub const LEFT_AUDIENCE: &str = "left_audience";
/// `reason` of occurrences cancelled because the patient opted out.
pub const OPTED_OUT: &str = "opted_out";

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Invalid(#[from] InvalidCampaign),
    #[error("no such campaign")]
    NotFound,
    #[error("the campaign is {state}; it cannot be {action}")]
    State {
        state: CampaignState,
        action: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one materialization pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Materialized {
    /// Patients of the audience looked at.
    pub patients: u64,
    /// Steps planned for the first time.
    pub planned: u64,
    /// Steps stored as skipped (with their reason).
    pub skipped: u64,
    /// Skipped or cancelled steps planned again, or planned steps moved (a date changed).
    pub replanned: u64,
    /// Planned steps cancelled or skipped (patient left the audience, lost consent …).
    pub withdrawn: u64,
}

impl std::ops::AddAssign for Materialized {
    fn add_assign(&mut self, o: Self) {
        self.patients += o.patients;
        self.planned += o.planned;
        self.skipped += o.skipped;
        self.replanned += o.replanned;
        self.withdrawn += o.withdrawn;
    }
}

/// One patient and step in a preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRow {
    pub patient_id: PatientId,
    pub step: usize,
    pub plan: StepPlan,
    /// When it would be sent, pacing included (`None` when skipped).
    pub due_at: Option<DateTime<Utc>>,
}

/// Per step: how many patients it would reach, and why it would skip the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepSummary {
    pub send: u64,
    pub delayed_by_quiet_hours: u64,
    /// By [`SkipReason::code`].
    pub skipped: BTreeMap<&'static str, u64>,
}

/// Who gets what, when and in which language, before the campaign starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// Patients in the audience.
    pub patients: u64,
    pub rows: Vec<PreviewRow>,
    pub steps: Vec<StepSummary>,
}

/// One step's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepProgress {
    pub planned: u64,
    pub dispatching: u64,
    /// Handed to the outbox (see `messages` for what the outbox did with them).
    pub sent: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Held by a pause (cancelled with reason `paused`; planned again on resume).
    pub paused: u64,
    pub skipped: u64,
    /// Skipped, cancelled and failed occurrences by reason.
    pub reasons: BTreeMap<String, u64>,
    /// The messages of the sent ones, by outbox status (`queued`, `sent`, `delivered`, `failed`).
    pub messages: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub state: CampaignState,
    pub steps: Vec<StepProgress>,
}

/// The campaign operations of one organization, done by `actor` (audited).
#[derive(Debug, Clone, Copy)]
pub struct CampaignService<'a> {
    pub store: &'a Store,
    pub org: OrganizationId,
    pub actor: Actor,
    pub pacing: Pacing,
}

impl<'a> CampaignService<'a> {
    pub fn new(store: &'a Store, org: OrganizationId, actor: Actor) -> Self {
        CampaignService {
            store,
            org,
            actor,
            pacing: Pacing::default(),
        }
    }

    /// Checks a campaign document completely (fields, known conditions, an approved template for
    /// each step in at least one language) without storing anything.
    pub async fn validate(&self, file: &CampaignFile) -> Result<CampaignDefinition, CampaignError> {
        let parsed = file.parse();
        let mut errors = match &parsed {
            Ok(_) => Vec::new(),
            Err(invalid) => invalid.errors.clone(),
        };
        // Checked on the raw text too, so one round reports every problem.
        for (i, code) in file.audience.conditions.iter().enumerate() {
            let Ok(code) = code.parse::<careloop_core::Slug>() else {
                continue;
            };
            if self.store.conditions().find_by_code(&code).await?.is_none() {
                errors.push(FieldError::new(
                    format!("audience.conditions[{i}]"),
                    "is not a known condition",
                ));
            }
        }
        let templates = self.templates().await?;
        for (i, step) in file.steps.iter().enumerate() {
            let Ok(key) = step.template.parse::<careloop_core::Slug>() else {
                continue;
            };
            if !templates.has_key(&key) {
                errors.push(FieldError::new(
                    format!("steps[{i}].template"),
                    "has no approved template in any language",
                ));
            }
        }
        match parsed {
            Ok(def) if errors.is_empty() => Ok(def),
            _ => Err(InvalidCampaign { errors }.into()),
        }
    }

    /// Validates the document and stores the campaign as a draft (one insert: nothing is stored
    /// when anything is wrong).
    pub async fn create(
        &self,
        created_by: StaffUserId,
        file: &CampaignFile,
    ) -> Result<Campaign, CampaignError> {
        let def = self.validate(file).await?;
        let stored = def.to_file();
        let campaign = self
            .store
            .campaigns()
            .create(
                self.org,
                NewCampaign {
                    name: def.name,
                    audience: serde_json::to_value(&stored.audience)
                        .map_err(|e| InvalidCampaign::one("audience", e.to_string()))?,
                    steps: serde_json::to_value(&stored.steps)
                        .map_err(|e| InvalidCampaign::one("steps", e.to_string()))?,
                    created_by,
                },
            )
            .await?;
        self.audit(campaign.id, "campaign.created", serde_json::json!({}))
            .await?;
        Ok(campaign)
    }

    /// The campaign and its definition.
    pub async fn load(
        &self,
        id: CampaignId,
    ) -> Result<(Campaign, CampaignDefinition), CampaignError> {
        let campaign = self
            .store
            .campaigns()
            .get(self.org, id)
            .await?
            .ok_or(CampaignError::NotFound)?;
        let def = CampaignDefinition::from_stored(&campaign)?;
        Ok((campaign, def))
    }

    /// What starting the campaign at `now` would do for every patient of the audience; writes
    /// nothing.
    pub async fn preview(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<Preview, CampaignError> {
        let (_, def) = self.load(id).await?;
        let templates = self.templates().await?;
        let mut pacer = Pacer::new(self.pacing);
        let mut preview = Preview {
            patients: 0,
            rows: Vec::new(),
            steps: vec![StepSummary::default(); def.steps.len()],
        };
        let mut after = None;
        loop {
            let page = self.store.audience().page(self.org, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.patient.id);
            for member in page.iter().filter(|m| in_audience(&def.audience, m)) {
                preview.patients += 1;
                for (i, step) in def.steps.iter().enumerate() {
                    let plan = plan_step(step, &def.audience, member, &templates, now);
                    let summary = &mut preview.steps[i];
                    let due_at = match &plan {
                        StepPlan::Send(d) => {
                            summary.send += 1;
                            summary.delayed_by_quiet_hours += u64::from(d.delayed_by_quiet_hours);
                            Some(pacer.place(d.channel, d.slot_at, quiet_rule(member)))
                        }
                        StepPlan::Skip(why) => {
                            *summary.skipped.entry(why.code()).or_default() += 1;
                            None
                        }
                    };
                    preview.rows.push(PreviewRow {
                        patient_id: member.patient.id,
                        step: i,
                        plan,
                        due_at,
                    });
                }
            }
        }
        Ok(preview)
    }

    /// Draft → running, and materializes every patient's steps. Starting a running campaign
    /// again runs the (idempotent) pass again: a start that died half way is finished this way.
    pub async fn start(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<Materialized, CampaignError> {
        let (campaign, def) = self.load(id).await?;
        match campaign.state {
            CampaignState::Draft => {
                self.transition(&campaign, CampaignState::Running, "started")
                    .await?
            }
            CampaignState::Running => {}
            state => {
                return Err(CampaignError::State {
                    state,
                    action: "started",
                });
            }
        }
        let mut pacer = Pacer::new(self.pacing);
        let done = self
            .materialize_all(&campaign, &def, now, &mut pacer)
            .await?;
        self.audit(id, "campaign.started", report_json(&done))
            .await?;
        tracing::info!(organization_id = %self.org, campaign_id = %id, patients = done.patients, planned = done.planned, skipped = done.skipped, "campaign started");
        complete_if_done(self.store, self.org, &campaign.id, &def, now).await?;
        Ok(done)
    }

    /// Running → paused; holds back every planned occurrence. Returns how many were held.
    pub async fn pause(&self, id: CampaignId) -> Result<u64, CampaignError> {
        let (campaign, _) = self.load(id).await?;
        if campaign.state != CampaignState::Running {
            return Err(CampaignError::State {
                state: campaign.state,
                action: "paused",
            });
        }
        self.transition(&campaign, CampaignState::Paused, "paused")
            .await?;
        let held = self.store.campaign_occurrences().hold(self.org, id).await?;
        self.audit(id, "campaign.paused", serde_json::json!({ "held": held }))
            .await?;
        tracing::info!(organization_id = %self.org, campaign_id = %id, held, "campaign paused");
        Ok(held)
    }

    /// Paused → running; plans the held occurrences again (paced from `now` when their time
    /// passed meanwhile) and materializes patients who joined during the pause. Returns how many
    /// held occurrences were released, and what the pass did.
    pub async fn resume(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<(u64, Materialized), CampaignError> {
        let (campaign, def) = self.load(id).await?;
        if campaign.state != CampaignState::Paused {
            return Err(CampaignError::State {
                state: campaign.state,
                action: "resumed",
            });
        }
        self.transition(&campaign, CampaignState::Running, "resumed")
            .await?;
        let mut pacer = Pacer::new(self.pacing);
        let released = self.release_held(&campaign, &def, now, &mut pacer).await?;
        let done = self
            .materialize_all(&campaign, &def, now, &mut pacer)
            .await?;
        let mut details = report_json(&done);
        if let Some(map) = details.as_object_mut() {
            map.insert("released".into(), released.into());
        }
        self.audit(id, "campaign.resumed", details).await?;
        tracing::info!(organization_id = %self.org, campaign_id = %id, released, planned = done.planned, "campaign resumed");
        Ok((released, done))
    }

    /// Draft, running or paused → cancelled; cancels every planned or held occurrence. Returns
    /// how many.
    pub async fn cancel(&self, id: CampaignId) -> Result<u64, CampaignError> {
        let (campaign, _) = self.load(id).await?;
        if !matches!(
            campaign.state,
            CampaignState::Draft | CampaignState::Running | CampaignState::Paused
        ) {
            return Err(CampaignError::State {
                state: campaign.state,
                action: "cancelled",
            });
        }
        self.transition(&campaign, CampaignState::Cancelled, "cancelled")
            .await?;
        let cancelled = self
            .store
            .campaign_occurrences()
            .cancel_open(self.org, id, CAMPAIGN_CANCELLED)
            .await?;
        self.audit(
            id,
            "campaign.cancelled",
            serde_json::json!({ "cancelled": cancelled }),
        )
        .await?;
        tracing::info!(organization_id = %self.org, campaign_id = %id, cancelled, "campaign cancelled");
        Ok(cancelled)
    }

    /// Counts by step and state (and the outbox status of what was sent); completes the campaign
    /// first if it is done.
    pub async fn progress(
        &self,
        id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<Progress, CampaignError> {
        let (campaign, def) = self.load(id).await?;
        let completed = campaign.state == CampaignState::Running
            && complete_if_done(self.store, self.org, &id, &def, now).await?;
        let state = if completed {
            CampaignState::Completed
        } else {
            campaign.state
        };
        let mut steps = vec![StepProgress::default(); def.steps.len()];
        let occurrences = self.store.campaign_occurrences();
        for c in occurrences.counts(self.org, id).await? {
            let Some(step) = steps.get_mut(c.step as usize) else {
                continue;
            };
            let held = c.state == OccurrenceState::Cancelled && c.reason.as_deref() == Some(PAUSED);
            let slot = match c.state {
                _ if held => &mut step.paused,
                OccurrenceState::Planned => &mut step.planned,
                OccurrenceState::Dispatching => &mut step.dispatching,
                OccurrenceState::Sent => &mut step.sent,
                OccurrenceState::Failed => &mut step.failed,
                OccurrenceState::Cancelled => &mut step.cancelled,
                OccurrenceState::Skipped => &mut step.skipped,
            };
            *slot += c.count;
            if let Some(reason) = c.reason.filter(|_| !held) {
                *step.reasons.entry(reason).or_default() += c.count;
            }
        }
        for m in occurrences.message_counts(self.org, id).await? {
            if let Some(step) = steps.get_mut(m.step as usize) {
                *step.messages.entry(m.status.as_str()).or_default() += m.count;
            }
        }
        Ok(Progress { state, steps })
    }

    async fn templates(&self) -> Result<Templates, StoreError> {
        Ok(Templates::new(
            self.store.content().list_approved(self.org).await?,
        ))
    }

    async fn transition(
        &self,
        campaign: &Campaign,
        to: CampaignState,
        action: &'static str,
    ) -> Result<(), CampaignError> {
        let moved = self
            .store
            .campaigns()
            .transition_state(self.org, campaign.id, campaign.state, to)
            .await?;
        if moved {
            return Ok(());
        }
        // Someone else moved it first: report the state it is in now.
        let (now, _) = self.load(campaign.id).await?;
        Err(CampaignError::State {
            state: now.state,
            action,
        })
    }

    async fn audit(
        &self,
        id: CampaignId,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store
            .audit()
            .append(NewAuditEntry {
                organization_id: Some(self.org),
                actor: self.actor,
                action: action.to_owned(),
                entity_type: "campaign".into(),
                entity_id: id.to_string(),
                details,
            })
            .await
            .map(|_| ())
    }

    async fn materialize_all(
        &self,
        campaign: &Campaign,
        def: &CampaignDefinition,
        now: DateTime<Utc>,
        pacer: &mut Pacer,
    ) -> Result<Materialized, CampaignError> {
        let templates = self.templates().await?;
        let mut done = Materialized::default();
        let mut after = None;
        loop {
            let page = self.store.audience().page(self.org, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.patient.id);
            done += self
                .materialize(campaign.id, def, &templates, &page, now, pacer)
                .await?;
        }
        Ok(done)
    }

    /// The pass for one page of patients (see the module docs).
    async fn materialize(
        &self,
        campaign: CampaignId,
        def: &CampaignDefinition,
        templates: &Templates,
        members: &[AudienceMember],
        now: DateTime<Utc>,
        pacer: &mut Pacer,
    ) -> Result<Materialized, CampaignError> {
        let occurrences = self.store.campaign_occurrences();
        let ids: Vec<PatientId> = members.iter().map(|m| m.patient.id).collect();
        let existing: HashMap<String, ReminderOccurrence> = occurrences
            .for_patients(self.org, campaign, &ids)
            .await?
            .into_iter()
            .map(|o| (o.idempotency_key.clone(), o))
            .collect();
        let mut done = Materialized::default();
        let mut new_rows = Vec::new();
        let mut changes: Vec<(&ReminderOccurrence, CampaignOccurrenceChange)> = Vec::new();

        for member in members {
            let included = in_audience(&def.audience, member);
            done.patients += u64::from(included);
            for (i, step) in def.steps.iter().enumerate() {
                let key = occurrence_key(campaign, i, member.patient.id);
                let row = existing.get(&key);
                if !included {
                    if let Some(row) = row.filter(|r| r.state == OccurrenceState::Planned) {
                        changes.push((
                            row,
                            withdrawn(row, OccurrenceState::Cancelled, LEFT_AUDIENCE),
                        ));
                    }
                    continue;
                }
                let plan = plan_step(step, &def.audience, member, templates, now);
                match (plan, row) {
                    (StepPlan::Send(d), None) => {
                        done.planned += 1;
                        new_rows.push(NewCampaignOccurrence {
                            patient_id: member.patient.id,
                            step: u32::try_from(i).unwrap_or(u32::MAX),
                            state: OccurrenceState::Planned,
                            due_at: pacer.place(d.channel, d.slot_at, quiet_rule(member)),
                            slot_at: Some(d.slot_at),
                            reason: None,
                            idempotency_key: key,
                        });
                    }
                    (StepPlan::Skip(why), None) => {
                        done.skipped += 1;
                        new_rows.push(NewCampaignOccurrence {
                            patient_id: member.patient.id,
                            step: u32::try_from(i).unwrap_or(u32::MAX),
                            state: OccurrenceState::Skipped,
                            due_at: now,
                            slot_at: None,
                            reason: Some(why.code().to_owned()),
                            idempotency_key: key,
                        });
                    }
                    (StepPlan::Send(d), Some(row)) => {
                        let again = match row.state {
                            OccurrenceState::Planned => row.slot_at != Some(d.slot_at),
                            OccurrenceState::Skipped => true,
                            OccurrenceState::Cancelled => row.reason.as_deref() != Some(PAUSED),
                            _ => false,
                        };
                        if again {
                            let due_at = pacer.place(d.channel, d.slot_at, quiet_rule(member));
                            changes.push((
                                row,
                                CampaignOccurrenceChange {
                                    state: OccurrenceState::Planned,
                                    due_at,
                                    slot_at: Some(d.slot_at),
                                    reason: None,
                                },
                            ));
                        }
                    }
                    (StepPlan::Skip(why), Some(row)) => match row.state {
                        // Already planned and only late now (a resume): it still goes.
                        OccurrenceState::Planned if why != SkipReason::Past => {
                            changes
                                .push((row, withdrawn(row, OccurrenceState::Skipped, why.code())));
                        }
                        OccurrenceState::Skipped if row.reason.as_deref() != Some(why.code()) => {
                            changes
                                .push((row, withdrawn(row, OccurrenceState::Skipped, why.code())));
                        }
                        _ => {}
                    },
                }
            }
        }

        for batch in new_rows.chunks(INSERT_BATCH) {
            let written = occurrences.insert_many(self.org, campaign, batch).await?;
            // A row another pass wrote first is not ours to count.
            let lost = batch.len() as u64 - written.min(batch.len() as u64);
            if lost > 0 {
                tracing::info!(campaign_id = %campaign, rows = lost, "campaign occurrences already stored");
            }
        }
        for (row, change) in changes {
            let moved = occurrences
                .update(self.org, row.id, row.state, now, &change)
                .await?;
            if !moved {
                continue;
            }
            if change.state == OccurrenceState::Planned {
                done.replanned += 1;
            } else if row.state == OccurrenceState::Planned {
                done.withdrawn += 1;
            }
        }
        Ok(done)
    }

    /// Plans the occurrences a pause held back again: each at its own time, or from `now` if
    /// that passed during the pause, outside the patient's quiet hours, paced.
    async fn release_held(
        &self,
        campaign: &Campaign,
        def: &CampaignDefinition,
        now: DateTime<Utc>,
        pacer: &mut Pacer,
    ) -> Result<u64, CampaignError> {
        let occurrences = self.store.campaign_occurrences();
        let fallback = def.audience.channels.first().copied();
        let mut released = 0;
        let mut after = None;
        loop {
            let held = occurrences
                .held_page(self.org, campaign.id, after, PAGE)
                .await?;
            let Some(last) = held.last() else { break };
            after = Some((last.due_at, last.id));
            let mut ids: Vec<PatientId> = held.iter().map(|o| o.patient_id).collect();
            ids.sort();
            ids.dedup();
            let members: HashMap<PatientId, AudienceMember> = self
                .store
                .audience()
                .members(self.org, &ids)
                .await?
                .into_iter()
                .map(|m| (m.patient.id, m))
                .collect();
            for occurrence in &held {
                let Some(member) = members.get(&occurrence.patient_id) else {
                    continue;
                };
                let wanted = occurrence.slot_at.unwrap_or(occurrence.due_at).max(now);
                let quiet = quiet_rule(member);
                let wanted = quiet.and_then(|q| q.apply(wanted)).unwrap_or(wanted);
                let channel = channel_for(&def.audience, member).ok().or(fallback);
                let due_at = match channel {
                    Some(channel) => pacer.place(channel, wanted, quiet),
                    None => wanted,
                };
                if occurrences.release(self.org, occurrence.id, due_at).await? {
                    released += 1;
                }
            }
        }
        Ok(released)
    }
}

fn withdrawn(
    row: &ReminderOccurrence,
    state: OccurrenceState,
    reason: &str,
) -> CampaignOccurrenceChange {
    CampaignOccurrenceChange {
        state,
        due_at: row.due_at,
        slot_at: row.slot_at,
        reason: Some(reason.to_owned()),
    }
}

fn report_json(done: &Materialized) -> serde_json::Value {
    serde_json::json!({
        "patients": done.patients,
        "planned": done.planned,
        "skipped": done.skipped,
        "replanned": done.replanned,
        "withdrawn": done.withdrawn,
    })
}

/// Completes a running campaign that has nothing left to send and can gain nothing more (see
/// the module docs); `true` if it did now.
pub(crate) async fn complete_if_done(
    store: &Store,
    org: OrganizationId,
    id: &CampaignId,
    def: &CampaignDefinition,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(closes_at) = def.closes_at() else {
        return Ok(false);
    };
    if now < closes_at || store.campaign_occurrences().has_open(org, *id).await? {
        return Ok(false);
    }
    let completed = store
        .campaigns()
        .transition_state(org, *id, CampaignState::Running, CampaignState::Completed)
        .await?;
    if completed {
        store
            .audit()
            .append(NewAuditEntry {
                organization_id: Some(org),
                actor: Actor::System,
                action: "campaign.completed".into(),
                entity_type: "campaign".into(),
                entity_id: id.to_string(),
                details: serde_json::json!({}),
            })
            .await?;
        tracing::info!(organization_id = %org, campaign_id = %id, "campaign completed");
    }
    Ok(completed)
}

/// Schedules the patient's steps in every running campaign of the organization (a new patient,
/// a date set, a channel linked, consent given again); paused campaigns catch up on resume.
/// Returns what the passes did together.
pub async fn enrol_patient(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    now: DateTime<Utc>,
) -> Result<Materialized, CampaignError> {
    let running = store
        .campaigns()
        .list_in_states(org, &[CampaignState::Running])
        .await?;
    let mut done = Materialized::default();
    if running.is_empty() {
        return Ok(done);
    }
    let members = store.audience().members(org, &[patient]).await?;
    if members.is_empty() {
        return Err(StoreError::NotFound { entity: "patient" }.into());
    }
    let service = CampaignService::new(store, org, Actor::System);
    let templates = service.templates().await?;
    for campaign in running {
        let def = match CampaignDefinition::from_stored(&campaign) {
            Ok(def) => def,
            Err(e) => {
                tracing::error!(campaign_id = %campaign.id, error = %e, "stored campaign does not parse");
                continue;
            }
        };
        let mut pacer = Pacer::new(service.pacing);
        done += service
            .materialize(campaign.id, &def, &templates, &members, now, &mut pacer)
            .await?;
    }
    tracing::info!(organization_id = %org, patient_id = %patient, planned = done.planned, replanned = done.replanned, "patient enrolled in campaigns");
    Ok(done)
}

/// Removes the patient from every step of every campaign still to come (planned or held by a
/// pause), and from their medication doses still planned: call it when the patient opts out.
/// Returns how many occurrences were cancelled.
pub async fn remove_patient(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
) -> Result<u64, StoreError> {
    let cancelled = store
        .reminder_occurrences()
        .cancel_planned_for_patient(org, patient)
        .await?;
    if cancelled > 0 {
        tracing::info!(organization_id = %org, patient_id = %patient, cancelled, "patient removed from campaigns");
    }
    Ok(cancelled)
}
