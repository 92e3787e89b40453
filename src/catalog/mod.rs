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
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{ArchiveCandidate, ArchivedAt};
use crate::rules::{self, JobBytes, Rules, Scope, Standing, Standings};

/// The terminal statuses as an SQL list, for both backends' queries; kept
/// equal to [`TERMINAL_STATUSES`] by a unit test.
macro_rules! terminal_list {
    () => {
        "('completed', 'failed', 'cancelled')"
    };
}

/// `INSERT INTO tasks` naming every [`TaskRow`] column in field order, the
/// order [`bind_task`] binds them; `$values` is the backend's placeholder list.
macro_rules! insert_task_sql {
    ($values:literal) => {
        concat!(
            "INSERT INTO tasks (
                id, job_id, html_storage_bucket, html_storage_path, html_content_type,
                html_content_encoding, html_size_bytes, html_compressed_size_bytes, html_sha256,
                html_captured_at, html_archive_provider, html_archive_bucket, html_archive_key,
                html_archived_at, html_archive_state, html_archive_error, html_archive_attempts,
                html_missing_since, html_lease_expires_at)
             VALUES ",
            $values
        )
    };
}

pub mod dynamic;
pub mod fixtures;
pub mod ident;
#[cfg(feature = "postgres")]
mod postgres;
pub mod schema;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

// The model types this trait speaks, where embedders have always found them.
pub use crate::model::{BlobState, Claim, Fence, Lease, Unreadable, Verdict};
pub use dynamic::{Dialect, SqlValue, Statement, TextRow};
pub use ident::{Condition, Ident, TableName};
#[cfg(feature = "postgres")]
pub use postgres::PgCatalog;
pub use schema::{Column, TableSchema, TypeFamily};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCatalog;

/// Job statuses after which a job's data no longer changes.
pub const TERMINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

/// Status the job marker gives a terminal job whose HTML has all left hot storage.
pub const ARCHIVED_STATUS: &str = "archived";

/// A `jobs` row, as coldsweep reads and (for demos and tests, through
/// [`fixtures`]) writes it.
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

/// The HTML columns of a `tasks` row (each field read from the column of
/// its name).
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
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
    /// `quarantined`, `missing` or `lost`; NULL otherwise.
    pub html_archive_state: Option<String>,
    /// Last error or the reason for the state.
    pub html_archive_error: Option<String>,
    /// Failed attempts so far.
    pub html_archive_attempts: i32,
    /// When the blob was first seen missing from both stores (state `missing` or `lost`).
    pub html_missing_since: Option<DateTime<Utc>>,
    /// End of the row's lease (owned) or back-off (ownerless): when a
    /// failing or missing blob is tried again.
    pub html_lease_expires_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    /// The row as the integrity checks see a blob stored at
    /// `bucket`/`key`: its digest, sizes and encoding (no claim, no lease).
    pub(crate) fn as_candidate(&self, bucket: &str, key: &str) -> ArchiveCandidate {
        ArchiveCandidate {
            task_id: self.id.clone(),
            job_id: self.job_id.clone(),
            storage_bucket: bucket.to_owned(),
            storage_path: key.to_owned(),
            sha256: self.html_sha256.clone(),
            compressed_size_bytes: self.html_compressed_size_bytes,
            size_bytes: self.html_size_bytes,
            content_type: self.html_content_type.clone(),
            content_encoding: self.html_content_encoding.clone(),
            archived_at: None,
            attempts: self.html_archive_attempts,
            claims: 0,
            missing_since: self.html_missing_since,
            digest: None,
            cold_name: None,
        }
    }

    /// Where this row says the HTML is.
    pub fn state(&self) -> BlobState {
        match self.html_archive_state.as_deref() {
            Some("lost") => return BlobState::Lost,
            Some("missing") => return BlobState::Missing,
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
    /// Stored bytes of the hot tasks a sweep may move (hot, neither
    /// quarantined nor lost), where the catalog records their size.
    pub hot_bytes: i64,
}

impl JobRetention {
    /// Whether retention lets this job's HTML move, given `retention_jobs`.
    pub fn eligible(&self, retention_jobs: u32) -> bool {
        matches!(self.rank, Some(rank) if rank > i64::from(retention_jobs))
    }
}

/// Catalog-wide counts for `coldsweep status` (each field read from the
/// column of its name).
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogStatus {
    /// Tasks with HTML still hot (not quarantined or lost).
    pub hot: i64,
    /// Tasks switched to cold whose hot copy is not yet deleted.
    pub pending_hot_delete: i64,
    /// Tasks archived to cold.
    pub archived: i64,
    /// Quarantined tasks.
    pub quarantined: i64,
    /// Tasks seen missing from both stores once (suspected, re-checked later).
    pub missing: i64,
    /// Lost tasks.
    pub lost: i64,
    /// Tasks currently claimed by a live lease.
    pub leased: i64,
    /// Tasks whose last attempt failed (still hot, will be retried).
    pub failing: i64,
    /// Failing tasks whose back-off has not ended: no sweep takes them before it does.
    pub waiting: i64,
    /// Jobs marked `archived`.
    pub archived_jobs: i64,
}

/// Which rows `coldsweep reset` puts back into play. A row matches when it
/// is in one of `states` (any of them when empty), and belongs to one of
/// `jobs` and is one of `tasks` where those are given. Rows under a live
/// lease (a worker is moving them) never match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetFilter {
    /// States to reset; empty means all of them.
    pub states: Vec<ResetState>,
    /// Only rows of these jobs (all jobs when empty).
    pub jobs: Vec<String>,
    /// Only these tasks (all tasks when empty).
    pub tasks: Vec<String>,
}

