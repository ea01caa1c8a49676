//! `careloop serve`: start the chosen roles, report readiness, stop cleanly on SIGINT/SIGTERM.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use careloop_config::{LlmMode, Settings};
use careloop_gateway::{AppState, Application, ReadinessCheck, ServerConfig};
use careloop_queue::QueueConnection;
use careloop_store::Store;
use futures::FutureExt;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::{Role, Roles, content};

pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings.database_url().expose_secret())
        .await
        .context("cannot open the database (check CARELOOP_DATABASE__URL)")?;
    tracing::info!(backend = store.backend(), "database connected");
    Ok(store)
}

pub async fn serve(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    tracing::info!(roles = %roles, "starting careloop");
    let pool = llm_pool(&settings)?;
    let store = open_store(&settings).await?;
    if settings.database.migrate_on_start {
        store.migrate().await.context("migrations")?;
    }
    let queue = QueueConnection::connect(&settings.queue_backend(), &settings.queue.namespace)
        .await
        .context("cannot open the queue (check CARELOOP_QUEUE__URL)")?;
    tracing::info!(queue = queue.kind(), "queue connected");

    let mut checks = vec![
        ReadinessCheck::new("database", {
            let store = store.clone();
            move || {
                let store = store.clone();
                async move { store.ping().await.map_err(|_| "unreachable".to_owned()) }.boxed()
            }
        }),
        ReadinessCheck::new("queue", {
            let queue = queue.clone();
            move || {
                let queue = queue.clone();
                async move { queue.ping().await.map_err(|_| "unreachable".to_owned()) }.boxed()
            }
        }),
    ];

    // The model loads in the background so /healthz answers at once; a model that cannot load
    // stops the process (fails start-up) with the loader's message.
    let runs_model = roles.contains(Role::Llm);
    if roles.contains(Role::Gateway)
        && settings.llm.mode == LlmMode::InProcess
        && !roles.contains(Role::Llm)
    {
        anyhow::bail!(
            "llm.mode is in_process, so the gateway role needs the llm role in the same process (or set CARELOOP_LLM__MODE=remote)"
        );
    }
    let shutdown = CancellationToken::new();
    let (model_failed_tx, mut model_failed) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    let mut llm_worker = None;
    let mut llm_service: Option<Arc<dyn careloop_llm_api::LlmService>> = None;
    if runs_model {
        let engine = careloop_llm::EngineHandle::load_in_background(engine_settings(&settings));
        if pool.is_none() {
            llm_service = Some(Arc::new(engine.clone()));
        }
        let waiter = engine.clone();
        let worker_pool = pool.clone();
        let worker_options = worker_options(&settings);
        let stop = shutdown.clone();
        llm_worker = Some(tokio::spawn(async move {
            if let Err(err) = waiter.wait_ready().await {
                let _ = model_failed_tx.send(anyhow::Error::new(err)).await;
                return;
            }
            // Remote mode: serve the Redis pool's jobs once the model is there.
            if let Some(pool) = worker_pool {
                let engine: Arc<dyn careloop_llm_api::LlmService> = Arc::new(waiter);
                if let Err(err) =
                    careloop_llm_redis::run_worker(engine, &pool, worker_options, stop).await
                {
                    let _ = model_failed_tx
                        .send(
                            anyhow::Error::new(err)
                                .context("the LLM worker cannot join the Redis pool"),
                        )
                        .await;
                }
            }
        }));
        checks.push(ReadinessCheck::new("model", move || {
            let state = engine.state();
            async move {
                match state {
                    careloop_llm::LoadState::Ready => Ok(()),
                    careloop_llm::LoadState::Loading => Err("loading".to_owned()),
                    careloop_llm::LoadState::Failed(_) => Err("failed to load".to_owned()),
                }
            }
            .boxed()
        }));
    }

    if let (true, Some(pool)) = (roles.contains(Role::Gateway), &pool) {
        let options = careloop_llm_redis::ClientOptions {
            max_pending: settings.llm.max_queue.max(1),
            ..Default::default()
        };
        let client = careloop_llm_redis::RedisLlmClient::connect(pool, options)
            .await
            .context("cannot reach the LLM worker pool (check CARELOOP_QUEUE__URL)")?;
        llm_service = Some(Arc::new(client.clone()));
        checks.push(ReadinessCheck::new("model", move || {
            let client = client.clone();
            async move {
                match client.workers().await {
                    Ok(workers) if !workers.is_empty() => Ok(()),
                    Ok(_) => Err("no live LLM worker".to_owned()),
                    Err(_) => Err("worker pool unreachable".to_owned()),
                }
            }
            .boxed()
        }));
    }

    if roles.contains(Role::Gateway) && settings.content.import_on_start {
        content::import(&store, &settings.content.dir, settings.demo_mode).await?;
    }
    let conversation = match (roles.contains(Role::Gateway), llm_service) {
        (true, Some(llm)) => Some(conversation_state(&settings, &store, llm).await?),
        _ => None,
    };

    let webchat = conversation
        .as_ref()
        .map(|_| webchat_state(&settings, &store))
        .transpose()
        .context("web chat")?;

    let reminders = if roles.contains(Role::Reminders) {
        {
            let worker = careloop_reminders::run_with(
                queue.clone(),
                store.clone(),
                reminder_settings(&settings)?,
                shutdown.clone().cancelled_owned(),
            );
            Some(tokio::spawn(worker))
        }
    } else {
        None
    };

    let channels = match &conversation {
        Some(conversation) => Some(
            crate::channels::start(
                &settings,
                &store,
                conversation,
                webchat.as_ref().map(|w| w.hub().clone()),
                &shutdown,
            )
            .await
            .context("channels")?,
        ),
        None => None,
    };

    let server_config = ServerConfig {
        host: settings.server.host.clone(),
        port: settings.server.port,
        shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
    };
    let app = Application::build(
        &server_config,
        AppState {
            readiness: Arc::new(checks),
            conversation,
            webchat,
            telegram: channels.as_ref().and_then(|c| c.telegram_webhook.clone()),
            email: channels.as_ref().and_then(|c| c.email_routes.clone()),
            per_ip: Some(careloop_channels::ratelimit::KeyedLimiter::new(
                careloop_channels::ratelimit::quota_per(
                    settings.channels.limits.per_ip_per_minute,
                    Duration::from_secs(60),
                ),
            )),
        },
    )?;
    tracing::info!(host = %server_config.host, port = app.port(), "listening");
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());

    let outcome = tokio::select! {
        signal = shutdown_signal() => signal.map(|name| tracing::info!(signal = name, "shutting down")),
        Some(err) = model_failed.recv() => Err(err.context("the model could not be loaded")),
    };

    shutdown.cancel();
    stop.stop().await;
    server.await.context("server task")?.context("server")?;
    if let Some(reminders) = reminders {
        reminders.await.context("reminders task")??;
    }
    if let Some(llm_worker) = llm_worker {
        llm_worker.await.context("LLM worker task")?;
    }
    for task in channels.map(|c| c.tasks).unwrap_or_default() {
        task.await.context("channel task")?;
    }
    tracing::info!("stopped");
    outcome
}

