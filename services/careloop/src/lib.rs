//! The `careloop` command line: `serve`, `migrate`, `content`.
//!
//! Thin by design: it reads settings, then wires the libraries together. Which parts a process runs
//! is decided by `--roles`; storage and queue are decided by settings alone.

mod content;
mod roles;
mod serve;

use std::path::PathBuf;

use anyhow::Context;
use careloop_config::{LogFormat, Settings};
use clap::{Parser, Subcommand};

pub use roles::{Role, Roles};

#[derive(Debug, Parser)]
#[command(name = "careloop", version, about = "Patient education and medication reminders")]
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
        Command::Migrate { action } => migrate(&settings, action.unwrap_or(MigrateAction::Up)).await,
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
                content::import(&store, &dir, settings.demo_mode).await.map(|_| ())
            }
        },
    }
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
