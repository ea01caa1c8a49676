//! Following patients' changes: whoever changed a patient (the chat, the web widget, an email
//! bounce, an enrolment link, the CLI), the reminder worker re-plans that patient's doses (a new
//! zone or new quiet hours move planned doses, never sent ones) and enrols them in the running
//! campaigns of their organization (a new patient, a channel linked, consent given again, a date
//! set, a tag or condition that now puts them in an audience or takes them out of it).
//!
//! Every `interval` it reads the patients changed since its last round
//! ([`careloop_store::Patients::changed_between`]) up to a few seconds ago (`settle`: a write
//! stamped just before the read may commit just after it). Both passes are idempotent, so a
//! patient seen twice costs a little work and nothing else. A process that starts looks back
//! `lookback` (a day by default) for changes made while no worker ran.

use std::collections::BTreeMap;
use std::time::Duration;

use careloop_core::{CampaignState, OrganizationId, PatientId};
use careloop_store::Store;
use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

/// How the follower runs.
#[derive(Debug, Clone, Copy)]
pub struct FollowSettings {
    pub interval: Duration,
    pub settle: TimeDelta,
    pub lookback: TimeDelta,
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            interval: Duration::from_secs(10),
            settle: TimeDelta::seconds(5),
            lookback: TimeDelta::days(1),
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Followed {
    /// Patients seen changed.
    pub patients: usize,
    /// Doses moved, planned or cancelled by re-planning.
    pub doses_changed: u64,
    /// Campaign steps scheduled for them.
    pub steps_scheduled: u64,
}

/// Handles the patients changed in `(since, until]` at `now`; one patient's failure is logged
/// and does not stop the others.
pub async fn follow_once(
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Followed, careloop_store::StoreError> {
    let changed = store.patients().changed_between(since, until).await?;
    let mut done = Followed {
        patients: changed.len(),
        ..Followed::default()
    };
    let mut by_org: BTreeMap<OrganizationId, Vec<PatientId>> = BTreeMap::new();
    for (org, patient) in changed {
        by_org.entry(org).or_default().push(patient);
    }
    for (org, patients) in by_org {
        let campaigns_running = !store
            .campaigns()
            .list_in_states(org, &[CampaignState::Running])
            .await?
            .is_empty();
        for patient in patients {
            match crate::schedules::replan_patient(store, org, patient, now).await {
                Ok(o) => done.doses_changed += u64::from(o.inserted + o.moved + o.cancelled),
                Err(e) => {
                    tracing::warn!(organization_id = %org, patient_id = %patient, error = %e, "patient's doses not re-planned")
                }
            }
            if campaigns_running {
                match crate::campaign::enrol_patient(store, org, patient, now).await {
                    Ok(m) => done.steps_scheduled += m.planned + m.replanned,
                    Err(e) => {
                        tracing::warn!(organization_id = %org, patient_id = %patient, error = %e, "patient not enrolled in running campaigns")
                    }
                }
            }
        }
    }
    Ok(done)
}

/// Follows patients' changes until `shutdown`.
pub async fn run(store: Store, settings: FollowSettings, shutdown: CancellationToken) {
    let mut since = Utc::now() - settings.lookback;
    loop {
        let now = Utc::now();
        let until = now - settings.settle;
        if until > since {
            match follow_once(&store, since, until, now).await {
                Ok(done) => {
                    since = until;
                    if done.patients > 0 {
                        tracing::info!(
                            patients = done.patients,
                            doses_changed = done.doses_changed,
                            steps_scheduled = done.steps_scheduled,
                            "patients' changes followed"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "patients' changes not read; retrying"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.interval) => {}
        }
    }
}