/// How answers to reminders and missed doses are read (`reminders.*`).
fn adherence_policy(settings: &Settings) -> careloop_adherence::AdherencePolicy {
    let r = &settings.reminders;
    careloop_adherence::AdherencePolicy {
        answer_window: chrono::TimeDelta::minutes(i64::from(r.answer_window_minutes)),
        missed_after: chrono::TimeDelta::minutes(i64::from(r.missed_after_minutes)),
        missed_streak: r.missed_streak,
        snooze: chrono::TimeDelta::minutes(i64::from(r.snooze_minutes)),
    }
}

/// The reminder process: planner, missed-dose sweep and, when email is set up and
/// `reminders.alert_mail` is on, the care team's alert mail.
fn reminder_settings(settings: &Settings) -> anyhow::Result<careloop_reminders::WorkerSettings> {
    let r = &settings.reminders;
    let email = &settings.channels.email;
    let alert_mailer = if r.alert_mail && email.enabled {
        Some(careloop_reminders::alert_mail::AlertMailer {
            email: crate::channels::email_channel(email)?.0,
            dashboard_url: r.dashboard_url.clone(),
        })
    } else {
        None
    };
    Ok(careloop_reminders::WorkerSettings {
        adherence: adherence_policy(settings),
        plan_horizon: chrono::TimeDelta::days(i64::from(r.plan_horizon_days)),
        plan_interval: Duration::from_secs(r.plan_interval_secs),
        alert_mailer,
        sweep: careloop_reminders::sweep::SweepSettings {
            stale_after: Duration::from_secs(r.stale_after_secs),
            ..careloop_reminders::sweep::SweepSettings::default()
        },
        ..careloop_reminders::WorkerSettings::new(settings.queue.concurrency)
    })
}

