//! Turning a due occurrence into a reminder message in the outbox.
//!
//! A dose is rendered from the organization's approved `reminder` template in the patient's
//! language (`{medicine}`, `{dose}` as the care team wrote them; never generated), with Taken /
//! Skip / Snooze buttons (Telegram, web chat; email and plain text take the reply keywords the
//! template names), and stored as a `queued` outbound message whose idempotency key is derived
//! from the occurrence's own key: however often a job is delivered, or however many workers take
//! it at once, one message exists for one dose, and the outbox sends it once.
//!
//! A queue job carries the reminders that came due together ([`RemindersDue`]); the worker
//! dispatches them together ([`dispatch_job`], [`dispatch_batch`]): one read per table and one
//! write transaction for the lot instead of a dozen round trips and a commit per dose. Each dose
//! keeps its own checks and its own answer.

use careloop_channels::{Button, DeliveryMeta, Purpose};
use std::collections::HashMap;

use careloop_core::{
    ChannelKind, ConsentState, Language, OccurrenceState, OrganizationId, PatientId, ReadingLevel,
    ReminderOccurrenceId,
};
use careloop_queue::{ReminderDue, RemindersDue};
use careloop_store::{
    Actor, ApprovedContent, BatchSend, DispatchContext, NewAuditEntry, ReminderOccurrence, Store,
    StoreError,
};

/// What the handler did with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// The reminder message is in the outbox (now or by an earlier delivery of the same job
    /// that died before finishing).
    Queued,
    /// Already past dispatching (a redelivered or duplicate job): nothing to do.
    AlreadyHandled,
    /// The occurrence no longer exists: nothing to do.
    Gone,
    /// Not sent, on purpose: the patient withdrew consent, or the schedule was removed.
    Cancelled(&'static str),
    /// Cannot be sent: no reachable channel, no approved template in the patient's language.
    Failed(String),
}

/// Button labels in each supported language (interface text, not clinical content).
fn buttons(language: Language, occurrence: &str) -> Vec<Button> {
    let (taken, skip, snooze) = match language {
        Language::Spanish => ("Tomado", "Omitir", "Recordar en 30 min"),
        Language::French => ("Pris", "Sauter", "Rappel dans 30 min"),
        Language::German => ("Genommen", "Auslassen", "In 30 Min. erinnern"),
        Language::Portuguese => ("Tomei", "Pular", "Lembrar em 30 min"),
        Language::Arabic => ("أخذت", "تخطي", "ذكرني بعد 30 دقيقة"),
        Language::English => ("Taken", "Skip", "Snooze 30 min"),
    };
    [(taken, "taken"), (skip, "skip"), (snooze, "snooze")]
        .into_iter()
        .map(|(label, action)| Button {
            label: label.to_owned(),
            action: format!("reminder:{occurrence}:{action}"),
        })
        .collect()
}

/// Dispatches one due reminder (see the module docs): [`dispatch_batch`] of one.
pub async fn dispatch(store: &Store, job: &ReminderDue) -> Result<Dispatch, StoreError> {
    dispatch_batch(store, std::slice::from_ref(job))
        .await?
        .pop()
        .unwrap_or(Ok(Dispatch::Gone))
}

/// Why a reminder job must be tried again.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of the job's {total} reminders could not be dispatched; first error: {first}")]
pub struct JobError {
    pub failed: usize,
    pub total: usize,
    pub first: StoreError,
}

/// Handles one queue job: its reminders by [`dispatch_batch`]; when the batch as a whole fails
/// (a read, or its one transaction: nothing of it was stored), each reminder alone, so that one
/// bad dose does not hold back its neighbours. `Err` when any reminder failed: the job is tried
/// again, and the reminders that went out meanwhile are no-ops the second time (their state
/// moved on).
pub async fn dispatch_job(store: &Store, job: &RemindersDue) -> Result<Vec<Dispatch>, JobError> {
    let answers = match dispatch_batch(store, &job.reminders).await {
        Ok(answers) => answers,
        Err(e) => {
            tracing::warn!(error = %e, reminders = job.reminders.len(), "reminder batch failed; dispatching its reminders one at a time");
            let mut answers = Vec::with_capacity(job.reminders.len());
            for reminder in &job.reminders {
                answers.push(dispatch(store, reminder).await);
            }
            answers
        }
    };
    let total = answers.len();
    let mut done = Vec::with_capacity(total);
    let mut failed = Vec::new();
    for answer in answers {
        match answer {
            Ok(d) => done.push(d),
            Err(e) => failed.push(e),
        }
    }
    let count = failed.len();
    match failed.into_iter().next() {
        None => Ok(done),
        Some(first) => Err(JobError {
            failed: count,
            total,
            first,
        }),
    }
}

