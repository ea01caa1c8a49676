use careloop_core::{ParseError, ReviewState};
use sea_orm::{DbErr, SqlErr};

/// Everything that can go wrong in the store. No variant carries personal data: names, addresses
/// and message text never appear in an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row does not exist, or it belongs to another organization (the two are deliberately
    /// indistinguishable).
    #[error("{entity} not found")]
    NotFound { entity: &'static str },

    /// A uniqueness rule was violated (a slug, an email, a channel address, ...).
    #[error("conflict: {what} already exists")]
    Conflict { what: &'static str },

    /// A stored value could not be parsed back into its domain type.
    #[error("corrupt value in {table}.{column}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
    },

    /// The review workflow does not allow this move.
    #[error("a content version cannot move from {from} to {to}")]
    InvalidTransition { from: ReviewState, to: ReviewState },

    /// An input was rejected before reaching the database.
    #[error(transparent)]
    Invalid(#[from] ParseError),

    /// Hashing or checking a password failed for a reason other than a wrong password.
    #[error("password hashing failed")]
    PasswordHash,

    /// The database URL could not be understood (the URL itself is not repeated: it may hold a
    /// password).
    #[error("invalid database URL")]
    InvalidUrl,

    /// The SQLite database directory could not be created.
    #[error("could not prepare the database directory: {0}")]
    Io(#[from] std::io::Error),

    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[source] DbErr),

    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`]; any other error unchanged.
    pub(crate) fn conflict_or_db(err: DbErr, what: &'static str) -> StoreError {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict { what },
            _ => StoreError::Database(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