/// The conversation engine of a gateway: lexicons and reference data from the content folder,
/// lingua's models loaded now (a few seconds, once), the organization of this install.
async fn conversation_state(
    settings: &Settings,
    store: &Store,
    llm: Arc<dyn careloop_llm_api::LlmService>,
) -> anyhow::Result<careloop_gateway::ConversationState> {
    use careloop_conversation::{
        ConversationEngine, EngineSettings, language::Detector, lexicon::Lexicons,
        reference::Reference,
    };
    let dir = &settings.content.dir;
    let lexicons = Lexicons::load_dir(&dir.join("safety"))
        .context("cannot load the safety lexicons (content.dir)")?;
    let reference = Reference::load(dir).context("cannot load content reference data")?;
    let detector = tokio::task::spawn_blocking(Detector::new)
        .await
        .context("loading the language detector")?;
    let organization_id = content::default_organization(store).await?;
    let engine = ConversationEngine::new(
        store.clone(),
        llm,
        lexicons,
        reference,
        Arc::new(detector),
        EngineSettings {
            adherence: adherence_policy(settings),
            ..EngineSettings::default()
        },
    );
    Ok(careloop_gateway::ConversationState {
        engine: Arc::new(engine),
        organization_id,
        store: store.clone(),
    })
}

/// The web chat hub of a gateway: tokens signed with `webchat.signing_secret`, or with the key
/// kept in the data folder (created on first start), and idle sessions evicted in the background.
fn webchat_state(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<careloop_gateway::webchat::WebChatState> {
    use careloop_gateway::webchat::{HubConfig, SigningKey, WebChatHub, WebChatState};
    let config = &settings.webchat;
    let key = match &config.signing_secret {
        Some(secret) => SigningKey::from_secret(secret.expose_secret())?,
        None => SigningKey::load_or_create(&settings.webchat_key_path())?,
    };
    let hub = WebChatHub::new(
        key,
        HubConfig {
            token_ttl: Duration::from_secs(config.token_ttl_secs),
            buffer_events: config.buffer_events,
            idle_ttl: Duration::from_secs(config.idle_ttl_secs),
            max_sessions: config.max_sessions,
        },
    );
    hub.spawn_janitor();
    Ok(WebChatState::new(hub, store.clone()))
}

/// The Redis worker pool of `llm.mode = remote` (`None` in process).
fn llm_pool(settings: &Settings) -> anyhow::Result<Option<careloop_llm_redis::PoolConfig>> {
    if settings.llm.mode != LlmMode::Remote {
        return Ok(None);
    }
    let Some(url) = &settings.queue.url else {
        anyhow::bail!(
            "llm.mode is remote (CARELOOP_LLM__MODE), which needs a Redis queue: set queue.url (CARELOOP_QUEUE__URL=redis://…)"
        );
    };
    Ok(Some(careloop_llm_redis::PoolConfig::new(
        url.expose_secret(),
        settings.queue.namespace.clone(),
    )))
}

fn worker_options(settings: &Settings) -> careloop_llm_redis::WorkerOptions {
    let name = format!("{}-{}", std::process::id(), &uuid_suffix());
    careloop_llm_redis::WorkerOptions::new(name, settings.llm.max_concurrency)
        .with_lease(Duration::from_secs(settings.llm.lease_secs))
}

/// A short random suffix so worker names stay unique across hosts.
fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}

pub(crate) fn engine_settings(settings: &Settings) -> careloop_llm::LlmSettings {
    careloop_llm::LlmSettings {
        model_path: settings.llm.model_path.clone(),
        model_id: Some(settings.llm.model_id.clone()),
        max_concurrent: settings.llm.max_concurrency,
        max_queued: settings.llm.max_queue,
        ..careloop_llm::LlmSettings::default()
    }
}

/// Resolves on SIGINT or SIGTERM with the signal's name.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
