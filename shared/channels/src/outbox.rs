//! The outbox sender. Outbound messages are written `queued` by whoever makes them (the
//! conversation engine, the reminder dispatcher, campaigns); [`Outbox::run`] claims the due ones
//! (a lease, so several processes can run it), checks the patient may still be contacted, sends
//! through the message's channel and records the outcome:
//!
//! - sent → `sent` (or `delivered`) with the provider's id, and a delivery attempt;
//! - transient failure → stays `queued`, due again after an exponential backoff (or the
//!   provider's `retry_after`), until `max_attempts`;
//! - unreachable (blocked bot, mailbox gone) → `failed`, and the channel is opted out;
//! - permanent failure, consent withdrawn for a reminder or campaign, channel opted out, no
//!   address → `failed` with the reason, never sent.
//!
//! The consent check reads the patient when the message is claimed, so an opt-out stops every
//! message claimed after it (the outbox polls every `poll_interval`, one second by default).

use std::{collections::HashMap, sync::Arc, time::Duration};

use careloop_core::{ChannelKind, ConsentState, DeliveryOutcome};
use careloop_store::{NewDeliveryAttempt, OutboxItem, Store, StoreError};
use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{Channel, DeliveryMeta, OutboundMessage, SendError, Sent};

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// How often to look for due messages when nobody wakes the outbox.
    pub poll_interval: Duration,
    /// How long a claim lasts before another process may take the message.
    pub lease: Duration,
    /// Messages claimed per round.
    pub batch: u64,
    /// Messages being sent at once.
    pub concurrency: usize,
    /// Attempts before a transiently failing message is given up.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            batch: 100,
            concurrency: 32,
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
        }
    }
}

impl OutboxSettings {
    /// The delay before the attempt after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// What happened to one claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Sent,
    Retry,
    Failed(String),
}