/// A state [`ResetFilter`] can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetState {
    /// Recorded `lost`.
    Lost,
    /// Recorded `missing` (suspected lost).
    Missing,
    /// Recorded `quarantined`.
    Quarantined,
    /// Still hot with a recorded failure and back-off.
    Failing,
}

impl ResetState {
    /// Every state, in the order `coldsweep reset --help` lists them.
    pub const ALL: [ResetState; 4] = [
        ResetState::Lost,
        ResetState::Missing,
        ResetState::Quarantined,
        ResetState::Failing,
    ];

    /// `lost`, `missing`, `quarantined` or `failing`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetState::Lost => "lost",
            ResetState::Missing => "missing",
            ResetState::Quarantined => "quarantined",
            ResetState::Failing => "failing",
        }
    }

    /// The SQL condition on `tasks` for this state (fixed text, no input).
    fn condition(self) -> &'static str {
        match self {
            ResetState::Lost => "html_archive_state = 'lost'",
            ResetState::Missing => "html_archive_state = 'missing'",
            ResetState::Quarantined => "html_archive_state = 'quarantined'",
            ResetState::Failing => {
                "(html_archive_state IS NULL AND html_storage_path IS NOT NULL
                  AND html_archive_error IS NOT NULL)"
            }
        }
    }
}

impl std::str::FromStr for ResetState {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ResetState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "state {s:?}: expected one of {}",
                        ResetState::ALL.map(ResetState::as_str).join(", ")
                    ),
                )
            })
    }
}

impl ResetFilter {
    /// The `WHERE` clause for this filter, with the backend's placeholders
    /// for the job and task lists (`jobs_param`, `tasks_param`: the SQL
    /// that turns one bound list into a set, e.g. `ANY($1)`), and the live
    /// lease test against `now_param`.
    fn where_clause(&self, jobs_param: &str, tasks_param: &str, live_lease: &str) -> String {
        let states = if self.states.is_empty() {
            &ResetState::ALL[..]
        } else {
            &self.states[..]
        };
        let mut clause = format!(
            "({}) AND NOT ({live_lease})",
            states
                .iter()
                .map(|s| s.condition())
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        if !self.jobs.is_empty() {
            clause.push_str(&format!(" AND job_id {jobs_param}"));
        }
        if !self.tasks.is_empty() {
            clause.push_str(&format!(" AND id {tasks_param}"));
        }
        clause
    }
}

/// What one [`Catalog::record_restored_many`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Tasks switched back to their hot location (in no particular order);
    /// a row missing from them was no longer archived under this worker's
    /// lease and was left as it was.
    pub tasks: Vec<String>,
    /// Jobs of those tasks whose status came back from `archived` (by id).
    pub jobs_reopened: Vec<String>,
}

