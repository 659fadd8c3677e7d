//! Storage for Vitalis: one [`Store`] whose methods run the same portable SQL on embedded
//! SQLite or on PostgreSQL. Dialects differ only in the migration files; queries use `$n`
//! placeholders, which both backends accept, and runtime `query_as` (no compile-time DB).
//!
//! Every method that touches tenant data takes the project id first, so a query can never
//! reach across projects by forgetting a filter.

mod clients;
mod idps;
mod keys;
mod projects;
mod refresh;
mod revocations;
mod user_keys;
mod users;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use clients::{ClientKind, ClientRecord, NewClient};
pub use idps::IdentityProviderRecord;
pub use keys::SigningKeyRecord;
pub use projects::{OrgRecord, ProjectRecord};
pub use refresh::{AccessTokenRef, RefreshFamilyRecord, RefreshOp, RefreshOutcome, RefreshTokenState};
pub use revocations::{RevocationKind, RevocationRecord};
pub use user_keys::UserKeyRecord;
pub use users::UserRecord;
pub use webhooks::{AttemptOutcome, AttemptRecord, DeliveryRecord, NewDelivery, OutboxEventRecord, WebhookEndpointRecord};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// What went wrong in the store, classified so callers decide what it means to the client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key already holds this value (the name says which).
    #[error("conflict: {0} already exists")]
    Conflict(&'static str),
    /// A row the caller assumed exists does not.
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("unsupported database url (expected sqlite:... or postgres://...)")]
    UnsupportedUrl,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique violation (same `ErrorKind` on SQLite and PostgreSQL) to `Conflict(what)`.
    fn unique(err: sqlx::Error, what: &'static str) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => StoreError::Conflict(what),
            _ => StoreError::Db(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Pool settings; the defaults suit one node on a 2-core machine.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: Duration::from_secs(5) }
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool backs the store. The body is compiled
/// once per backend, so one SQL string and one row type serve both.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Poked after a transaction that wrote outbox events commits, so this process's
    /// dispatcher wakes at once (other processes find the events by polling).
    outbox_signal: std::sync::Arc<tokio::sync::Notify>,
}

/// Connection pool figures for metrics.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Opens `url` (`sqlite:path`, `sqlite::memory:` or `postgres://...`). SQLite files are
    /// created if missing and run in WAL mode with foreign keys on and a busy timeout.
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                PgPoolOptions::new().max_connections(options.max_connections).acquire_timeout(options.acquire_timeout).connect(url).await?;
            Backend::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Backend::Sqlite(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(Self { backend, outbox_signal: Default::default() })
    }

    /// Applies pending migrations (idempotent; PostgreSQL takes an advisory lock so several
    /// nodes starting together migrate once).
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// Wakes the dispatcher: outbox events were just committed.
    pub fn signal_outbox(&self) {
        self.outbox_signal.notify_one();
    }

    /// Resolves when outbox events were committed since the last wake-up.
    pub async fn outbox_written(&self) {
        self.outbox_signal.notified().await;
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Round trip to the database, for readiness checks.
    pub async fn ping(&self) -> StoreResult<()> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        with_pool!(self, pool => PoolStats {
            size: pool.size(),
            idle: pool.num_idle() as u32,
            max: pool.options().get_max_connections(),
        })
    }

    /// Waits for in-flight queries and closes every connection (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }
}