/// A dose that passed every check and is ready to queue.
struct Ready<'a> {
    index: usize,
    job: &'a ReminderDue,
    from: OccurrenceState,
    occurrence: ReminderOccurrence,
    patient: PatientId,
    channel: ChannelKind,
    language: Language,
    template: ApprovedContent,
    body: String,
}

/// Handles due reminder jobs together: their occurrences, schedules, patients and identities are
/// read by one query each, their templates once per organization and language, and their
/// messages, `sent` states and audit entries are written in one transaction. The answer has one
/// entry per job, in order (a job repeated in the batch gets the same answer as its first).
///
/// `Err`: the batch's reads or its write failed, and nothing of the write was stored (dispatch
/// the jobs one at a time to find out which, if any, is at fault). An entry's own `Err` is that
/// job's alone: a campaign step or a settlement that failed.
pub async fn dispatch_batch(
    store: &Store,
    jobs: &[ReminderDue],
) -> Result<Vec<Result<Dispatch, StoreError>>, StoreError> {
    let wanted: Vec<_> = jobs
        .iter()
        .map(|j| (j.organization_id, j.occurrence_id))
        .collect();
    let contexts = store
        .reminder_occurrences()
        .dispatch_contexts(&wanted)
        .await?;
    let mut answers: Vec<Option<Result<Dispatch, StoreError>>> =
        jobs.iter().map(|_| None).collect();
    let mut first_of: HashMap<(OrganizationId, ReminderOccurrenceId), usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut templates: HashMap<(OrganizationId, Language), Option<ApprovedContent>> =
        HashMap::new();
    let mut ready = Vec::new();
    for (index, (job, context)) in jobs.iter().zip(contexts).enumerate() {
        if let Some(&first) = first_of.get(&(job.organization_id, job.occurrence_id)) {
            repeats.push((index, first));
            continue;
        }
        first_of.insert((job.organization_id, job.occurrence_id), index);
        match check(store, job, context, &mut templates).await {
            Ok(Checked::Done(answer)) => answers[index] = Some(Ok(answer)),
            Ok(Checked::Ready(r)) => ready.push(Ready { index, ..*r }),
            Err(e) => answers[index] = Some(Err(e)),
        }
    }
    if !ready.is_empty() {
        for (index, answer) in queue_ready(store, ready).await? {
            answers[index] = Some(Ok(answer));
        }
    }
    for (index, first) in repeats {
        answers[index] = Some(match &answers[first] {
            Some(Ok(answer)) => Ok(answer.clone()),
            _ => Ok(Dispatch::AlreadyHandled),
        });
    }
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or(Ok(Dispatch::Gone)))
        .collect())
}

enum Checked<'a> {
    Done(Dispatch),
    Ready(Box<Ready<'a>>),
}

/// Everything a dose needs before its message can be queued; the doses that must not or cannot
/// be sent are settled here, each in its own transaction.
async fn check<'a>(
    store: &Store,
    job: &'a ReminderDue,
    context: Option<DispatchContext>,
    templates: &mut HashMap<(OrganizationId, Language), Option<ApprovedContent>>,
) -> Result<Checked<'a>, StoreError> {
    let Some(context) = context else {
        return Ok(Checked::Done(Dispatch::Gone));
    };
    let occurrence = context.occurrence;
    let from = occurrence.state;
    if !matches!(
        from,
        OccurrenceState::Planned | OccurrenceState::Dispatching
    ) {
        return Ok(Checked::Done(Dispatch::AlreadyHandled));
    }
    if occurrence.campaign_id.is_some() {
        return crate::campaign::dispatch::dispatch_step(store, job, occurrence)
            .await
            .map(Checked::Done);
    }
    let Some(schedule) = context.schedule else {
        let why = "no medication schedule";
        settle(store, job, from, OccurrenceState::Cancelled, why).await?;
        return Ok(Checked::Done(Dispatch::Cancelled(why)));
    };
    let patient = context
        .patient
        .ok_or(StoreError::NotFound { entity: "patient" })?;
    if patient.consent != ConsentState::Granted {
        let why = "patient has not consented or opted out";
        settle(store, job, from, OccurrenceState::Cancelled, why).await?;
        return Ok(Checked::Done(Dispatch::Cancelled(why)));
    }
    let channel: Option<ChannelKind> = schedule.channels.iter().copied().find(|c| {
        !patient.is_opted_out(*c) && context.identities.iter().any(|i| i.channel() == *c)
    });
    let Some(channel) = channel else {
        let why = "no reachable channel among the schedule's channels".to_owned();
        settle(store, job, from, OccurrenceState::Failed, &why).await?;
        return Ok(Checked::Done(Dispatch::Failed(why)));
    };
    let org = job.organization_id;
    let template = match templates.get(&(org, patient.language)) {
        Some(cached) => cached.clone(),
        None => {
            let key = "reminder"
                .parse()
                .map_err(|_| StoreError::NotFound { entity: "template" })?;
            let found = store
                .content()
                .get_approved(org, &key, None, patient.language, ReadingLevel::Easy)
                .await?;
            templates.insert((org, patient.language), found.clone());
            found
        }
    };
    let Some(template) = template else {
        let why = format!(
            "no approved reminder template in {}",
            patient.language.code()
        );
        settle(store, job, from, OccurrenceState::Failed, &why).await?;
        return Ok(Checked::Done(Dispatch::Failed(why)));
    };
    let body = template
        .version
        .body
        .trim()
        .replace("{medicine}", schedule.medicine_name.as_str())
        .replace("{dose}", schedule.dose_text.as_str());
    Ok(Checked::Ready(Box::new(Ready {
        index: 0,
        job,
        from,
        occurrence,
        patient: patient.id,
        channel,
        language: patient.language,
        template,
        body,
    })))
}