/// A hot bucket the catalog references, with one of its hot objects (for
/// `coldsweep check`, which looks that object up in the hot store).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HotBucket {
    /// `html_storage_bucket`.
    pub bucket: String,
    /// Hot tasks (as counted by [`CatalogStatus::hot`]) in this bucket.
    pub tasks: i64,
    /// The smallest (bytewise) `html_storage_path` of those tasks.
    pub sample_path: String,
}

/// Blobs and bytes in one bucket ([`Catalog::bucket_usage`]), read from
/// the columns of their names.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct BucketBytes {
    /// `html_archive_provider` for a cold bucket; `None` for a hot one.
    pub provider: Option<String>,
    /// The bucket; `None` where rows name none.
    pub bucket: Option<String>,
    /// Rows in it.
    pub blobs: i64,
    /// Sum of their `html_compressed_size_bytes` (a NULL size counts 0).
    pub bytes: i64,
    /// Rows whose size the catalog does not record.
    pub blobs_without_size: i64,
}

/// Blobs and bytes per hot and cold bucket, each list by bucket (bytewise).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketUsage {
    /// Per `html_storage_bucket`.
    pub hot: Vec<BucketBytes>,
    /// Per (`html_archive_provider`, `html_archive_bucket`).
    pub cold: Vec<BucketBytes>,
}

/// Database access coldsweep needs, identical in meaning on every backend
/// (proven by the catalog conformance suite).
#[async_trait]
pub trait Catalog: Send + Sync + fmt::Debug {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// The SQL dialect, for statements built at run time.
    fn dialect(&self) -> Dialect;

    /// Run `statements` in order in one transaction, each one's rows read
    /// as text; on an error nothing of them holds. Only the crate builds a
    /// [`Statement`], from checked identifiers ([`dynamic`]).
    async fn run_statements(&self, statements: &[Statement]) -> Result<Vec<Vec<TextRow>>>;

    /// Apply the embedded migrations.
    async fn migrate(&self) -> Result<()>;

    /// Fail with [`ErrorKind::InvalidInput`] naming `coldsweep migrate` when
    /// migrations are missing.
    async fn check_migrations(&self) -> Result<()>;

    /// The job marker: terminal jobs whose every task's HTML has left hot
    /// storage, at least one archived, become `archived`. Returns how many.
    async fn mark_archived_jobs(&self) -> Result<u64>;

    /// What [`rules::decide`] needs to know of the jobs, as at `free_before`
    /// (a sweep's start): each job's [`Standing`] — rank among the finished
    /// jobs of its (domain, organisation), job time
    /// (`COALESCE(restored_at, completed_at, created_at)`), whether it has a
    /// row claimable at `free_before` — and, for [`Scope::Counted`], the
    /// blobs and bytes of its rows with a hot path, and the hot bytes of
    /// the whole catalog (a NULL `html_compressed_size_bytes` counts 0).
    /// [`Scope::BeyondRetention`] reads only the ranks and one index probe
    /// per finished job beyond retention: once per sweep, not per claim.
    async fn job_standings(&self, scope: Scope, free_before: DateTime<Utc>) -> Result<Standings>;

    /// Claim up to `limit` task-HTML candidates of `jobs`, taken job by job
    /// in the order given and by task id within a job, skipping rows under
    /// a live lease (and, on Postgres, rows locked by another claim right
    /// now; no row is locked that is not claimed). Returned in that order.
    /// Fewer than `limit` rows (claimed and unreadable together) means no
    /// job of `jobs` had another claimable row. Rows that cannot be read
    /// (text that is not UTF-8, a number stored as text) are quarantined
    /// with the reason and reported in [`Claim::unreadable`] instead of
    /// failing the whole claim. Its cost follows the rows it claims and the
    /// jobs it passes, not the size of the catalog.
    async fn claim_task_html_rows(
        &self,
        jobs: &[String],
        limit: usize,
        lease: &Lease,
    ) -> Result<Claim>;

    /// One claim from scratch under retention alone: the moving jobs of
    /// [`rules::decide`] over [`Catalog::job_standings`] at
    /// `lease.free_before`, then [`Catalog::claim_task_html_rows`] over all
    /// of them. A sweep keeps its moving jobs between claims instead
    /// ([`TaskHtmlSource`](crate::source::TaskHtmlSource) does).
    async fn claim_task_html(
        &self,
        retention_jobs: u32,
        limit: usize,
        lease: &Lease,
    ) -> Result<Vec<ArchiveCandidate>> {
        let rules = Rules::retention(retention_jobs);
        let standings = self.job_standings(rules.scope(), lease.free_before).await?;
        let jobs = rules::decide(&standings, &rules, lease.free_before).moving_ids();
        Ok(self
            .claim_task_html_rows(&jobs, limit, lease)
            .await?
            .candidates)
    }

