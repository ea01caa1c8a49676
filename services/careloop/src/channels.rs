//! Wires the patient channels of a gateway process: the outbox sender, the inbound processor and
//! Telegram (webhook registration or long polling), from the `channels` settings.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use careloop_channels::{
    Channel, Outbox, OutboxSettings,
    telegram::{TelegramChannel, TelegramConfig},
};
use careloop_config::{Settings, TelegramMode};
use careloop_gateway::{
    ConversationState,
    email::EmailRoutes,
    inbound::{InboundProcessor, InboundSettings},
    telegram::TelegramWebhook,
};
use careloop_store::Store;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the gateway's routes need from the running channels, and their tasks.
pub struct Channels {
    pub telegram_webhook: Option<TelegramWebhook>,
    pub email_routes: Option<EmailRoutes>,
    pub tasks: Vec<JoinHandle<()>>,
}

pub async fn start(
    settings: &Settings,
    store: &Store,
    conversation: &ConversationState,
    webchat: Option<careloop_channels::webchat::WebChatHub>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Channels> {
    let config = &settings.channels;
    let mut senders: Vec<Arc<dyn Channel>> = Vec::new();
    // Web chat replies reach the browser as they are made; the outbox records their delivery
    // (its send is a no-op for a message already in the session's log).
    if let Some(hub) = webchat {
        senders.push(Arc::new(hub));
    }
    let mut tasks = Vec::new();

    let telegram = match config.telegram.active_token()? {
        Some(token) => {
            let api_url = config
                .telegram
                .api_url
                .as_deref()
                .map(url::Url::parse)
                .transpose()
                .context("channels.telegram.api_url is not a URL")?;
            let channel = TelegramChannel::new(&TelegramConfig {
                token: token.expose_secret().to_owned(),
                api_url,
                per_chat_per_second: config.telegram.per_chat_per_second,
                per_bot_per_second: config.telegram.per_bot_per_second,
            })?;
            senders.push(Arc::new(channel.clone()));
            Some(channel)
        }
        None => None,
    };

    let mut email_key = None;
    if config.email.enabled {
        let (channel, key) = email_channel(&config.email)?;
        email_key = Some(key);
        senders.push(Arc::new(channel));
    }

    let outbox = Outbox::new(
        store.clone(),
        OutboxSettings {
            poll_interval: Duration::from_millis(config.outbox.poll_interval_ms),
            max_attempts: config.outbox.max_attempts,
            backoff_base: Duration::from_millis(config.outbox.backoff_base_ms),
            backoff_max: Duration::from_millis(config.outbox.backoff_max_ms),
            ..OutboxSettings::default()
        },
        senders,
    );
    let processor = InboundProcessor::new(
        store.clone(),
        Arc::clone(&conversation.engine),
        telegram.clone(),
        outbox.waker(),
        InboundSettings {
            organization_id: conversation.organization_id,
            per_patient_per_minute: config.limits.per_patient_per_minute,
            draft_edit_interval: Duration::from_millis(config.telegram.draft_edit_interval_ms),
            poll_interval: Duration::from_secs(1),
        },
    );
    let inbound_waker = processor.waker();
    tasks.push(tokio::spawn(outbox.run(shutdown.clone())));
    tasks.push(tokio::spawn(processor.run(shutdown.clone())));

    let email_routes = email_key.map(|signing_key| EmailRoutes {
        store: store.clone(),
        organization_id: conversation.organization_id,
        webhook_secret: config
            .email
            .webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned()),
        signing_key,
        waker: inbound_waker.clone(),
    });
    if let (Some(routes), Some(imap)) = (&email_routes, &config.email.imap) {
        let imap: careloop_channels::email::ImapSettings =
            serde_json::from_value(serde_json::Value::Object(imap.clone()))
                .context("channels.email.imap")?;
        let poller =
            careloop_channels::email::ImapPoller::new(imap).context("channels.email.imap")?;
        tasks.push(tokio::spawn(careloop_gateway::email::poll_imap(
            poller,
            routes.clone(),
            Duration::from_secs(config.email.imap_poll_secs.max(1)),
            shutdown.clone(),
        )));
    }

    let mut telegram_webhook = None;
    if let Some(channel) = telegram {
        let hook = TelegramWebhook {
            store: store.clone(),
            organization_id: conversation.organization_id,
            bot_id: channel.bot_id(),
            secret: config
                .telegram
                .webhook_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
                .unwrap_or_default(),
            waker: inbound_waker,
        };
        match config.telegram.mode {
            TelegramMode::Webhook => {
                if let Some(url) = &config.telegram.webhook_url {
                    let url = url::Url::parse(url)
                        .context("channels.telegram.webhook_url is not a URL")?;
                    channel
                        .set_webhook(url, &hook.secret)
                        .await
                        .context("telegram setWebhook failed")?;
                    tracing::info!("telegram webhook registered");
                }
                telegram_webhook = Some(hook);
            }
            TelegramMode::Polling => {
                let timeout = Duration::from_secs(config.telegram.poll_timeout_secs);
                tasks.push(tokio::spawn(careloop_gateway::telegram::poll(
                    channel,
                    hook,
                    timeout,
                    shutdown.clone(),
                )));
            }
        }
    }
    Ok(Channels {
        telegram_webhook,
        email_routes,
        tasks,
    })
}

/// The email channel from `channels.email.smtp`, and its signing key (for unsubscribe links and
/// the inbound routes). The reminder role builds one too, for the care team's alert mail.
pub fn email_channel(
    config: &careloop_config::EmailChannelSettings,
) -> anyhow::Result<(careloop_channels::email::EmailChannel, Vec<u8>)> {
    let settings: careloop_channels::email::EmailSettings =
        serde_json::from_value(serde_json::Value::Object(config.smtp.clone()))
            .context("channels.email.smtp")?;
    let key = settings.signing_key.expose_secret().as_bytes().to_vec();
    let channel =
        careloop_channels::email::EmailChannel::new(settings).context("channels.email.smtp")?;
    Ok((channel, key))
}
