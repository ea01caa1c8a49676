//! The inbound processor: turns stored channel events (`inbound_events`, written by the webhook
//! routes and the long-polling loop before anything else happens) into conversation-engine calls,
//! streams drafts where the channel can show them, and hands replies to the outbox.
//!
//! Events of one sender are handled one at a time and in the order they arrived (a worker per
//! active sender); different senders run concurrently. An event is claimed with a lease, so if
//! this process dies mid-way another one takes it; the engine's own idempotency on the channel's
//! message id keeps a re-run from answering twice.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use careloop_channels::{
    DeliveryMeta, Purpose,
    outbox::Waker,
    ratelimit::{KeyedLimiter, quota_per},
    telegram::{TelegramChannel, TelegramInbound, TelegramInboundKind, UpdateError, parse_update},
};
use careloop_conversation::{
    ConversationEngine, Handled, Inbound, InboundContent, ReplyDelivery, ReplyEvent,
};
use careloop_core::{ChannelKind, OrganizationId};
use careloop_store::{ChannelAddress, InboundEvent, Store};
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long the outbox holds a reply while a channel finishes its streamed draft.
const DRAFT_HOLD: Duration = Duration::from_secs(90);
/// How long one event may take before another process may take it over.
const LEASE: Duration = Duration::from_secs(300);
/// Attempts at an event that fails for a transient reason (the database, the engine).
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct InboundSettings {
    pub organization_id: OrganizationId,
    pub per_patient_per_minute: u32,
    /// Least time between two edits of a streamed Telegram draft.
    pub draft_edit_interval: Duration,
    pub poll_interval: Duration,
}

/// Wakes the processor after an event was stored in this process.
pub type InboundWaker = careloop_channels::outbox::Waker;

/// Processes stored inbound events. Cheap to clone.
#[derive(Clone)]
pub struct InboundProcessor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: Arc<ConversationEngine>,
    telegram: Option<TelegramChannel>,
    outbox: Waker,
    settings: InboundSettings,
    per_patient: KeyedLimiter<String>,
    waker: InboundWaker,
    /// The queue of each sender with events in progress.
    senders: Mutex<HashMap<String, mpsc::UnboundedSender<InboundEvent>>>,
}