    /// Record the cold location (switched at `fence.now`); the hot
    /// reference stays until [`Catalog::clear_hot`]. Fenced: see [`Fence`].
    async fn record_archived(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()>;

    /// Clear the hot reference (after the hot delete) and the lease. Fenced.
    async fn clear_hot(&self, task_id: &str, fence: Fence<'_>) -> Result<()>;

    /// [`record_archived`](Catalog::record_archived) for many rows in one
    /// statement, all to `provider`/`bucket`: `rows` are (task id, cold key).
    /// Returns the ids written; a row missing from them is no longer held
    /// by `fence` and was left as it was.
    async fn record_archived_many(
        &self,
        rows: &[(String, String)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>>;

    /// [`clear_hot`](Catalog::clear_hot) for many rows in one statement.
    /// Returns the ids cleared; a row missing from them (lease lost, or no
    /// cold location recorded) was left as it was.
    async fn clear_hot_many(&self, task_ids: &[String], fence: Fence<'_>) -> Result<Vec<String>>;

    /// Record `verdict` in `html_archive_state` with a reason; clears the
    /// lease. Fenced.
    async fn mark_state(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        verdict: Verdict,
        reason: &str,
    ) -> Result<()>;

    /// Record a first (or repeated, too early) sighting of a blob missing
    /// from both stores: state `missing`, `html_missing_since` kept if
    /// already set, else `seen_at`; the row is hidden from claims until
    /// `recheck_at` (an ownerless back-off), when a sweep looks again. Fenced.
    async fn mark_missing(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        reason: &str,
        seen_at: DateTime<Utc>,
        recheck_at: DateTime<Utc>,
    ) -> Result<()>;

    /// The blob was found again: forget a `missing` state (other states
    /// are kept). Fenced, even when there is nothing to forget.
    async fn clear_missing(&self, task_id: &str, fence: Fence<'_>) -> Result<()>;

    /// The heartbeat: extend to `until` the leases among `task_ids` that
    /// `fence` still holds (an ended or taken-over lease stays as it is),
    /// in one statement. Returns how many.
    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64>;

    /// Hand claims back untouched, in one statement: the rows held by
    /// `owner` among `task_ids` lose their lease, and neither their
    /// attempts nor their last error change (handing back is not failing).
    /// Returns how many rows were handed back.
    async fn hand_back(&self, task_ids: &[String], owner: &str) -> Result<u64>;

    /// The rows `filter` selects (at most `limit`, by id) and how many there are in all.
    async fn reset_preview(
        &self,
        filter: &ResetFilter,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Vec<TaskRow>)>;

    /// Put the rows `filter` selects back into play: state, reason,
    /// attempts, missing-since and back-off cleared. Returns how many.
    async fn reset(&self, filter: &ResetFilter, now: DateTime<Utc>) -> Result<u64>;

    /// End the back-off of every failing row (not under a live lease), so
    /// the next sweep retries them at once; attempts and errors are kept.
    /// Returns how many.
    async fn retry_failing_now(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Failing rows (hot, last attempt failed), soonest retry first, at most `limit`.
    async fn failing_tasks(&self, limit: usize) -> Result<Vec<TaskRow>>;

    /// Release a claim after a failure: count the attempt, keep the error, and
    /// hide the row from claims until `retry_at` (set `html_lease_expires_at`
    /// to it, owner NULL) so a failing blob backs off instead of spinning. Fenced.
    async fn release(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Every job with its retention rank and task counts, newest first per group.
    async fn job_retention(&self) -> Result<Vec<JobRetention>>;

    /// Catalog-wide counts.
    async fn status(&self, now: DateTime<Utc>) -> Result<CatalogStatus>;

    /// One task's HTML columns.
    async fn task(&self, task_id: &str) -> Result<Option<TaskRow>>;

    /// Tasks by state (for reports), at most `limit`.
    async fn tasks_in_state(&self, state: BlobState, limit: usize) -> Result<Vec<TaskRow>>;

    /// Archived tasks (in cold storage only: cold key set, hot path NULL, no
    /// recorded state), in bytewise id order, with id greater than `after`
    /// and, if `job` is set, of that job only; at most `limit`. A keyset
    /// cursor: pass the last id of one page as `after` to get the next.
    async fn archived_tasks_after(
        &self,
        after: Option<&str>,
        job: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRow>>;

    /// The distinct buckets of hot tasks (HTML in hot storage, not yet
    /// switched to cold, neither quarantined nor lost), by name (bytewise), at
    /// most `limit`. Reads every hot row: for checks, not for sweeps.
    async fn hot_buckets(&self, limit: usize) -> Result<Vec<HotBucket>>;

    /// Task rows whose id is one of `tasks` or whose job is one of `jobs`,
    /// by id (bytewise), whatever their state: what a restore looks at.
    async fn tasks_selected(&self, tasks: &[String], jobs: &[String]) -> Result<Vec<TaskRow>>;

    /// Those of `ids` that name a job in the catalog, by id (bytewise).
    async fn known_jobs(&self, ids: &[String]) -> Result<Vec<String>>;

    /// Claim for a restore those of `task_ids` that are archived (cold key
    /// set, hot path NULL, no recorded state) and not under a live lease or
    /// back-off at `lease.free_before` (on Postgres, rows locked by another
    /// claim right now are skipped). Returns the claimed rows, by id.
    async fn claim_archived(&self, task_ids: &[String], lease: &Lease) -> Result<Vec<TaskRow>>;

    /// The catalog switch of a restore, in one transaction: each of `rows`
    /// (task id, hot key) still archived and held by `fence` gets
    /// `html_storage_bucket = hot_bucket` and its hot key, and loses its cold
    /// location, its archive time and its lease; then every job of those
    /// rows gets `restored_at = fence.now` and, where its status is
    /// `archived`, its status before (`status_before_archived`, else
    /// `completed`). A row not held is left as it was (see
    /// [`Restored::tasks`]).
    async fn record_restored_many(
        &self,
        rows: &[(String, String)],
        hot_bucket: &str,
        fence: Fence<'_>,
    ) -> Result<Restored>;

    /// The live schema's description of `table` (its columns, their type
    /// family, nullability, primary key), or `None` when no such table or
    /// view exists. An unqualified name is looked up as the database would
    /// resolve it (Postgres: the `search_path`; SQLite: `temp`, `main`,
    /// then attached databases). The names are bound as values, never
    /// spliced into the statement.
    async fn describe_table(&self, table: &TableName) -> Result<Option<TableSchema>>;

    /// Have the database check `condition` as the boolean expression of a
    /// `WHERE` over `table`, without running it: Postgres plans `SELECT …
    /// WHERE (condition)` with `EXPLAIN` in a read-only transaction (so a
    /// non-boolean expression, a missing column or function, or a syntax
    /// error is refused); SQLite compiles it with `EXPLAIN` (no type check:
    /// SQLite has no boolean type). A refusal is [`ErrorKind::InvalidInput`]
    /// carrying the database's reason.
    async fn check_condition(&self, table: &TableName, condition: &Condition) -> Result<()>;

    /// Blobs and stored bytes per bucket: hot per `html_storage_bucket`
    /// (every row with a hot path, whatever its state), cold per
    /// (`html_archive_provider`, `html_archive_bucket`) (every row with a
    /// recorded cold key). A blob switched to cold whose hot copy is not yet
    /// deleted counts in both. Reads every row: for reports.
    async fn bucket_usage(&self) -> Result<BucketUsage>;
}

/// Open the catalog at `url`: `postgres://…`/`postgresql://…` or `sqlite:…`
/// (each where its feature, `postgres` or `sqlite`, is on).
pub async fn connect(url: &str) -> Result<Arc<dyn Catalog>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgCatalog::connect(url).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(not_built("postgres"));
    }
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        return connect_sqlite(url).await;
        #[cfg(not(feature = "sqlite"))]
        return Err(not_built("sqlite"));
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        "expected postgres://…, postgresql://… or sqlite:…",
    ))
}

#[cfg(feature = "sqlite")]
async fn connect_sqlite(url: &str) -> Result<Arc<dyn Catalog>> {
    // SQLite's own answer for a folder is "unable to open database file":
    // say what is wrong with the setting instead.
    if let Ok(options) = url.parse::<sqlx::sqlite::SqliteConnectOptions>()
        && options.get_filename().is_dir()
    {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "expected sqlite: and the path of a database file, got the folder {}",
                options.get_filename().display()
            ),
        ));
    }
    // Creates the database file if it is missing.
    Ok(Arc::new(SqliteCatalog::connect(url).await?))
}

/// A catalog URL whose backend this build leaves out.
#[cfg(not(all(feature = "postgres", feature = "sqlite")))]
fn not_built(feature: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("this build of coldsweep has no {feature} catalog (cargo feature `{feature}`)"),
    )
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
    Error::new(kind, "catalog").with_verbose_source(err)
}

/// A condition the database refused: bad input (syntax, an unknown column
/// or function, a non-boolean expression), unless the failure is the
/// connection's or a permission.
pub(crate) fn condition_refused(table: &TableName, err: sqlx::Error) -> Error {
    let refused = match &err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("42501") => false,
            // Postgres: syntax error or access rule violation, data exception;
            // SQLite: a plain SQL error.
            Some(code) => code.starts_with("42") || code.starts_with("22") || code == "1",
            None => false,
        },
        _ => false,
    };
    let context = format!("checking the condition on {table}");
    if refused {
        Error::new(ErrorKind::InvalidInput, context).with_verbose_source(err)
    } else {
        classify(err).context(context)
    }
}

