use std::time::Duration;

use careloop_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::StoreError;

/// A handle on the database; cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Store {
    /// Connects to `sqlite:<path>` (the file and its directory are created if missing; WAL,
    /// foreign keys and a 5 s busy timeout are enabled), `sqlite::memory:`, or `postgres://...`.
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut options = ConnectOptions::new(url.to_owned());
        // sqlx would log every statement at info level; our own spans say what matters.
        options.sqlx_logging(false);
        if is_sqlite(url) {
            let memory = is_sqlite_memory(url);
            if !memory {
                let parsed: SqliteConnectOptions =
                    url.parse().map_err(|_| StoreError::InvalidUrl)?;
                if let Some(parent) = parsed.get_filename().parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent)?;
                }
            }
            options.map_sqlx_sqlite_opts(move |o| {
                let o = o
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                if memory {
                    o
                } else {
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                }
            });
            if memory {
                // One connection that never closes: an in-memory database lives only as long as it.
                options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None::<Duration>)
                    .max_lifetime(None::<Duration>);
            } else {
                options.max_connections(4);
            }
        }
        let db = Database::connect(options).await?;
        tracing::debug!(
            backend = backend_name(db.get_database_backend()),
            "database connected"
        );
        Ok(Store { db })
    }

    /// Wraps an existing connection (e.g. one opened by a test or a tool).
    pub fn from_connection(db: DatabaseConnection) -> Store {
        Store { db }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.db, None)
            .await
            .map_err(StoreError::Migration)?;
        tracing::info!(backend = self.backend(), "database migrated");
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// The underlying connection, for tools that need raw access. Repository methods are the
    /// supported way to read and write data: they enforce tenant scoping and immutability.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        backend_name(self.db.get_database_backend())
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a read-then-write transaction cannot fail to upgrade its lock.
    pub(crate) async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = match self.db.get_database_backend() {
            DbBackend::Sqlite => TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            },
            _ => TransactionOptions::default(),
        };
        Ok(self.db.begin_with_options(options).await?)
    }
}

fn backend_name(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    }
}