/// Wakes a polling loop (the [`Outbox`], the gateway's inbound processor) at once, after work
/// was stored for it in this process; other processes see the work at their next poll.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`Self::wake`] (or at once if one is pending).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Sends queued outbound messages through their channels. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    channels: Arc<HashMap<ChannelKind, Arc<dyn Channel>>>,
    settings: OutboxSettings,
    waker: Waker,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Outbox {
    pub fn new(store: Store, settings: OutboxSettings, channels: Vec<Arc<dyn Channel>>) -> Outbox {
        let channels = channels.into_iter().map(|c| (c.kind(), c)).collect();
        Outbox {
            store,
            channels: Arc::new(channels),
            settings,
            waker: Waker::default(),
        }
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The channels this outbox sends on.
    pub fn kinds(&self) -> Vec<ChannelKind> {
        let mut kinds: Vec<_> = self.channels.keys().copied().collect();
        kinds.sort_by_key(|k| k.as_str());
        kinds
    }

    /// Sends until `shutdown`: claims due messages, sends them concurrently, sleeps until woken
    /// or `poll_interval` passes. Store errors are logged and retried on the next round.
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        tracing::info!(channels = ?self.kinds(), "outbox running");
        loop {
            let claimed = match self.claim().await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: claiming messages failed");
                    Vec::new()
                }
            };
            let full_batch = claimed.len() as u64 >= self.settings.batch;
            for item in claimed {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let outbox = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = outbox.settle(item).await {
                        tracing::warn!(error = %e, "outbox: recording a delivery failed");
                    }
                    drop(permit);
                });
            }
            if full_batch {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.waker.woken() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        // Let sends in flight finish (their claims would otherwise wait out the lease).
        let _ = permits
            .acquire_many(self.settings.concurrency.max(1) as u32)
            .await;
        tracing::info!("outbox stopped");
    }

    /// One round without the loop: claims what is due and sends it, returning the outcomes.
    pub async fn drain_once(&self) -> Result<Vec<Settled>, OutboxError> {
        let mut out = Vec::new();
        for item in self.claim().await? {
            out.push(self.settle(item).await?);
        }
        Ok(out)
    }

    async fn claim(&self) -> Result<Vec<OutboxItem>, OutboxError> {
        let lease = chrono::Duration::from_std(self.settings.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(120));
        Ok(self
            .store
            .outbox()
            .claim_due(Utc::now(), lease, self.settings.batch, &self.kinds())
            .await?)
    }

    /// Sends one claimed message and records what happened.
    pub async fn settle(&self, item: OutboxItem) -> Result<Settled, OutboxError> {
        let message = &item.message;
        let org = message.organization_id;
        let meta: DeliveryMeta = message
            .delivery_meta
            .clone()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        let refuse = if meta.purpose.needs_consent() && item.consent != ConsentState::Granted {
            Some("patient has not consented or opted out")
        } else if item.channel_opted_out {
            Some("patient opted out of this channel")
        } else if item.identity.is_none() {
            Some("patient has no address on this channel")
        } else {
            None
        };
        let channel = self.channels.get(&message.channel);
        let (Some(identity), Some(channel), None) = (&item.identity, channel, refuse) else {
            let reason = refuse.unwrap_or("channel not configured in this process");
            self.store
                .outbox()
                .mark_failed(org, message.id, reason, false)
                .await?;
            tracing::info!(organization_id = %org, message_id = %message.id, reason, "outbox: not sent");
            return Ok(Settled::Failed(reason.to_owned()));
        };
        let outbound = OutboundMessage {
            message_id: message.id,
            organization_id: org,
            patient_id: message.patient_id,
            address: identity.address.clone(),
            body: message.body.clone(),
            language: message.language,
            meta,
        };
        let result = channel.send(&outbound).await;
        let outbox = self.store.outbox();
        let (outcome, error, provider_id, settled) = match result {
            Ok(Sent {
                provider_message_id,
                delivered,
            }) => {
                outbox
                    .mark_sent(org, message.id, provider_message_id.as_deref(), delivered)
                    .await?;
                let outcome = if delivered {
                    DeliveryOutcome::Delivered
                } else {
                    DeliveryOutcome::Sent
                };
                (outcome, None, provider_message_id, Settled::Sent)
            }
            Err(SendError::Transient {
                reason,
                retry_after,
            }) => {
                let attempts = message.attempts + 1;
                if attempts >= self.settings.max_attempts {
                    let why = format!("gave up after {attempts} attempts: {reason}");
                    outbox.mark_failed(org, message.id, &why, true).await?;
                    (
                        DeliveryOutcome::TransientFailure,
                        Some(reason),
                        None,
                        Settled::Failed(why),
                    )
                } else {
                    let wait = retry_after
                        .unwrap_or_default()
                        .max(self.settings.backoff(attempts));
                    let at = Utc::now()
                        + chrono::Duration::from_std(wait)
                            .unwrap_or_else(|_| chrono::Duration::seconds(60));
                    outbox.mark_retry(org, message.id, at, &reason).await?;
                    (
                        DeliveryOutcome::TransientFailure,
                        Some(reason),
                        None,
                        Settled::Retry,
                    )
                }
            }
            Err(SendError::Unreachable { reason }) => {
                outbox.mark_failed(org, message.id, &reason, true).await?;
                self.store
                    .patients()
                    .set_channel_opt_out(org, message.patient_id, message.channel, true)
                    .await?;
                tracing::info!(organization_id = %org, patient_id = %message.patient_id, channel = %message.channel, "channel unreachable: opted out");
                (
                    DeliveryOutcome::PermanentFailure,
                    Some(reason.clone()),
                    None,
                    Settled::Failed(reason),
                )
            }
            Err(SendError::Permanent { reason }) => {
                outbox.mark_failed(org, message.id, &reason, true).await?;
                (
                    DeliveryOutcome::PermanentFailure,
                    Some(reason.clone()),
                    None,
                    Settled::Failed(reason),
                )
            }
        };
        self.store
            .delivery_attempts()
            .record(
                org,
                NewDeliveryAttempt {
                    message_id: message.id,
                    outcome,
                    error,
                    provider_message_id: provider_id,
                },
            )
            .await?;
        tracing::info!(
            organization_id = %org,
            message_id = %message.id,
            channel = %message.channel,
            outcome = outcome.as_str(),
            "outbox: delivery attempt"
        );
        Ok(settled)
    }
}
