//! Mails the care team about new alerts (urgent messages, dosing questions, missed doses in a
//! row): each alert once, to the organization's active care-team and admin staff, whichever
//! reminder process notices it first (`alerts.notified_at` is the claim). The mail holds the
//! alert's kind, category, patient id and time, never the patient's words or name; the
//! dashboard has the rest.
//!
//! A claimed alert whose mail could not be sent is released and tried again next round; a
//! process killed between claiming and sending loses that one mail (the alert stays on the
//! dashboard).

use std::time::Duration;

use careloop_channels::SendError;
use careloop_channels::email::EmailChannel;
use careloop_core::{EmailAddress, Role};
use careloop_store::{Alert, Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

/// Alerts older than this when first seen are not mailed (a mailer switched on later does not
/// flood the team with history).
const LOOKBACK: TimeDelta = TimeDelta::hours(24);
const BATCH: u64 = 100;

/// Where mail goes and what it links to.
#[derive(Debug)]
pub struct AlertMailer {
    pub email: EmailChannel,
    /// The staff dashboard, linked from each mail when set.
    pub dashboard_url: Option<String>,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailRound {
    pub mailed: u32,
    /// Claimed but no active care-team or admin staff with an address: nobody to mail.
    pub no_recipient: u32,
    pub failed: u32,
}

/// One round: claims and mails the new alerts.
pub async fn mail_once(
    store: &Store,
    mailer: &AlertMailer,
    now: DateTime<Utc>,
) -> Result<MailRound, StoreError> {
    let mut round = MailRound::default();
    for alert in store.alerts().unnotified(now - LOOKBACK, BATCH).await? {
        let org = alert.organization_id;
        if !store
            .alerts()
            .claim_notification(org, alert.id, now)
            .await?
        {
            continue;
        }
        let recipients: Vec<EmailAddress> = store
            .staff_users()
            .list(org)
            .await?
            .into_iter()
            .filter(|s| s.active && matches!(s.role, Role::CareTeam | Role::Admin))
            .map(|s| s.email)
            .collect();
        if recipients.is_empty() {
            tracing::warn!(organization_id = %org, alert_id = %alert.id, "alert not mailed: no care-team staff");
            round.no_recipient += 1;
            continue;
        }
        let (subject, text) = compose(&alert, mailer.dashboard_url.as_deref());
        match mailer.email.send_notice(&recipients, &subject, &text).await {
            Ok(()) => {
                round.mailed += 1;
                tracing::info!(organization_id = %org, alert_id = %alert.id, recipients = recipients.len(), "alert mailed to the care team");
            }
            Err(e) => {
                round.failed += 1;
                let permanent = matches!(e, SendError::Permanent { .. });
                tracing::warn!(organization_id = %org, alert_id = %alert.id, error = %e, "alert mail failed");
                if !permanent {
                    store.alerts().release_notification(org, alert.id).await?;
                }
            }
        }
    }
    Ok(round)
}

/// The subject and text of an alert's mail.
pub fn compose(alert: &Alert, dashboard_url: Option<&str>) -> (String, String) {
    let what = match alert.kind {
        careloop_core::AlertKind::Urgent => "URGENT: a patient wrote about a possible emergency",
        careloop_core::AlertKind::Dosing => "A patient asked a dosing question",
        careloop_core::AlertKind::MissedDoses => "A patient missed doses in a row",
    };
    let subject = format!("[careloop] {what}");
    let mut text = format!(
        "{what}.\n\nAlert: {}\nKind: {}\n",
        alert.id,
        alert.kind.as_str()
    );
    if let Some(category) = &alert.category {
        text.push_str(&format!("Category: {category}\n"));
    }
    if let Some(n) = alert
        .details
        .get("missed_in_a_row")
        .and_then(|v| v.as_u64())
    {
        text.push_str(&format!("Missed in a row: {n}\n"));
    }
    text.push_str(&format!(
        "Patient: {}\nRaised: {}\n\n",
        alert.patient_id,
        alert.created_at.format("%Y-%m-%d %H:%M UTC")
    ));
    match dashboard_url {
        Some(url) => text.push_str(&format!(
            "Open the care team dashboard to see the patient and acknowledge the alert:\n{url}\n"
        )),
        None => text.push_str(
            "Open the care team dashboard to see the patient and acknowledge the alert.\n",
        ),
    }
    text.push_str("\nThis mail holds no message text; the dashboard has it.\n");
    (subject, text)
}

/// Mails alerts every `interval` until `shutdown`. Failures are logged and retried next round.
pub async fn run(
    store: Store,
    mailer: AlertMailer,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = mail_once(&store, &mailer, Utc::now()).await {
            tracing::warn!(error = %e, "alert mail round failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