/// Queues the ready doses: their conversations by one read (opened where missing), then their
/// messages, `sent` states and audit entries in one transaction.
async fn queue_ready(
    store: &Store,
    ready: Vec<Ready<'_>>,
) -> Result<Vec<(usize, Dispatch)>, StoreError> {
    let wanted: Vec<_> = ready
        .iter()
        .map(|r| (r.job.organization_id, r.patient, r.channel))
        .collect();
    let conversations = store.messages().open_conversations(&wanted).await?;
    let mut items = Vec::with_capacity(ready.len());
    let mut sent = Vec::with_capacity(ready.len());
    for r in ready {
        let org = r.job.organization_id;
        let conversation = conversations
            .get(&(org, r.patient, r.channel))
            .map(|c| c.id)
            .ok_or(StoreError::NotFound {
                entity: "conversation",
            })?;
        let occurrence_id = r.occurrence.id.to_string();
        let meta = DeliveryMeta {
            purpose: Purpose::Reminder,
            buttons: buttons(r.language, &occurrence_id),
            ..DeliveryMeta::default()
        };
        let message = crate::outgoing::message_in(
            conversation,
            crate::outgoing::Outgoing {
                channel: r.channel,
                template: &r.template,
                body: r.body,
                language: r.language,
                idempotency_key: format!("reminder:{}", r.occurrence.idempotency_key),
                meta,
                checks: vec![
                    ("stage", serde_json::json!("reminder")),
                    ("template", serde_json::json!("reminder")),
                    ("occurrence_id", serde_json::json!(occurrence_id)),
                ],
            },
        );
        items.push(BatchSend {
            organization_id: org,
            occurrence_id: r.occurrence.id,
            from: r.from,
            message,
            audit: audit_entry(r.job, OccurrenceState::Sent, "queued"),
        });
        sent.push((r.index, r.occurrence.id, r.channel));
    }
    // The `sent` states, their messages and their audit entries commit together; a dose that
    // left the state it was read in meanwhile gets no message.
    let stored = store.reminder_occurrences().send_many(items).await?;
    Ok(sent
        .into_iter()
        .zip(stored)
        .map(|((index, occurrence_id, channel), s)| match s.message_id {
            Some(message_id) if s.moved => {
                tracing::info!(%occurrence_id, %message_id, %channel, "reminder queued");
                (index, Dispatch::Queued)
            }
            _ => (index, Dispatch::AlreadyHandled),
        })
        .collect())
}

/// The audit entry for moving the job's occurrence to `to`.
fn audit_entry(job: &ReminderDue, to: OccurrenceState, why: &str) -> NewAuditEntry {
    NewAuditEntry {
        organization_id: Some(job.organization_id),
        actor: Actor::System,
        action: format!("reminder.{}", to.as_str()),
        entity_type: "reminder_occurrence".into(),
        entity_id: job.occurrence_id.to_string(),
        details: serde_json::json!({ "reason": why }),
    }
}

/// Moves the occurrence from the state it was read in to `to` and audits it (both commit
/// together); `false` when another worker moved it first.
async fn settle(
    store: &Store,
    job: &ReminderDue,
    from: OccurrenceState,
    to: OccurrenceState,
    why: &str,
) -> Result<bool, StoreError> {
    store
        .reminder_occurrences()
        .transition_audited(
            job.organization_id,
            job.occurrence_id,
            from,
            to,
            None,
            audit_entry(job, to, why),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_carry_the_occurrence_and_fit_telegram() {
        for &language in Language::ALL {
            let b = buttons(language, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
            assert_eq!(b.len(), 3);
            assert!(
                b.iter().all(|b| b.action.len() <= 64),
                "Telegram callback data limit"
            );
            assert!(b[0].action.ends_with(":taken") && b[2].action.ends_with(":snooze"));
        }
    }
}