// Helpers shared by the backends. `backend` is the name messages use for one:
// `Postgres` or `SQLite`.

/// Table recording which of coldsweep's migrations ran, on every backend.
pub(crate) const MIGRATIONS_TABLE: &str = "_coldsweep_migrations";

/// `migrate!` always targets `_sqlx_migrations`; copy its migrations into a
/// migrator that uses [`MIGRATIONS_TABLE`] (sqlx calls the setter "dangerous"
/// only because renaming it on a live database forgets what ran).
pub(crate) fn with_own_table(embedded: &Migrator) -> Migrator {
    let mut migrator = Migrator::with_migrations(embedded.iter().cloned().collect());
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Classify a migration failure: database errors as usual; a database
/// whose recorded migrations disagree with this binary's is bad input.
pub(crate) fn migrate_error(backend: &str, err: MigrateError) -> Error {
    let what = format!("applying {backend} catalog migrations");
    match err {
        MigrateError::Execute(e) => classify(e).context(what),
        MigrateError::ExecuteMigration(e, version) => {
            classify(e).context(format!("{what}: migration {version}"))
        }
        e @ (MigrateError::VersionMissing(_)
        | MigrateError::VersionMismatch(_)
        | MigrateError::VersionNotPresent(_)
        | MigrateError::VersionTooOld(..)
        | MigrateError::VersionTooNew(..)
        | MigrateError::Dirty(_)) => {
            Error::new(ErrorKind::InvalidInput, what).with_verbose_source(e)
        }
        e => Error::new(ErrorKind::Unexpected, what).with_verbose_source(e),
    }
}

/// Fail when an embedded migration is not recorded as applied.
pub(crate) fn missing_migrations(
    backend: &str,
    migrator: &Migrator,
    applied: &[i64],
) -> Result<()> {
    let missing: Vec<String> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the {backend} catalog is missing migrations {}; run `coldsweep migrate`",
            missing.join(", ")
        ),
    ))
}

