//! The `careloop` command line: `serve`, `migrate`, `content`.
//!
//! Thin by design: it reads settings, then wires the libraries together. Which parts a process runs
//! is decided by `--roles`; storage and queue are decided by settings alone.

mod campaign_cli;
mod channels;
mod content;
mod eval;
mod roles;
mod schedule_cli;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use careloop_config::{LogFormat, Settings};
use clap::{Parser, Subcommand};

pub use roles::{Role, Roles};

#[derive(Debug, Parser)]
#[command(
    name = "careloop",
    version,
    about = "Patient education and medication reminders"
)]
pub struct Cli {
    /// A TOML settings file; `CARELOOP_*` variables override it.
    #[arg(long, global = true, env = "CARELOOP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run careloop: every role in one process by default (the embedded mode).
    Serve {
        /// Which parts to run: `all`, or a list of gateway, llm, reminders.
        #[arg(long, default_value = "all")]
        roles: Roles,
    },
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Clinician content files.
    Content {
        #[command(subcommand)]
        action: ContentAction,
    },
    /// Local model files.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Campaigns: create from a file, preview, start, pause, resume, cancel, progress.
    Campaign {
        #[command(subcommand)]
        action: campaign_cli::CampaignAction,
    },
    /// Patients: channel enrolment, dates campaigns are relative to.
    Patient {
        #[command(subcommand)]
        action: PatientAction,
    },
    /// Medication schedules: add, edit, list.
    Schedule {
        #[command(subcommand)]
        action: schedule_cli::ScheduleAction,
    },
    /// Measure the conversation engine on the labelled sets (prints Markdown for BENCHMARKS.md).
    Eval {
        #[command(subcommand)]
        action: EvalAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalAction {
    /// Triage and retrieval on the labelled sets, latency of the non-model path, and with
    /// `--with-model` the share of model answers that pass the checks.
    Conversation {
        /// Also answer the labelled questions with the configured model (minutes on a CPU).
        #[arg(long)]
        with_model: bool,
        /// Answer at most this many questions with the model.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Rewrite a GGUF into the quantization the CPU engine runs fastest (Q4_1/Q5_x → Q8_0),
    /// keeping the original. Does nothing when the output is already up to date.
    Prepare {
        /// The source GGUF (default: the model fetched by `./careloop.sh setup`).
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        input: PathBuf,
        /// Where to write the prepared model (default: the input's name with `Q8_0`).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Roll back every migration.
    Down,
    /// List migrations and whether each is applied.
    Status,
    /// Drop everything and apply every migration again.
    Fresh,
}

#[derive(Debug, Subcommand)]
pub enum PatientAction {
    /// Print a one-time enrolment code for a patient, and the Telegram deep link that uses it
    /// (`t.me/<bot>?start=<code>`): the first chat that opens it is linked to the patient.
    EnrolCode {
        /// The patient's id.
        #[arg(long)]
        patient: String,
        /// Days the code stays valid.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The bot's user name, to print the deep link.
        #[arg(long)]
        bot: Option<String>,
    },
    /// Set a date campaign steps may be relative to (`discharge_date`), and schedule the
    /// patient's steps in running campaigns.
    SetDate {
        /// The patient's id.
        #[arg(long)]
        patient: String,
        /// The date's name (a-z, 0-9, `_`, `-`), e.g. `discharge_date`.
        #[arg(long)]
        field: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
}

/// Input a person can fix (a bad file, an unknown id): printed as it is, and the process exits
/// with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

#[derive(Debug, Subcommand)]
pub enum ContentAction {
    /// Validate content files and list every problem.
    Check {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load content files into the database; unchanged files are skipped.
    Import {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref()).context("settings")?;
    careloop_telemetry::init(settings.log.format == LogFormat::Json, &settings.log.filter)?;
    match cli.command {
        Command::Serve { roles } => serve::serve(settings, roles).await,
        Command::Model {
            action: ModelAction::Prepare { input, output },
        } => {
            let output = output.unwrap_or_else(|| prepared_name(&input));
            model_prepare(&input, &output)
        }
        Command::Eval {
            action: EvalAction::Conversation { with_model, limit },
        } => {
            let llm: Option<std::sync::Arc<dyn careloop_llm_api::LlmService>> = if with_model {
                let engine = careloop_llm::EngineHandle::load_in_background(
                    serve::engine_settings(&settings),
                );
                engine.wait_ready().await?;
                Some(std::sync::Arc::new(engine))
            } else {
                None
            };
            let report = eval::conversation(&settings, llm, limit).await?;
            std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes())?;
            Ok(())
        }
        Command::Patient {
            action: PatientAction::EnrolCode { patient, days, bot },
        } => enrol_code(&settings, &patient, days, bot.as_deref()).await,
        Command::Patient {
            action:
                PatientAction::SetDate {
                    patient,
                    field,
                    date,
                },
        } => campaign_cli::set_date(&settings, &patient, &field, &date).await,
        Command::Campaign { action } => campaign_cli::run(&settings, action).await,
        Command::Schedule { action } => schedule_cli::run(&settings, action).await,
        Command::Migrate { action } => {
            migrate(&settings, action.unwrap_or(MigrateAction::Up)).await
        }
        Command::Content { action } => match action {
            ContentAction::Check { dir } => {
                let dir = dir.unwrap_or(settings.content.dir);
                let docs = content::check(&dir)?;
                tracing::info!(files = docs, "content is valid");
                Ok(())
            }
            ContentAction::Import { dir } => {
                let store = serve::open_store(&settings).await?;
                store.migrate().await.context("migrations")?;
                let dir = dir.unwrap_or_else(|| settings.content.dir.clone());
                content::import(&store, &dir, settings.demo_mode)
                    .await
                    .map(|_| ())
            }
        },
    }
}

async fn enrol_code(
    settings: &Settings,
    patient: &str,
    days: u32,
    bot: Option<&str>,
) -> anyhow::Result<()> {
    let patient: careloop_core::PatientId = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    if !(1..=90).contains(&days) {
        anyhow::bail!("--days: must be 1-90");
    }
    let store = serve::open_store(settings).await?;
    store.migrate().await.context("migrations")?;
    let org = content::default_organization(&store).await?;
    let expires = chrono::Utc::now() + chrono::Duration::days(i64::from(days));
    let (_, code) = store
        .enrolment_codes()
        .create(org, patient, expires)
        .await
        .context("--patient: no such patient in this organization")?;
    let mut out = format!(
        "code: {}\nexpires: {}\n",
        code.as_str(),
        expires.to_rfc3339()
    );
    if let Some(bot) = bot {
        out.push_str(&format!(
            "telegram: https://t.me/{}?start={}\n",
            bot.trim_start_matches('@'),
            code.as_str()
        ));
    }
    std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes())?;
    Ok(())
}

/// `models/X.Q4_1.gguf` → `models/X.Q8_0.gguf`; any other name gets `.Q8_0` before `.gguf`.
fn prepared_name(input: &std::path::Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = match stem.rsplit_once('.') {
        Some((base, quant)) if quant.starts_with('Q') || quant.starts_with('q') => base.to_owned(),
        _ => stem,
    };
    input.with_file_name(format!("{base}.Q8_0.gguf"))
}

fn model_prepare(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    match careloop_llm::prepare_if_needed(input, output)? {
        careloop_llm::Prepared::UpToDate {
            output,
            output_sha256,
        } => {
            tracing::info!(output = %output.display(), sha256 = %output_sha256, "prepared model already up to date");
        }
        careloop_llm::Prepared::Written(report) => {
            tracing::info!(
                source = %report.source.display(),
                output = %report.output.display(),
                converted = ?report.converted,
                kept = report.kept,
                sha256 = %report.output_sha256,
                "model prepared"
            );
        }
    }
    Ok(())
}

async fn migrate(settings: &Settings, action: MigrateAction) -> anyhow::Result<()> {
    use careloop_migrations::{Migrator, MigratorTrait};
    let store = serve::open_store(settings).await?;
    let db = store.connection();
    match action {
        MigrateAction::Up => Migrator::up(db, None).await?,
        MigrateAction::Down => Migrator::down(db, None).await?,
        MigrateAction::Status => Migrator::status(db).await?,
        MigrateAction::Fresh => Migrator::fresh(db).await?,
    }
    tracing::info!(action = ?action, backend = store.backend(), "migrations done");
    Ok(())
}