impl InboundProcessor {
    pub fn new(
        store: Store,
        engine: Arc<ConversationEngine>,
        telegram: Option<TelegramChannel>,
        outbox: Waker,
        settings: InboundSettings,
    ) -> InboundProcessor {
        let per_patient = KeyedLimiter::new(quota_per(
            settings.per_patient_per_minute,
            Duration::from_secs(60),
        ));
        InboundProcessor {
            inner: Arc::new(Inner {
                store,
                engine,
                telegram,
                outbox,
                settings,
                per_patient,
                waker: InboundWaker::default(),
                senders: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn waker(&self) -> InboundWaker {
        self.inner.waker.clone()
    }

    /// Claims and dispatches events until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let lease =
            chrono::Duration::from_std(LEASE).unwrap_or_else(|_| chrono::Duration::minutes(5));
        let mut rounds: u64 = 0;
        loop {
            match self
                .inner
                .store
                .inbound_events()
                .claim_pending(Utc::now(), lease, 100)
                .await
            {
                Ok(events) => {
                    for event in events {
                        self.dispatch(event);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "inbound: claiming events failed"),
            }
            rounds += 1;
            if rounds.is_multiple_of(600) {
                self.inner.per_patient.shrink();
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.waker.woken() => {}
                () = tokio::time::sleep(self.inner.settings.poll_interval) => {}
            }
        }
        tracing::info!("inbound processor stopped");
    }

    /// Queues an event behind the same sender's earlier ones.
    fn dispatch(&self, event: InboundEvent) {
        let key = sender_key(&event);
        let Ok(mut senders) = self.inner.senders.lock() else {
            return;
        };
        if let Some(queue) = senders.get(&key) {
            match queue.send(event) {
                Ok(()) => {}
                Err(mpsc::error::SendError(event)) => {
                    senders.remove(&key);
                    self.spawn_worker(&mut senders, key, event);
                }
            }
        } else {
            self.spawn_worker(&mut senders, key, event);
        }
    }

    fn spawn_worker(
        &self,
        senders: &mut HashMap<String, mpsc::UnboundedSender<InboundEvent>>,
        key: String,
        first: InboundEvent,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if tx.send(first).is_err() {
            return;
        }
        senders.insert(key.clone(), tx);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                while let Ok(event) = rx.try_recv() {
                    this.process(event).await;
                }
                // Idle: leave, unless an event arrived meanwhile (checked under the lock).
                let Ok(mut senders) = this.inner.senders.lock() else {
                    return;
                };
                if rx.is_empty() {
                    senders.remove(&key);
                    return;
                }
            }
        });
    }

    async fn process(&self, event: InboundEvent) {
        let id = event.id;
        let attempts = event.attempts;
        let events = self.inner.store.inbound_events();
        let outcome = match event.channel {
            ChannelKind::Telegram => self.process_telegram(&event).await,
            ChannelKind::Email => self.process_email(&event).await,
            other => Err(ProcessError::Permanent(format!(
                "no inbound handler for {other} in this process"
            ))),
        };
        let settled = match outcome {
            Ok(()) => events.mark_processed(id).await,
            Err(ProcessError::Permanent(why)) => {
                tracing::info!(inbound_event_id = %id, reason = %why, "inbound: event not processed");
                events.mark_failed(id, &why, None).await
            }
            Err(ProcessError::Transient(why)) if attempts < MAX_ATTEMPTS => {
                let wait = chrono::Duration::seconds(2i64.pow(attempts.min(10)));
                tracing::warn!(inbound_event_id = %id, attempts, reason = %why, "inbound: will retry");
                events.mark_failed(id, &why, Some(Utc::now() + wait)).await
            }
            Err(ProcessError::Transient(why)) => {
                tracing::error!(inbound_event_id = %id, attempts, reason = %why, "inbound: giving up");
                events.mark_failed(id, &why, None).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(inbound_event_id = %id, error = %e, "inbound: settling an event failed");
        }
    }

    async fn process_telegram(&self, event: &InboundEvent) -> Result<(), ProcessError> {
        let Some(telegram) = &self.inner.telegram else {
            return Err(ProcessError::Transient(
                "telegram not configured here".into(),
            ));
        };
        let payload = event
            .payload
            .as_ref()
            .ok_or_else(|| ProcessError::Permanent("payload already dropped".into()))?;
        let update = match parse_update(payload) {
            Ok(update) => update,
            Err(UpdateError::Ignored { kind, .. }) => {
                tracing::debug!(kind, "inbound: telegram update ignored");
                return Ok(());
            }
            Err(e @ UpdateError::Malformed(_)) => {
                return Err(ProcessError::Permanent(e.to_string()));
            }
        };
        let org = self.inner.settings.organization_id;
        let address = ChannelAddress::Telegram(update.chat);
        let content = match &update.kind {
            TelegramInboundKind::Text(text) => InboundContent::Text(text.clone()),
            TelegramInboundKind::Unsupported(kind) => {
                InboundContent::Unsupported((*kind).to_owned())
            }
            TelegramInboundKind::Start(payload) => {
                if let Some(code) = payload {
                    self.enrol(org, &address, code).await?;
                }
                // Opening the chat again undoes a "blocked the bot" opt-out.
                self.clear_channel_opt_out(org, &address).await?;
                InboundContent::Greeting
            }
            TelegramInboundKind::Callback { id, data } => {
                // Reminder buttons (Taken / Skip / Snooze) become adherence events; the
                // confirmation goes through the outbox. Stop the spinner either way.
                let recorded = self.answer_reminder(org, &address, data).await?;
                if let Err(e) = telegram.answer_callback(id, None).await {
                    tracing::info!(error = %e, "inbound: answering a callback failed");
                }
                if recorded {
                    self.inner.outbox.wake();
                }
                return Ok(());
            }
        };
        let rate_limited = matches!(content, InboundContent::Text(_))
            && self
                .inner
                .per_patient
                .check(&format!("telegram:{}", update.chat))
                .is_err();
        let meta = DeliveryMeta {
            purpose: Purpose::Reply,
            in_reply_to: update.message_id.map(|id| id.to_string()),
            ..DeliveryMeta::default()
        };
        let inbound = Inbound {
            organization_id: org,
            address,
            content,
            idempotency_key: Some(format!(
                "telegram:{}:{}",
                telegram.bot_id(),
                update.update_id
            )),
            reply: ReplyDelivery {
                meta: serde_json::to_value(&meta).ok(),
                hold: Some(DRAFT_HOLD),
            },
            rate_limited,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let drafts = tokio::spawn(stream_drafts(
            telegram.clone(),
            update.clone(),
            rx,
            self.inner.settings.draft_edit_interval,
        ));
        let handled = self.inner.engine.handle(inbound, Some(&tx)).await;
        drop(tx);
        let draft = drafts.await.ok().flatten();
        let handled = handled.map_err(|e| ProcessError::Transient(e.to_string()))?;
        if let Handled::Replied(reply) = handled {
            let meta = DeliveryMeta {
                replaces_draft: draft.map(|d| d.to_string()),
                ..meta
            };
            self.inner
                .store
                .outbox()
                .release(org, reply.message_id, serde_json::to_value(&meta).ok())
                .await
                .map_err(|e| ProcessError::Transient(e.to_string()))?;
            self.inner.outbox.wake();
        }
        Ok(())
    }

    async fn process_email(&self, event: &InboundEvent) -> Result<(), ProcessError> {
        use base64::Engine as _;
        use careloop_channels::email::{InboundKind, parse_inbound};
        let raw = event
            .payload
            .as_ref()
            .and_then(|p| p.get("mime_b64"))
            .and_then(serde_json::Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or_else(|| ProcessError::Permanent("payload without mail".into()))?;
        let mail = parse_inbound(&raw).map_err(|e| ProcessError::Permanent(e.to_string()))?;
        match &mail.kind {
            InboundKind::AutoReply => {
                tracing::info!("inbound: automatic email reply ignored");
                return Ok(());
            }
            InboundKind::Bounce {
                original_message_id,
            } => {
                return self.bounce(original_message_id.as_deref()).await;
            }
            InboundKind::Regular => {}
        }
        let org = self.inner.settings.organization_id;
        let address = ChannelAddress::Email(mail.from.clone());
        let rate_limited = self
            .inner
            .per_patient
            .check(&format!("email:{}", mail.from.as_str()))
            .is_err();
        let subject = mail.subject.as_deref().map(|s| {
            let s = s.trim();
            if s.to_ascii_lowercase().starts_with("re:") {
                s.to_owned()
            } else {
                format!("Re: {s}")
            }
        });
        let meta = DeliveryMeta {
            purpose: Purpose::Reply,
            in_reply_to: Some(mail.message_id.clone()),
            subject,
            ..DeliveryMeta::default()
        };
        let inbound = Inbound {
            organization_id: org,
            address,
            content: InboundContent::Text(mail.text.clone()),
            idempotency_key: Some(format!("email:{}", mail.message_id)),
            reply: ReplyDelivery {
                meta: serde_json::to_value(&meta).ok(),
                hold: None,
            },
            rate_limited,
        };
        let handled = self
            .inner
            .engine
            .handle(inbound, None)
            .await
            .map_err(|e| ProcessError::Transient(e.to_string()))?;
        if matches!(handled, Handled::Replied(_)) {
            self.inner.outbox.wake();
        }
        Ok(())
    }

    /// A bounce: the returned message failed, and a mailbox that bounces is opted out of email.
    async fn bounce(&self, original: Option<&str>) -> Result<(), ProcessError> {
        let store = &self.inner.store;
        let Some(original) = original else {
            tracing::info!("inbound: bounce without the original message id");
            return Ok(());
        };
        let original = original.trim_matches(['<', '>']);
        let found = store
            .outbox()
            .find_by_provider_id(ChannelKind::Email, original)
            .await
            .map_err(|e| ProcessError::Transient(e.to_string()))?;
        let Some(message) = found else {
            tracing::info!("inbound: bounce for a message careloop did not send");
            return Ok(());
        };
        let org = message.organization_id;
        let transient = |e: careloop_store::StoreError| ProcessError::Transient(e.to_string());
        store
            .outbox()
            .mark_failed(org, message.id, "bounced", false)
            .await
            .map_err(transient)?;
        store
            .delivery_attempts()
            .record(
                org,
                careloop_store::NewDeliveryAttempt {
                    message_id: message.id,
                    outcome: careloop_core::DeliveryOutcome::PermanentFailure,
                    error: Some("bounced".into()),
                    provider_message_id: message.provider_message_id.clone(),
                },
            )
            .await
            .map_err(transient)?;
        store
            .patients()
            .set_channel_opt_out(org, message.patient_id, ChannelKind::Email, true)
            .await
            .map_err(transient)?;
        tracing::info!(organization_id = %org, message_id = %message.id, "email bounced: channel opted out");
        Ok(())
    }

    /// A pressed reminder button: the adherence answer of the patient behind this address, for
    /// one of their own reminders. `Ok(true)` when something was recorded.
    async fn answer_reminder(
        &self,
        org: OrganizationId,
        address: &ChannelAddress,
        action: &str,
    ) -> Result<bool, ProcessError> {
        use careloop_reminders::respond::{Responded, parse_action, respond};
        let Some((occurrence, kind)) = parse_action(action) else {
            tracing::info!("inbound: unknown button action ignored");
            return Ok(false);
        };
        let store = &self.inner.store;
        let transient = |e: careloop_store::StoreError| ProcessError::Transient(e.to_string());
        let Some(identity) = store
            .channel_identities()
            .find_by_address(org, address)
            .await
            .map_err(transient)?
        else {
            return Ok(false);
        };
        let outcome = respond(
            store,
            org,
            identity.patient_id,
            occurrence,
            kind,
            address.kind(),
            &self.inner.engine.settings().adherence,
        )
        .await
        .map_err(transient)?;
        Ok(outcome == Responded::Recorded)
    }

    /// Links the chat to the patient an enrolment code was made for.
    async fn enrol(
        &self,
        org: OrganizationId,
        address: &ChannelAddress,
        code: &str,
    ) -> Result<(), ProcessError> {
        let store = &self.inner.store;
        let redeemed = store
            .enrolment_codes()
            .redeem(code, Utc::now())
            .await
            .map_err(|e| ProcessError::Transient(e.to_string()))?;
        match redeemed {
            Some((code_org, patient)) if code_org == org => {
                match store
                    .channel_identities()
                    .link(org, patient, address, Some(Utc::now()))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(organization_id = %org, patient_id = %patient, "telegram chat enrolled")
                    }
                    Err(careloop_store::StoreError::Conflict { .. }) => {
                        tracing::info!(organization_id = %org, "enrolment code used by a chat linked to another patient");
                    }
                    Err(e) => return Err(ProcessError::Transient(e.to_string())),
                }
            }
            Some(_) => tracing::warn!("enrolment code of another organization ignored"),
            None => tracing::info!("unknown, used or expired enrolment code"),
        }
        Ok(())
    }

    async fn clear_channel_opt_out(
        &self,
        org: OrganizationId,
        address: &ChannelAddress,
    ) -> Result<(), ProcessError> {
        let store = &self.inner.store;
        let identity = store
            .channel_identities()
            .find_by_address(org, address)
            .await
            .map_err(|e| ProcessError::Transient(e.to_string()))?;
        if let Some(identity) = identity {
            store
                .patients()
                .set_channel_opt_out(org, identity.patient_id, address.kind(), false)
                .await
                .map_err(|e| ProcessError::Transient(e.to_string()))?;
        }
        Ok(())
    }
}

enum ProcessError {
    /// Try again later (database, engine unavailable).
    Transient(String),
    /// Will never work (malformed payload).
    Permanent(String),
}

/// The key that orders a sender's events: the chat, address or session the event came from.
fn sender_key(event: &InboundEvent) -> String {
    let chat = event
        .payload
        .as_ref()
        .and_then(|p| {
            p.pointer("/message/chat/id")
                .or_else(|| p.pointer("/callback_query/message/chat/id"))
        })
        .and_then(serde_json::Value::as_i64);
    match chat {
        Some(chat) => format!("{}:{chat}", event.channel),
        // Mail of one sender is not ordered by arrival anyway; one queue per mail.
        None => format!("{}:event:{}", event.channel, event.id),
    }
}

/// Shows a model answer as it streams: the first text is sent as a message, later text edits it
/// (at most once per `interval`); a retraction blanks it. Returns the draft's message id.
async fn stream_drafts(
    telegram: TelegramChannel,
    update: TelegramInbound,
    mut events: mpsc::UnboundedReceiver<ReplyEvent>,
    interval: Duration,
) -> Option<i32> {
    const TYPING: &str = "…";
    let mut text = String::new();
    let mut draft: Option<i32> = None;
    let mut shown = String::new();
    let mut last_edit = Instant::now();
    let mut failed = false;
    while let Some(event) = events.recv().await {
        match event {
            ReplyEvent::Draft(t) => text.push_str(&t),
            ReplyEvent::Retract => text.clear(),
            ReplyEvent::Final(_) => break,
        }
        if failed {
            continue;
        }
        let want = if text.trim().is_empty() {
            TYPING.to_owned()
        } else {
            format!("{} {TYPING}", text.trim_end())
        };
        let result = match draft {
            None if !text.trim().is_empty() => {
                telegram.send_draft(update.chat, &want).await.map(|id| {
                    draft = Some(id);
                    last_edit = Instant::now();
                })
            }
            Some(id) if want != shown && last_edit.elapsed() >= interval => {
                last_edit = Instant::now();
                telegram.edit_draft(update.chat, id, &want).await
            }
            _ => continue,
        };
        match result {
            Ok(()) => shown = want,
            Err(e) => {
                // Drafts are a courtesy: the final reply still goes through the outbox.
                tracing::info!(error = %e, "telegram draft not shown");
                failed = true;
            }
        }
    }
    draft
}