/// The error for a task id that matches no row.
pub(crate) fn not_found(task_id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("task {task_id} not in the catalog"),
    )
}

/// The error for clearing the hot reference of a row never switched to cold.
pub(crate) fn no_cold_location(task_id: &str) -> Error {
    Error::new(
        ErrorKind::Integrity,
        format!("task {task_id}: no cold location recorded; refusing to clear the hot reference"),
    )
}

/// A fenced write missed its row although the fence holds when looked at
/// right after: the lease changed hands in between. Worth a new attempt.
pub(crate) fn lease_raced(task_id: &str) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("task {task_id}: the row's lease changed during the write; nothing written"),
    )
}

/// Why a fenced write of `task_id` touched no row, given the row's lease
/// (`None`: no such row): not found, or the lease lost. `Ok` when the fence
/// holds, so the write's own condition is what failed.
pub(crate) fn fence_miss(
    task_id: &str,
    fence: Fence<'_>,
    lease: Option<(Option<String>, Option<DateTime<Utc>>)>,
) -> Result<()> {
    let Some((owner, until)) = lease else {
        return Err(not_found(task_id));
    };
    let held = owner.as_deref() == Some(fence.owner) && until.is_some_and(|u| u >= fence.now);
    if held {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::LeaseLost,
        format!(
            "task {task_id}: worker {} no longer holds its lease (now held by {}, until {}); \
             nothing written",
            fence.owner,
            owner.as_deref().unwrap_or("nobody"),
            until.map_or_else(|| "-".to_owned(), |u| u.to_rfc3339()),
        ),
    ))
}

