//! The catalog: the application's database, the source of truth for where
//! every blob lives.
//!
//! One [`Catalog`] trait with a Postgres backend (production, many workers,
//! `FOR UPDATE SKIP LOCKED` leases) and a SQLite backend (the embedded
//! default). Both ship embedded migrations that create the `jobs`/`tasks`
//! schema in an empty database and only add coldsweep's own columns and
//! indexes to an existing one.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result};
use crate::source::ArchiveCandidate;

mod postgres;
mod sqlite;

pub use postgres::PgCatalog;
pub use sqlite::SqliteCatalog;

/// Job statuses after which a job's data no longer changes.
pub const TERMINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

/// Status the job marker gives a terminal job whose HTML has all left hot storage.
pub const ARCHIVED_STATUS: &str = "archived";

/// A claim on candidate rows: who holds it and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Worker identity (host + pid + random), recorded on claimed rows.
    pub owner: String,
    /// Rows whose lease (or back-off) ended before this instant are free to
    /// claim; the archiver passes the start of the sweep.
    pub free_before: DateTime<Utc>,
    /// When this claim expires if the worker dies.
    pub until: DateTime<Utc>,
}

/// What happened to a task's HTML, beyond "hot" and "archived".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobState {
    /// In hot storage (possibly already copied to cold, hot copy not yet deleted).
    Hot,
    /// In cold storage only.
    Archived,
    /// Hot bytes disagreed with the catalog; kept hot, not moved again until reset.
    Quarantined,
    /// Missing from both stores.
    Lost,
    /// No HTML recorded for the task.
    None,
}

impl BlobState {
    /// Name as stored in `tasks.html_archive_state` and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Hot => "hot",
            BlobState::Archived => "archived",
            BlobState::Quarantined => "quarantined",
            BlobState::Lost => "lost",
            BlobState::None => "none",
        }
    }
}

/// A `jobs` row, as coldsweep reads and (for demos and tests) writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    /// Primary key.
    pub id: String,
    /// Domain the job crawled.
    pub domain_id: i32,
    /// Owning organisation.
    pub organisation_id: Option<uuid::Uuid>,
    /// `running`, `completed`, `failed`, `cancelled`, `archived`, …
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Completion time, if recorded.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The HTML columns of a `tasks` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskRow {
    /// Primary key.
    pub id: String,
    /// Owning job.
    pub job_id: String,
    /// Hot bucket, NULL once the hot copy is gone.
    pub html_storage_bucket: Option<String>,
    /// Hot key, NULL once the hot copy is gone.
    pub html_storage_path: Option<String>,
    /// Content type of the stored HTML.
    pub html_content_type: Option<String>,
    /// Content encoding of the stored HTML (`gzip`).
    pub html_content_encoding: Option<String>,
    /// Size of the decoded HTML.
    pub html_size_bytes: Option<i64>,
    /// Size of the stored (compressed) bytes.
    pub html_compressed_size_bytes: Option<i64>,
    /// Hex SHA-256 of the decoded HTML.
    pub html_sha256: Option<String>,
    /// When the HTML was captured.
    pub html_captured_at: Option<DateTime<Utc>>,
    /// Cold provider, once archived.
    pub html_archive_provider: Option<String>,
    /// Cold bucket, once archived.
    pub html_archive_bucket: Option<String>,
    /// Cold key, once archived.
    pub html_archive_key: Option<String>,
    /// When the catalog was switched to cold.
    pub html_archived_at: Option<DateTime<Utc>>,
    /// `quarantined` or `lost`; NULL otherwise.
    pub html_archive_state: Option<String>,
    /// Last error or the reason for the state.
    pub html_archive_error: Option<String>,
    /// Failed attempts so far.
    pub html_archive_attempts: i32,
}

impl TaskRow {
    /// Where this row says the HTML is.
    pub fn state(&self) -> BlobState {
        match self.html_archive_state.as_deref() {
            Some("lost") => return BlobState::Lost,
            Some("quarantined") => return BlobState::Quarantined,
            _ => {}
        }
        if self.html_storage_path.is_some() {
            BlobState::Hot
        } else if self.html_archive_key.is_some() {
            BlobState::Archived
        } else {
            BlobState::None
        }
    }
}

/// A job and whether retention keeps its HTML hot, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRetention {
    /// The job.
    pub job: JobRow,
    /// Rank among terminal jobs of its (domain, organisation), newest = 1;
    /// `None` for jobs that are not terminal.
    pub rank: Option<i64>,
    /// Tasks whose HTML is still hot (including quarantined ones).
    pub hot_tasks: i64,
    /// Tasks whose HTML is in cold storage.
    pub archived_tasks: i64,
    /// Quarantined tasks.
    pub quarantined_tasks: i64,
    /// Lost tasks.
    pub lost_tasks: i64,
}

