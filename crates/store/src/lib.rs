//! Persistence for Switchyard over SQLite (the embedded default) and
//! PostgreSQL, through one set of repository methods.
//!
//! Every query is written once with `$n` placeholders, which both drivers
//! accept, and run on whichever pool the store holds (see [`on_pool!`]). Rows
//! use only types both back-ends decode the same way (text, i64, f64, bool);
//! times are milliseconds since the epoch.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

mod api_keys;
mod call_cache;
mod calls;
mod events;
mod loads;
mod orgs;
mod recordings;
mod sealed;
mod telephony;
mod wal;
mod webhooks;
mod writer;

pub use api_keys::{ApiKeyAuthRow, NewApiKey};
pub use calls::{
    CallFilter, CallPatch, CallSort, ClaimedCall, DialStart, IDEMPOTENCY_TTL_MS, IdempotencyRecord,
    NewCall, Page, SortOrder,
};
pub use events::{NewEvent, StoredEvent};
pub use loads::UpsertOutcome;
pub use orgs::{NewUser, UserAuthRow};
pub use recordings::{CompletedRecording, DueRecording, StoredRecording};
pub use sealed::{SealError, SecretKeys};
pub use telephony::{
    InboundRoute, NewPhoneNumber, NewSipTrunk, PhoneNumberPatch, SipTrunkPatch, TrunkRoute,
};
pub use webhooks::{
    AttemptOutcome, AttemptResult, ClaimedAttempt, DispatchSummary, InterruptedAttempt,
    NewWebhookEndpoint, RecordSummary, WebhookEndpointPatch,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint: the string names what collided.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The row changed under us (a compare-and-set lost).
    #[error("state changed concurrently")]
    Stale,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Sealed(#[from] SealError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database. Cheap to clone (pools are shared).
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// SQLite has one writer at a time. Queuing writers here, in order,
    /// avoids SQLite's busy handler, whose sleeps make long latency tails.
    sqlite_writer: std::sync::Arc<writer::SqliteWriter>,
    /// SQLite only, when this process owns the file (see `call_cache`).
    call_cache: Option<std::sync::Arc<call_cache::CallCache>>,
    /// Seals and opens trunk passwords and webhook secrets (see `sealed`).
    secrets: Option<std::sync::Arc<SecretKeys>>,
    /// Notified after every write this process commits (see [`Store::written`]).
    written: std::sync::Arc<tokio::sync::Notify>,
    /// SQLite files: checkpoints the WAL while any clone of the store lives.
    _checkpointer: Option<std::sync::Arc<wal::Checkpointer>>,
}

/// Runs `$body` with `$pool` bound to the concrete pool; the body is compiled
/// once per back-end, so each runs on its native driver.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite($pool) => $body,
            $crate::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Like [`on_pool!`], for a single write statement: on SQLite it first
/// takes the in-process writer lock, so every writer queues in one place.
macro_rules! on_writer {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite($pool) => {
                let _writer = $store
                    .sqlite_writer
                    .turn(concat!(module_path!(), ":", line!()))
                    .await;
                let result = $body;
                $store.after_write();
                result
            }
            $crate::Db::Postgres($pool) => {
                let result = $body;
                $store.written.notify_one();
                result
            }
        }
    };
}
pub(crate) use on_writer;

/// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`, so two
/// writers queue on the busy timeout instead of failing a lock upgrade.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite(pool) => {
                let _writer = $store
                    .sqlite_writer
                    .turn(concat!(module_path!(), ":", line!()))
                    .await;
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                // An early `return` (error, nothing committed) skips the hook, as it should.
                #[allow(clippy::let_unit_value)]
                let result = $body;
                $store.after_write();
                result
            }
            $crate::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                #[allow(clippy::let_unit_value)]
                let result = $body;
                $store.written.notify_one();
                result
            }
        }
    };
}
pub(crate) use write_tx;

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// Binds every value of `$binds` to `$query` in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut q = $query;
        for b in $binds {
            q = match b {
                $crate::Bind::Text(s) => q.bind(s.clone()),
                $crate::Bind::OptText(s) => q.bind(s.clone()),
                $crate::Bind::Int(i) => q.bind(*i),
                $crate::Bind::Bool(b) => q.bind(*b),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite: take the file's owner lock and cache calls in memory. For the
    /// server process; tools that run beside it (admin) leave it off.
    pub own_sqlite_file: bool,
    /// The keys of secrets at rest. Without them the store still works,
    /// but writing a trunk password or a webhook secret fails
    /// ([`SealError::NoKey`]), as does reading a sealed one.
    pub secrets: Option<std::sync::Arc<SecretKeys>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            own_sqlite_file: false,
            secrets: None,
        }
    }
}

impl Store {
    /// Connects to `sqlite:…` or `postgres://…`. A SQLite file (and its
    /// directory) is created if missing.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect(url)
                .await?;
            return Ok(Self {
                db: Db::Postgres(pool),
                sqlite_writer: Default::default(),
                call_cache: None,
                secrets: options.secrets.clone(),
                written: Default::default(),
                _checkpointer: None,
            });
        }
        let path_part = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let file = path_part.split('?').next().unwrap_or_default();
        if !file.is_empty()
            && file != ":memory:"
            && let Some(dir) = std::path::Path::new(file).parent()
            && !dir.as_os_str().is_empty()
        {
            private_dir(dir).map_err(sqlx::Error::Io)?;
        }
        if !file.is_empty() && file != ":memory:" {
            // Made here, for its user only, before SQLite creates it (0644
            // under the usual umask): its WAL and shared-memory files take
            // the database file's permissions.
            create_private_file(std::path::Path::new(file)).map_err(sqlx::Error::Io)?;
        }
        // Owning the file first: a second server must fail before it touches anything.
        let call_cache = if options.own_sqlite_file && !file.is_empty() && file != ":memory:" {
            Some(std::sync::Arc::new(
                call_cache::CallCache::own(std::path::Path::new(file)).map_err(sqlx::Error::Io)?,
            ))
        } else {
            None
        };
        let connect = SqliteConnectOptions::from_str(&format!("sqlite:{path_part}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-16000")
            // Commits never checkpoint (see `wal`); the log file is cut back
            // to this size after each restart.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(1)
            // A connection to a local file does not go stale; the ping would
            // be one more hop to its thread on every query, writes included.
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let checkpointer = (!file.is_empty() && file != ":memory:")
            .then(|| std::sync::Arc::new(wal::Checkpointer::start(connect)));
        Ok(Self {
            db: Db::Sqlite(pool),
            sqlite_writer: Default::default(),
            call_cache,
            secrets: options.secrets.clone(),
            written: Default::default(),
            _checkpointer: checkpointer,
        })
    }

    /// Every write to SQLite ends here (see `call_cache`).
    pub(crate) fn after_write(&self) {
        if let Some(cache) = &self.call_cache {
            cache.written();
        }
        self.written.notify_one();
    }

    /// Wakes a waiter after each write this process commits (one stored
    /// wake-up if nobody waits yet), so that a worker which polls the
    /// database (webhook fan-out) can start at once instead of at its next
    /// poll. Writes by other processes still wait for the poll.
    pub fn written(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.written.clone()
    }

    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the back-end's migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
pub(crate) fn conflict_on_unique(err: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return StoreError::Conflict(what.to_owned());
    }
    StoreError::Database(err)
}

pub(crate) fn parse_uuid(s: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("bad uuid {s:?}")))
}

/// Creates `dir` (and parents) as 0700 where it does not exist yet.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates an empty `file` as 0600 unless it exists.
fn create_private_file(file: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn parse_json(s: Option<&str>) -> Result<Option<serde_json::Value>> {
    s.map(|s| serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}