/// The recorded cold location, when all three of its columns are set.
pub(crate) fn archived_at(
    provider: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
) -> Option<ArchivedAt> {
    match (provider, bucket, key) {
        (Some(provider), Some(bucket), Some(key)) => Some(ArchivedAt {
            provider,
            bucket,
            key,
        }),
        _ => None,
    }
}

/// Every column of `rows` as text (a declared source's statements cast
/// what they select; see [`dynamic`]).
pub(crate) fn text_rows<R>(rows: &[R]) -> Result<Vec<TextRow>>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i))
                .collect::<std::result::Result<TextRow, _>>()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(classify)
}

/// The candidate in a row returned by a claim (the backend reads its own
/// sort key from the same row).
pub(crate) fn candidate_from_row<'r, R>(row: &'r R) -> Result<ArchiveCandidate, sqlx::Error>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let archived_at = archived_at(
        row.try_get("html_archive_provider")?,
        row.try_get("html_archive_bucket")?,
        row.try_get("html_archive_key")?,
    );
    Ok(ArchiveCandidate {
        task_id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        storage_bucket: row.try_get("html_storage_bucket")?,
        storage_path: row.try_get("html_storage_path")?,
        sha256: row.try_get("html_sha256")?,
        compressed_size_bytes: row.try_get("html_compressed_size_bytes")?,
        size_bytes: row.try_get("html_size_bytes")?,
        content_type: row.try_get("html_content_type")?,
        content_encoding: row.try_get("html_content_encoding")?,
        archived_at,
        attempts: row.try_get("html_archive_attempts")?,
        claims: row.try_get("html_archive_claims")?,
        missing_since: row.try_get("html_missing_since")?,
        digest: None,
        cold_name: None,
    })
}

/// Claimed rows in the order of their job in `jobs`, then task id
/// (bytewise): RETURNING has no order of its own.
pub(crate) fn sort_claimed(jobs: &[String], claimed: &mut [ArchiveCandidate]) {
    let mut position = std::collections::HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        position.entry(job.as_str()).or_insert(i);
    }
    claimed.sort_by(|a, b| {
        let key = |c: &ArchiveCandidate| position.get(c.job_id.as_str()).copied();
        (key(a), &a.task_id).cmp(&(key(b), &b.task_id))
    });
}

/// Why a claimed row was quarantined without being moved: it could not be
/// read into a candidate. Both backends record this reason and skip the row,
/// so one bad row never fails the rest of its batch.
pub(crate) fn unreadable_reason(err: &sqlx::Error) -> String {
    format!("catalog row cannot be read ({err}); fix the row, then reset its state")
}

/// A `job_retention` row: `job` (read by the backend) with its rank and counts.
pub(crate) fn retention_from_row<'r, R>(
    job: JobRow,
    row: &'r R,
) -> Result<JobRetention, sqlx::Error>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(JobRetention {
        job,
        rank: row.try_get("rank")?,
        hot_tasks: row.try_get("hot")?,
        archived_tasks: row.try_get("archived")?,
        quarantined_tasks: row.try_get("quarantined")?,
        lost_tasks: row.try_get("lost")?,
        hot_bytes: row.try_get("hot_bytes")?,
    })
}