impl JobRetention {
    /// Whether retention lets this job's HTML move, given `retention_jobs`.
    pub fn eligible(&self, retention_jobs: u32) -> bool {
        matches!(self.rank, Some(rank) if rank > i64::from(retention_jobs))
    }
}

/// Catalog-wide counts for `coldsweep status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogStatus {
    /// Tasks with HTML still hot (not quarantined or lost).
    pub hot: i64,
    /// Tasks switched to cold whose hot copy is not yet deleted.
    pub pending_hot_delete: i64,
    /// Tasks archived to cold.
    pub archived: i64,
    /// Quarantined tasks.
    pub quarantined: i64,
    /// Lost tasks.
    pub lost: i64,
    /// Tasks currently claimed by a live lease.
    pub leased: i64,
    /// Tasks whose last attempt failed (still hot, will be retried).
    pub failing: i64,
    /// Jobs marked `archived`.
    pub archived_jobs: i64,
}

/// Database access coldsweep needs, identical in meaning on every backend
/// (proven by the catalog conformance suite).
#[async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<()>;

    /// Fail with [`ErrorKind::InvalidInput`] naming `coldsweep migrate` when
    /// migrations are missing.
    async fn check_migrations(&self) -> Result<()>;

    /// The job marker: terminal jobs whose every task's HTML has left hot
    /// storage, at least one archived, become `archived`. Returns how many.
    async fn mark_archived_jobs(&self) -> Result<u64>;

    /// Claim up to `limit` task-HTML candidates beyond `retention_jobs`,
    /// skipping rows under a live lease (and, on Postgres, rows locked by
    /// another claim right now).
    async fn claim_task_html(
        &self,
        retention_jobs: u32,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<ArchiveCandidate>>;

    /// Record the cold location; the hot reference stays until [`Catalog::clear_hot`].
    async fn record_archived(
        &self,
        task_id: &str,
        provider: &str,
        bucket: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;

    /// Clear the hot reference (after the hot delete) and the lease.
    async fn clear_hot(&self, task_id: &str) -> Result<()>;

    /// Set `html_archive_state` (`lost` / `quarantined`) with a reason; clears the lease.
    async fn mark_state(&self, task_id: &str, state: BlobState, reason: &str) -> Result<()>;

    /// Release a claim after a failure: count the attempt, keep the error, and
    /// hide the row from claims until `retry_at` (set `html_lease_expires_at`
    /// to it, owner NULL) so a failing blob backs off instead of spinning.
    async fn release(&self, task_id: &str, error: &str, retry_at: DateTime<Utc>) -> Result<()>;

    /// Every job with its retention rank and task counts, newest first per group.
    async fn job_retention(&self) -> Result<Vec<JobRetention>>;

    /// Catalog-wide counts.
    async fn status(&self, now: DateTime<Utc>) -> Result<CatalogStatus>;

    /// One task's HTML columns.
    async fn task(&self, task_id: &str) -> Result<Option<TaskRow>>;

    /// Tasks by state (for reports), at most `limit`.
    async fn tasks_in_state(&self, state: BlobState, limit: usize) -> Result<Vec<TaskRow>>;

    /// Insert a job (demo data and tests).
    async fn insert_job(&self, job: &JobRow) -> Result<()>;

    /// Insert a task (demo data and tests).
    async fn insert_task(&self, task: &TaskRow) -> Result<()>;
}

/// Open the catalog at `url`: `postgres://…`/`postgresql://…` or `sqlite:…`.
pub async fn connect(url: &str) -> Result<Arc<dyn Catalog>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgCatalog::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        // Creates the database file if it is missing.
        Ok(Arc::new(SqliteCatalog::connect(url).await?))
    } else {
        Err(Error::new(
            ErrorKind::InvalidInput,
            "DATABASE_URL: expected postgres://…, postgresql://… or sqlite:…",
        ))
    }
}

/// Map a sqlx error to a kind, in one place for both backends.
pub(crate) fn classify(err: sqlx::Error) -> Error {
    use sqlx::Error as E;
    let kind = match &err {
        E::RowNotFound => ErrorKind::NotFound,
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => {
            ErrorKind::Transient
        }
        E::Configuration(_) => ErrorKind::InvalidInput,
        E::Database(db) => match db.code().as_deref() {
            // Postgres: serialization failure, deadlock, admin shutdown, cannot connect now.
            Some("40001" | "40P01" | "57P01" | "57P02" | "57P03") => ErrorKind::Transient,
            // Postgres: insufficient privilege / invalid password.
            Some("42501" | "28P01" | "28000") => ErrorKind::PermissionDenied,
            // SQLite: busy / locked.
            Some("5" | "6" | "261" | "517") => ErrorKind::Transient,
            _ => ErrorKind::Unexpected,
        },
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, "catalog").with_source(err)
}