/// A `job_standings` row: `id`, `rank`, `job_time`, and for a counted
/// scope `movable_blobs`, `movable_bytes` and `hot_bytes` (else the row
/// has a claimable blob, which is why it was returned).
fn standing_from_row<'r, R>(row: &'r R, counted: bool) -> Result<Standing, sqlx::Error>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    // Counts and sums are never negative but a size column could hold a
    // negative number: it counts 0.
    let count = |name: &'r str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    let bytes = if counted {
        Some(JobBytes {
            movable_blobs: count("movable_blobs")?,
            movable_bytes: count("movable_bytes")?,
            hot_bytes: count("hot_bytes")?,
        })
    } else {
        None
    };
    let rank: Option<i64> = row.try_get("rank")?;
    Ok(Standing {
        job_id: row.try_get("id")?,
        rank: rank.map(|r| u64::try_from(r).unwrap_or(0)),
        job_time: row.try_get("job_time")?,
        movable: bytes.is_none_or(|b| b.movable_blobs > 0),
        bytes,
    })
}

/// The standings in `rows` of a `job_standings` query for `scope`; a
/// counted scope's rows hold every job with hot rows, so their hot bytes
/// add up to the catalog's.
pub(crate) fn standings_from_rows<'r, R>(
    rows: &'r [R],
    scope: Scope,
) -> Result<Standings, sqlx::Error>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    let counted = scope == Scope::Counted;
    let jobs = rows
        .iter()
        .map(|row| standing_from_row(row, counted))
        .collect::<Result<Vec<_>, _>>()?;
    let hot_bytes = counted.then(|| {
        jobs.iter()
            .filter_map(|j| j.bytes)
            .fold(0u64, |sum, b| sum.saturating_add(b.hot_bytes))
    });
    Ok(Standings { jobs, hot_bytes })
}

/// Bind every [`TaskRow`] field to the backend's `INSERT INTO tasks`, whose
/// columns are listed in field order (the statements differ only in their
/// placeholders).
pub(crate) fn bind_task<'q, DB>(
    query: Query<'q, DB, DB::Arguments>,
    task: &TaskRow,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    String: for<'e> Encode<'e, DB> + Type<DB>,
    Option<String>: for<'e> Encode<'e, DB> + Type<DB>,
    Option<i64>: for<'e> Encode<'e, DB> + Type<DB>,
    Option<DateTime<Utc>>: for<'e> Encode<'e, DB> + Type<DB>,
    i32: for<'e> Encode<'e, DB> + Type<DB>,
{
    query
        .bind(&task.id)
        .bind(&task.job_id)
        .bind(&task.html_storage_bucket)
        .bind(&task.html_storage_path)
        .bind(&task.html_content_type)
        .bind(&task.html_content_encoding)
        .bind(task.html_size_bytes)
        .bind(task.html_compressed_size_bytes)
        .bind(&task.html_sha256)
        .bind(task.html_captured_at)
        .bind(&task.html_archive_provider)
        .bind(&task.html_archive_bucket)
        .bind(&task.html_archive_key)
        .bind(task.html_archived_at)
        .bind(&task.html_archive_state)
        .bind(&task.html_archive_error)
        .bind(task.html_archive_attempts)
        .bind(task.html_missing_since)
        .bind(task.html_lease_expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_list_matches_the_constant() {
        let quoted: Vec<String> = TERMINAL_STATUSES.iter().map(|s| format!("'{s}'")).collect();
        assert_eq!(terminal_list!(), format!("({})", quoted.join(", ")));
    }

    #[test]
    fn migrate_errors_name_the_backend_and_keep_their_kind() {
        let err = migrate_error("SQLite", MigrateError::VersionMissing(7));
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.message(), "applying SQLite catalog migrations");
        let err = migrate_error("Postgres", MigrateError::Execute(sqlx::Error::PoolTimedOut));
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(
            err.message(),
            "applying Postgres catalog migrations: catalog"
        );
    }

    #[test]
    fn missing_migrations_name_the_backend() {
        let migrator = with_own_table(&sqlx::migrate!("migrations/sqlite"));
        let all: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        assert!(missing_migrations("SQLite", &migrator, &all).is_ok());
        let err = missing_migrations("SQLite", &migrator, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.message()
                .starts_with("the SQLite catalog is missing migrations "),
            "{}",
            err.message()
        );
        assert!(err.message().ends_with("; run `coldsweep migrate`"));
    }

    #[test]
    fn archived_at_needs_all_three_columns() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            archived_at(s("r2"), s("cold"), s("k")),
            Some(ArchivedAt {
                provider: "r2".into(),
                bucket: "cold".into(),
                key: "k".into(),
            })
        );
        assert_eq!(archived_at(s("r2"), None, s("k")), None);
        assert_eq!(archived_at(None, None, None), None);
    }
}
