//! SQLite catalog: the embedded default, one database file, one writer.
//!
//! SQLite has no `SKIP LOCKED`; it has a single writer instead, so a claim is
//! one `UPDATE … RETURNING` that sets the same lease columns Postgres uses.
//! WAL mode lets `status` and reports read while a sweep writes, and a busy
//! timeout makes concurrent writers wait instead of failing.
//!
//! Storage: uuids are lowercase hyphenated text, timestamps RFC 3339 text as
//! sqlx encodes `DateTime<Utc>`. Text order is not time order once other
//! tools write other formats (`2024-01-01 10:00:00`, `…Z`, other offsets),
//! so every comparison goes through `julianday()` (millisecond precision)
//! with the text as a tie-break inside one millisecond.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{AssertSqlSafe, FromRow, Row};

use super::dynamic::{Dialect, SqlValue, Statement, TextRow};
use super::fixtures::Fixtures;
use super::sql::SQLITE as SQL;
use super::text_rows;
use super::{
    BucketBytes, BucketUsage, Catalog, CatalogStatus, Column, Condition, HotBucket, Ident,
    JobRetention, JobRow, MIGRATIONS_TABLE, ResetFilter, Restored, TableName, TableSchema, TaskRow,
    TypeFamily, bind_task, candidate_from_row, classify, condition_refused, fence_miss,
    lease_raced, migrate_error, missing_migrations, no_cold_location, retention_from_row,
    sort_claimed, standings_from_rows, unreadable_reason, with_own_table,
};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{BlobState, Claim, Fence, Lease, Unreadable, Verdict};
use crate::rules::{Scope, Standings};

/// How messages name this backend.
const NAME: &str = "SQLite";

/// How long a writer waits for another before giving up with a transient error.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded migrations, recorded in [`MIGRATIONS_TABLE`] as on Postgres.
static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| with_own_table(&sqlx::migrate!("migrations/sqlite")));

/// A job's retention time: a restored job counts as finished at its
/// restore (`COALESCE(j.restored_at, j.completed_at, j.created_at)`).
macro_rules! job_time {
    ($j:literal) => {
        concat!(
            "COALESCE(",
            $j,
            ".restored_at, ",
            $j,
            ".completed_at, ",
            $j,
            ".created_at)"
        )
    };
}

/// Rank of every terminal job within its (domain, organisation), newest = 1;
/// NULL organisations form one group per domain.
macro_rules! ranked_cte {
    () => {
        concat!(
            "ranked AS (
                SELECT j.id,
                       julianday(",
            job_time!("j"),
            ") AS job_day,
                       ",
            job_time!("j"),
            " AS job_time,
                       row_number() OVER (
                           PARTITION BY j.domain_id, j.organisation_id
                           ORDER BY julianday(",
            job_time!("j"),
            ") DESC NULLS LAST, ",
            job_time!("j"),
            " DESC, j.id DESC
                       ) AS rank
                FROM jobs j
                WHERE j.status IN ",
            terminal_list!(),
            ")"
        )
    };
}

/// A task row (`t`) that may be claimed at `$free_before` (a placeholder):
/// hot HTML with a known bucket, no recorded state but `missing` (re-checked
/// once its back-off ends), no live lease or back-off.
macro_rules! claimable {
    ($free_before:literal) => {
        concat!(
            "t.html_storage_path IS NOT NULL
             AND t.html_storage_bucket IS NOT NULL
             AND (t.html_archive_state IS NULL OR t.html_archive_state = 'missing')
             AND (t.html_lease_expires_at IS NULL
                  OR julianday(t.html_lease_expires_at) < julianday(",
            $free_before,
            "))"
        )
    };
}

/// The integer sum of a size column over a group (`$filter`: an aggregate
/// FILTER clause or ""): a NULL, negative or non-numeric size counts 0, and
/// the sum is taken as a float (`total`, which never overflows, exact below
/// 2^53) and stops at the largest integer, so a corrupt row cannot fail the
/// statement.
macro_rules! size_sum {
    ($column:literal, $($filter:expr),*) => {
        concat!(
            "CAST(min(total(CASE WHEN typeof(", $column, ") IN ('integer', 'real') AND ",
            $column, " > 0 THEN ", $column, " ELSE 0 END)", $($filter,)*
            ", 9223372036854775807.0) AS INTEGER)"
        )
    };
}

/// Every `TaskRow` column.
macro_rules! task_columns {
    () => {
        "id, job_id, html_storage_bucket, html_storage_path, html_content_type,
         html_content_encoding, html_size_bytes, html_compressed_size_bytes, html_sha256,
         html_captured_at, html_archive_provider, html_archive_bucket, html_archive_key,
         html_archived_at, html_archive_state, html_archive_error, html_archive_attempts,
         html_missing_since, html_lease_expires_at"
    };
}

/// Catalog in a SQLite database file.
#[derive(Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl fmt::Debug for SqliteCatalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteCatalog").finish_non_exhaustive()
    }
}

impl SqliteCatalog {
    /// Open `url` (`sqlite:path/to/file.db`, `sqlite::memory:`), creating the
    /// file if it is missing.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| classify(e).context("parsing the SQLite catalog URL"))?;
        // An in-memory database lives as long as its last connection.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, in_memory).await
    }

    /// Open the database file at `path`, creating it if it is missing.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(SqliteConnectOptions::new().filename(path), false).await
    }

    /// Use an existing pool.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn open_with(options: SqliteConnectOptions, in_memory: bool) -> Result<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(4)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| classify(e).context("opening the SQLite catalog"))?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn describe_table(&self, table: &TableName) -> Result<Option<TableSchema>> {
        let context = || format!("describing table {table}");
        // pragma_table_info fails on an unknown schema: look for it first.
        // sqlite_schema of each database names its tables; an unqualified
        // name is looked for as SQLite resolves one (temp, main, attached).
        let databases: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_database_list ORDER BY seq = 1 DESC, seq")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| classify(e).context(context()))?;
        let databases: Vec<String> = match &table.schema {
            Some(schema) => databases
                .into_iter()
                .filter(|d| d.eq_ignore_ascii_case(schema.as_str()))
                .collect(),
            None => databases,
        };
        for database in databases {
            let rows = sqlx::query(
                "SELECT t.name AS name, t.type AS declared, t.\"notnull\" AS not_null, t.pk AS pk
                 FROM pragma_table_info(?1, ?2) t
                 ORDER BY t.cid",
            )
            .bind(table.name.as_str())
            .bind(&database)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e).context(context()))?;
            if rows.is_empty() {
                continue;
            }
            let name: String = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT name FROM {}.sqlite_schema WHERE name = ?1 COLLATE NOCASE
                 AND type IN ('table', 'view') LIMIT 1",
                Ident::new(&database)
                    .map(|d| d.quoted())
                    .unwrap_or_else(|_| "main".to_owned())
            )))
            .bind(table.name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| classify(e).context(context()))?
            .unwrap_or_else(|| table.name.as_str().to_owned());
            let mut columns = Vec::with_capacity(rows.len());
            for row in &rows {
                let declared: String = row.try_get("declared").map_err(classify)?;
                let not_null: i64 = row.try_get("not_null").map_err(classify)?;
                let pk: i64 = row.try_get("pk").map_err(classify)?;
                let family = TypeFamily::from_sqlite(&declared);
                // An INTEGER PRIMARY KEY is the rowid: never NULL, whatever
                // the declaration says.
                let rowid = pk > 0 && declared.eq_ignore_ascii_case("INTEGER");
                columns.push(Column {
                    name: row.try_get("name").map_err(classify)?,
                    family,
                    declared,
                    nullable: not_null == 0 && !rowid,
                    primary_key: pk > 0,
                });
            }
            if columns.iter().filter(|c| c.primary_key).count() > 1 {
                // Only a lone INTEGER PRIMARY KEY is the rowid.
                for c in &mut columns {
                    if c.primary_key && c.declared.eq_ignore_ascii_case("INTEGER") {
                        c.nullable = true;
                    }
                }
            }
            return Ok(Some(TableSchema {
                schema: database,
                name,
                columns,
                case_insensitive: true,
            }));
        }
        Ok(None)
    }

    async fn check_condition(&self, table: &TableName, condition: &Condition) -> Result<()> {
        // EXPLAIN compiles the statement without running it. Both words are
        // validated: the table an Ident pair, the condition balanced and
        // free of separators and comments.
        let sql = format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {}",
            table.quoted(),
            condition.parenthesized()
        );
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| condition_refused(table, e))
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| migrate_error(NAME, e))
    }

    async fn check_migrations(&self) -> Result<()> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        )
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let applied: Vec<i64> = if tables > 0 {
            sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT version FROM {MIGRATIONS_TABLE} WHERE success"
            )))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
        } else {
            Vec::new()
        };
        missing_migrations(NAME, &MIGRATOR, &applied)
    }

    async fn mark_archived_jobs(&self) -> Result<u64> {
        let done = sqlx::query(super::sql::MARK_ARCHIVED_JOBS)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn job_standings(&self, scope: Scope, free_before: DateTime<Utc>) -> Result<Standings> {
        let rows = match scope {
            // The one catalog-wide step of a sweep without a quota: every
            // terminal job ranked, each beyond retention probed once through
            // the hot-HTML index.
            Scope::BeyondRetention(retention_jobs) => {
                sqlx::query(concat!(
                    "WITH ",
                    ranked_cte!(),
                    "
                    SELECT r.id, r.rank, r.job_time
                    FROM ranked r
                    WHERE r.rank > ?1
                      AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = r.id AND ",
                    claimable!("?2"),
                    ")
                    ORDER BY r.job_day ASC NULLS FIRST, r.job_time ASC, r.id"
                ))
                .bind(i64::from(retention_jobs))
                .bind(free_before)
                .fetch_all(&self.pool)
                .await
            }
            // Every hot row, read once through the hot-HTML index, summed
            // per job; jobs that are not finished keep their bytes (the
            // second half: SQLite before 3.39 has no FULL JOIN).
            Scope::Counted => {
                sqlx::query(concat!(
                    "WITH ",
                    ranked_cte!(),
                    ",
                    hot AS (
                        SELECT t.job_id,
                               count(*) FILTER (WHERE ",
                    claimable!("?1"),
                    ") AS movable_blobs,
                               ",
                    size_sum!(
                        "t.html_compressed_size_bytes",
                        " FILTER (WHERE ",
                        claimable!("?1"),
                        ")"
                    ),
                    " AS movable_bytes,
                               ",
                    size_sum!("t.html_compressed_size_bytes", ""),
                    " AS hot_bytes
                        FROM tasks t INDEXED BY coldsweep_tasks_hot_html_idx
                        WHERE t.html_storage_path IS NOT NULL
                        GROUP BY t.job_id
                    )
                    SELECT r.id, r.rank, r.job_time,
                           COALESCE(h.movable_blobs, 0) AS movable_blobs,
                           COALESCE(h.movable_bytes, 0) AS movable_bytes,
                           COALESCE(h.hot_bytes, 0) AS hot_bytes
                    FROM ranked r
                    LEFT JOIN hot h ON h.job_id = r.id
                    UNION ALL
                    SELECT h.job_id, NULL, NULL, h.movable_blobs, h.movable_bytes, h.hot_bytes
                    FROM hot h
                    WHERE NOT EXISTS (SELECT 1 FROM ranked r WHERE r.id = h.job_id)"
                ))
                .bind(free_before)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(classify)?;
        standings_from_rows(&rows, scope).map_err(classify)
    }

    async fn claim_task_html_rows(
        &self,
        jobs: &[String],
        limit: usize,
        lease: &Lease,
    ) -> Result<Claim> {
        if limit == 0 || jobs.is_empty() {
            return Ok(Claim::default());
        }
        // One write transaction (the first statement writes, so it takes
        // the write lock at once): no other claimer can interleave. One
        // statement per job, each walking the hot-HTML index in id order and
        // stopped by its LIMIT; a single statement over all the jobs would
        // sort every hot row of them first.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut rows = Vec::new();
        for job in jobs {
            let left = limit - rows.len();
            if left == 0 {
                break;
            }
            let taken = sqlx::query(concat!(
                "UPDATE tasks
                SET html_lease_owner = ?2, html_lease_expires_at = ?3,
                    html_archive_claims = html_archive_claims + 1
                WHERE id IN (
                    SELECT t.id
                    FROM tasks t INDEXED BY coldsweep_tasks_hot_html_idx
                    WHERE t.job_id = ?1 AND ",
                claimable!("?4"),
                "
                    ORDER BY t.id
                    LIMIT ?5
                )
                RETURNING rowid AS claimed_rowid,
                          id, job_id, html_storage_bucket, html_storage_path, html_sha256,
                          html_compressed_size_bytes, html_size_bytes,
                          html_content_type, html_content_encoding, html_archive_provider,
                          html_archive_bucket, html_archive_key,
                          html_archive_attempts, html_archive_claims, html_missing_since"
            ))
            .bind(job)
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(lease.free_before)
            .bind(i64::try_from(left).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
            rows.extend(taken);
        }

        // One row that cannot be read (text that is not UTF-8, a number
        // stored as text) must not fail the whole batch, or every sweep
        // would claim and fail it again: quarantine it, move the rest.
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in &rows {
            match candidate_from_row(row) {
                Ok(c) => claimed.push(c),
                Err(e) => {
                    let rowid: i64 = row.try_get("claimed_rowid").map_err(classify)?;
                    let reason = unreadable_reason(&e);
                    let id = row
                        .try_get::<Vec<u8>, _>("id")
                        .map(|id| String::from_utf8_lossy(&id).into_owned())
                        .unwrap_or_else(|_| format!("rowid {rowid}"));
                    tracing::warn!(rowid, %reason, "quarantined a catalog row that cannot be read");
                    sqlx::query(
                        "UPDATE tasks
                         SET html_archive_state = 'quarantined', html_archive_error = ?2,
                             html_lease_owner = NULL, html_lease_expires_at = NULL
                         WHERE rowid = ?1",
                    )
                    .bind(rowid)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                    unreadable.push(Unreadable {
                        task_id: id,
                        reason,
                    });
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        // RETURNING has no order: the jobs' order, then task id.
        sort_claimed(jobs, &mut claimed);
        Ok(Claim {
            candidates: claimed,
            unreadable,
        })
    }

    async fn record_archived(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()> {
        let done = sqlx::query(SQL.record_archived.as_str())
            .bind(task_id)
            .bind(provider)
            .bind(bucket)
            .bind(key)
            .bind(fence.now)
            .bind(fence.owner)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.fenced(done.rows_affected(), task_id, fence).await
    }

    async fn clear_hot(&self, task_id: &str, fence: Fence<'_>) -> Result<()> {
        let done = sqlx::query(SQL.clear_hot.as_str())
            .bind(task_id)
            .bind(fence.owner)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        fence_miss(task_id, fence, self.lease_of(task_id).await?)?;
        Err(no_cold_location(task_id))
    }

    async fn record_archived_many(
        &self,
        rows: &[(String, String)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let pairs = serde_json::to_string(rows).expect("pairs of strings are JSON");
        sqlx::query_scalar(
            "UPDATE tasks
             SET html_archive_provider = ?2, html_archive_bucket = ?3, html_archive_key = v.key,
                 html_archived_at = CASE
                     WHEN tasks.html_archive_provider = ?2 AND tasks.html_archive_bucket = ?3
                          AND tasks.html_archive_key = v.key
                     THEN COALESCE(tasks.html_archived_at, ?4) ELSE ?4 END
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS key
                   FROM json_each(?1)) AS v
             WHERE tasks.id = v.id AND tasks.html_lease_owner = ?5
               AND julianday(tasks.html_lease_expires_at) >= julianday(?4)
             RETURNING tasks.id",
        )
        .bind(pairs)
        .bind(provider)
        .bind(bucket)
        .bind(fence.now)
        .bind(fence.owner)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn clear_hot_many(&self, task_ids: &[String], fence: Fence<'_>) -> Result<Vec<String>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(SQL.clear_hot_many.as_str())
            .bind(json_list(task_ids))
            .bind(fence.owner)
            .bind(fence.now)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn mark_state(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        verdict: Verdict,
        reason: &str,
    ) -> Result<()> {
        let done = sqlx::query(SQL.mark_state.as_str())
            .bind(task_id)
            .bind(verdict.as_str())
            .bind(reason)
            .bind(fence.owner)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.fenced(done.rows_affected(), task_id, fence).await
    }

    async fn release(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        let done = sqlx::query(SQL.release.as_str())
            .bind(task_id)
            .bind(error)
            .bind(retry_at)
            .bind(fence.owner)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.fenced(done.rows_affected(), task_id, fence).await
    }

    async fn mark_missing(
        &self,
        task_id: &str,
        fence: Fence<'_>,
        reason: &str,
        seen_at: DateTime<Utc>,
        recheck_at: DateTime<Utc>,
    ) -> Result<()> {
        let done = sqlx::query(SQL.mark_missing.as_str())
            .bind(task_id)
            .bind(reason)
            .bind(seen_at)
            .bind(recheck_at)
            .bind(fence.owner)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.fenced(done.rows_affected(), task_id, fence).await
    }

    async fn clear_missing(&self, task_id: &str, fence: Fence<'_>) -> Result<()> {
        let done = sqlx::query(SQL.clear_missing.as_str())
            .bind(task_id)
            .bind(fence.owner)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        // Not missing (nothing to forget) is fine; a lost lease is not.
        fence_miss(task_id, fence, self.lease_of(task_id).await?)
    }

    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(SQL.extend_leases.as_str())
            .bind(json_list(task_ids))
            .bind(fence.owner)
            .bind(until)
            .bind(fence.now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn hand_back(&self, task_ids: &[String], owner: &str) -> Result<u64> {
        if task_ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(SQL.hand_back.as_str())
            .bind(json_list(task_ids))
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn reset_preview(
        &self,
        filter: &ResetFilter,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Vec<TaskRow>)> {
        let clause = SQL.reset_clause(filter);
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM tasks WHERE {clause}"
        )))
        .bind(now)
        .bind(json_list(&filter.jobs))
        .bind(json_list(&filter.tasks))
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE {} ORDER BY id LIMIT $4"
            ),
            clause
        )))
        .bind(now)
        .bind(json_list(&filter.jobs))
        .bind(json_list(&filter.tasks))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok((
            u64::try_from(count).unwrap_or(0),
            rows.iter().map(task_row_for_report).collect(),
        ))
    }

    async fn reset(&self, filter: &ResetFilter, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(SQL.reset(filter)))
            .bind(now)
            .bind(json_list(&filter.jobs))
            .bind(json_list(&filter.tasks))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn retry_failing_now(&self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(SQL.retry_failing_now.as_str())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn failing_tasks(&self, limit: usize) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks
              WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                AND html_archive_error IS NOT NULL
              ORDER BY julianday(html_lease_expires_at) NULLS FIRST, id LIMIT ?1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.iter().map(task_row_for_report).collect())
    }

    async fn job_retention(&self) -> Result<Vec<JobRetention>> {
        // Counts follow `TaskRow::state()`: quarantined rows count as hot too.
        let rows = sqlx::query(concat!(
            "WITH ",
            ranked_cte!(),
            ",
            counts AS (
                SELECT job_id,
                       count(*) FILTER (WHERE (html_archive_state IS NULL AND html_storage_path IS NOT NULL)
                                           OR html_archive_state = 'quarantined') AS hot,
                       count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                                          AND html_archive_key IS NOT NULL) AS archived,
                       count(*) FILTER (WHERE html_archive_state = 'quarantined') AS quarantined,
                       count(*) FILTER (WHERE html_archive_state = 'lost') AS lost,
                       sum(html_compressed_size_bytes) FILTER (WHERE html_archive_state IS NULL
                                                               AND html_storage_path IS NOT NULL)
                           AS hot_bytes
                FROM tasks
                GROUP BY job_id
            )
            SELECT j.id, j.domain_id, j.organisation_id, j.status, j.created_at, j.completed_at,
                   r.rank,
                   COALESCE(c.hot, 0) AS hot, COALESCE(c.archived, 0) AS archived,
                   COALESCE(c.quarantined, 0) AS quarantined, COALESCE(c.lost, 0) AS lost,
                   COALESCE(c.hot_bytes, 0) AS hot_bytes
            FROM jobs j
            LEFT JOIN ranked r ON r.id = j.id
            LEFT JOIN counts c ON c.job_id = j.id
            ORDER BY j.domain_id, j.organisation_id NULLS LAST,
                     julianday(",
            job_time!("j"),
            ") DESC NULLS LAST, ",
            job_time!("j"),
            " DESC, j.id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| retention_from_row(job_from_row(row)?, row).map_err(classify))
            .collect()
    }

    async fn status(&self, now: DateTime<Utc>) -> Result<CatalogStatus> {
        // Same partition as on Postgres (see there).
        let row = sqlx::query(
            "SELECT
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_key IS NULL) AS hot,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_key IS NOT NULL) AS pending_hot_delete,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                                   AND html_archive_key IS NOT NULL) AS archived,
                count(*) FILTER (WHERE html_archive_state = 'quarantined') AS quarantined,
                count(*) FILTER (WHERE html_archive_state = 'missing') AS missing,
                count(*) FILTER (WHERE html_archive_state = 'lost') AS lost,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_error IS NOT NULL AND html_lease_owner IS NULL
                                   AND julianday(html_lease_expires_at) >= julianday(?1)) AS waiting,
                count(*) FILTER (WHERE html_lease_owner IS NOT NULL
                                   AND julianday(html_lease_expires_at) >= julianday(?1)) AS leased,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_error IS NOT NULL) AS failing,
                (SELECT count(*) FROM jobs WHERE status = 'archived') AS archived_jobs
             FROM tasks",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        CatalogStatus::from_row(&row).map_err(classify)
    }

    async fn task(&self, task_id: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE id = ?1"
        ))
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref()
            .map(TaskRow::from_row)
            .transpose()
            .map_err(classify)
    }

    async fn hot_buckets(&self, limit: usize) -> Result<Vec<HotBucket>> {
        // The same "hot" as `status` counts, with a bucket.
        let rows = sqlx::query(
            "SELECT html_storage_bucket AS bucket, count(*) AS tasks,
                    min(html_storage_path) AS sample_path
             FROM tasks
             WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
               AND html_archive_key IS NULL AND html_storage_bucket IS NOT NULL
             GROUP BY html_storage_bucket
             ORDER BY html_storage_bucket
             LIMIT ?1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(HotBucket::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn run_statements(&self, statements: &[Statement]) -> Result<Vec<Vec<TextRow>>> {
        // The statements that write come first, so the transaction takes
        // the write lock at its first statement.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            let mut query = sqlx::query(AssertSqlSafe(statement.sql.clone()));
            for value in &statement.binds {
                query = match value {
                    SqlValue::Null => query.bind(None::<String>),
                    SqlValue::Text(text) => query.bind(text.clone()),
                    SqlValue::Int(n) => query.bind(*n),
                    SqlValue::Time(at) => {
                        query.bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                    }
                    SqlValue::TextList(_) | SqlValue::TextMap(_) => query.bind(value.json()),
                };
            }
            let rows = query.fetch_all(&mut *tx).await.map_err(classify)?;
            results.push(text_rows(&rows)?);
        }
        tx.commit().await.map_err(classify)?;
        Ok(results)
    }

    async fn bucket_usage(&self) -> Result<BucketUsage> {
        let hot = sqlx::query_as::<_, BucketBytes>(concat!(
            "SELECT NULL AS provider, html_storage_bucket AS bucket, count(*) AS blobs,
                    ",
            size_sum!("html_compressed_size_bytes", ""),
            " AS bytes,
                    count(*) FILTER (WHERE html_compressed_size_bytes IS NULL) AS blobs_without_size
             FROM tasks
             WHERE html_storage_path IS NOT NULL
             GROUP BY html_storage_bucket
             ORDER BY html_storage_bucket IS NULL, html_storage_bucket"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let cold = sqlx::query_as::<_, BucketBytes>(concat!(
            "SELECT html_archive_provider AS provider, html_archive_bucket AS bucket,
                    count(*) AS blobs,
                    ",
            size_sum!("html_compressed_size_bytes", ""),
            " AS bytes,
                    count(*) FILTER (WHERE html_compressed_size_bytes IS NULL) AS blobs_without_size
             FROM tasks
             WHERE html_archive_key IS NOT NULL
             GROUP BY html_archive_provider, html_archive_bucket
             ORDER BY html_archive_provider IS NULL, html_archive_provider,
                      html_archive_bucket IS NULL, html_archive_bucket"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(BucketUsage { hot, cold })
    }

    async fn tasks_in_state(&self, state: BlobState, limit: usize) -> Result<Vec<TaskRow>> {
        let query = match state {
            BlobState::Hot => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                  ORDER BY id LIMIT ?1"
            ),
            BlobState::Archived => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                    AND html_archive_key IS NOT NULL
                  ORDER BY id LIMIT ?1"
            ),
            BlobState::Quarantined => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'quarantined' ORDER BY id LIMIT ?1"
            ),
            BlobState::Lost => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'lost' ORDER BY id LIMIT ?1"
            ),
            BlobState::Missing => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'missing' ORDER BY id LIMIT ?1"
            ),
            BlobState::None => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                    AND html_archive_key IS NULL
                  ORDER BY id LIMIT ?1"
            ),
        };
        let rows = sqlx::query(query)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        // A listing for people: a quarantined row that cannot be read must
        // still show up (that is why it is quarantined).
        Ok(rows.iter().map(task_row_for_report).collect())
    }

    async fn archived_tasks_after(
        &self,
        after: Option<&str>,
        job: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRow>> {
        // SQLite's default BINARY collation is already bytewise. One
        // statement per shape (no `?1 IS NULL OR …`) so that every page is a
        // range scan of the primary key, not a scan from the first row.
        macro_rules! archived {
            ($filter:literal) => {
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                        AND html_archive_key IS NOT NULL ",
                    $filter,
                    " ORDER BY id LIMIT ?"
                )
            };
        }
        let sql = match (after.is_some(), job.is_some()) {
            (false, false) => archived!(""),
            (true, false) => archived!("AND id > ?"),
            (false, true) => archived!("AND job_id = ?"),
            (true, true) => archived!("AND id > ? AND job_id = ?"),
        };
        let mut query = sqlx::query(sql);
        if let Some(after) = after {
            query = query.bind(after);
        }
        if let Some(job) = job {
            query = query.bind(job);
        }
        let rows = query
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(TaskRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn tasks_selected(&self, tasks: &[String], jobs: &[String]) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
                 OR job_id IN (SELECT value FROM json_each(?2))
              ORDER BY id"
        ))
        .bind(json_list(tasks))
        .bind(json_list(jobs))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.iter().map(task_row_for_report).collect())
    }

    async fn known_jobs(&self, ids: &[String]) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .bind(json_list(ids))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn claim_archived(&self, task_ids: &[String], lease: &Lease) -> Result<Vec<TaskRow>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "UPDATE tasks
             SET html_lease_owner = ?2, html_lease_expires_at = ?3
             WHERE id IN (SELECT value FROM json_each(?1)) AND html_archive_state IS NULL
               AND html_storage_path IS NULL AND html_archive_key IS NOT NULL
               AND (html_lease_expires_at IS NULL
                    OR julianday(html_lease_expires_at) < julianday(?4))
             RETURNING ",
            task_columns!()
        ))
        .bind(json_list(task_ids))
        .bind(&lease.owner)
        .bind(lease.until)
        .bind(lease.free_before)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut claimed = rows
            .iter()
            .map(TaskRow::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(classify)?;
        claimed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(claimed)
    }

    async fn record_restored_many(
        &self,
        rows: &[(String, String)],
        hot_bucket: &str,
        fence: Fence<'_>,
    ) -> Result<Restored> {
        if rows.is_empty() {
            return Ok(Restored::default());
        }
        let pairs = serde_json::to_string(rows).expect("pairs of strings are JSON");
        // One write transaction: the first statement writes, so it holds
        // the write lock from the start.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let switched: Vec<(String, String)> = sqlx::query_as(
            "UPDATE tasks
             SET html_storage_bucket = ?2, html_storage_path = v.key,
                 html_archive_provider = NULL, html_archive_bucket = NULL,
                 html_archive_key = NULL, html_archived_at = NULL,
                 html_archive_error = NULL,
                 html_lease_owner = NULL, html_lease_expires_at = NULL
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS key
                   FROM json_each(?1)) AS v
             WHERE tasks.id = v.id AND tasks.html_archive_state IS NULL
               AND tasks.html_storage_path IS NULL AND tasks.html_archive_key IS NOT NULL
               AND tasks.html_lease_owner = ?4
               AND julianday(tasks.html_lease_expires_at) >= julianday(?3)
             RETURNING tasks.id, tasks.job_id",
        )
        .bind(pairs)
        .bind(hot_bucket)
        .bind(fence.now)
        .bind(fence.owner)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut jobs: Vec<String> = switched.iter().map(|(_, job)| job.clone()).collect();
        jobs.sort();
        jobs.dedup();
        let jobs = json_list(&jobs);
        let jobs_reopened: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?1))
               AND status = 'archived' ORDER BY id",
        )
        .bind(&jobs)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "UPDATE jobs
             SET restored_at = ?2,
                 status = CASE WHEN status = 'archived'
                               THEN COALESCE(status_before_archived, 'completed')
                               ELSE status END,
                 status_before_archived = CASE WHEN status = 'archived' THEN NULL
                                               ELSE status_before_archived END
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&jobs)
        .bind(fence.now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Restored {
            tasks: switched.into_iter().map(|(id, _)| id).collect(),
            jobs_reopened,
        })
    }
}

#[async_trait]
impl Fixtures for SqliteCatalog {
    async fn insert_job(&self, job: &JobRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, domain_id, organisation_id, status, created_at, completed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&job.id)
        .bind(job.domain_id)
        // Text, not sqlx's default BLOB, so it reads like the Postgres uuid.
        .bind(job.organisation_id.map(|id| id.hyphenated().to_string()))
        .bind(&job.status)
        .bind(job.created_at)
        .bind(job.completed_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn insert_task(&self, task: &TaskRow) -> Result<()> {
        let query = sqlx::query(insert_task_sql!(
            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        ));
        bind_task(query, task)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// A task row for reports: as [`TaskRow::from_row`], but a column that cannot
/// be read (text that is not UTF-8, a number stored as text) is shown lossily,
/// or as NULL, instead of failing the whole listing.
fn task_row_for_report(row: &SqliteRow) -> TaskRow {
    TaskRow::from_row(row).unwrap_or_else(|_| {
        let text = |column: &str| {
            row.try_get::<Option<Vec<u8>>, _>(column)
                .ok()
                .flatten()
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        };
        let int = |column: &str| row.try_get::<Option<i64>, _>(column).ok().flatten();
        let time = |column: &str| {
            row.try_get::<Option<DateTime<Utc>>, _>(column)
                .ok()
                .flatten()
        };
        TaskRow {
            id: text("id").unwrap_or_default(),
            job_id: text("job_id").unwrap_or_default(),
            html_storage_bucket: text("html_storage_bucket"),
            html_storage_path: text("html_storage_path"),
            html_content_type: text("html_content_type"),
            html_content_encoding: text("html_content_encoding"),
            html_size_bytes: int("html_size_bytes"),
            html_compressed_size_bytes: int("html_compressed_size_bytes"),
            html_sha256: text("html_sha256"),
            html_captured_at: time("html_captured_at"),
            html_archive_provider: text("html_archive_provider"),
            html_archive_bucket: text("html_archive_bucket"),
            html_archive_key: text("html_archive_key"),
            html_archived_at: time("html_archived_at"),
            html_archive_state: text("html_archive_state"),
            html_archive_error: text("html_archive_error"),
            html_archive_attempts: int("html_archive_attempts")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or_default(),
            html_missing_since: time("html_missing_since"),
            html_lease_expires_at: time("html_lease_expires_at"),
        }
    })
}

impl SqliteCatalog {
    /// The lease columns of `task_id`, `None` when there is no such row.
    async fn lease_of(
        &self,
        task_id: &str,
    ) -> Result<Option<(Option<String>, Option<DateTime<Utc>>)>> {
        sqlx::query_as("SELECT html_lease_owner, html_lease_expires_at FROM tasks WHERE id = ?1")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }

    /// `Ok` when a fenced write whose only condition is the fence touched
    /// its row; else why not.
    async fn fenced(&self, rows_affected: u64, task_id: &str, fence: Fence<'_>) -> Result<()> {
        if rows_affected == 1 {
            return Ok(());
        }
        fence_miss(task_id, fence, self.lease_of(task_id).await?)?;
        Err(lease_raced(task_id))
    }
}

/// `ids` as a JSON array, for `json_each`.
fn json_list(ids: &[String]) -> String {
    serde_json::to_string(ids).expect("a list of strings is JSON")
}

fn job_from_row(row: &SqliteRow) -> Result<JobRow> {
    let id: String = row.try_get("id").map_err(classify)?;
    let organisation_id = row
        .try_get::<Option<String>, _>("organisation_id")
        .map_err(classify)?
        .map(|text| {
            uuid::Uuid::parse_str(&text).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("job {id}: organisation_id is not a uuid"),
                )
                .with_source(e)
            })
        })
        .transpose()?;
    Ok(JobRow {
        domain_id: row.try_get("domain_id").map_err(classify)?,
        organisation_id,
        status: row.try_get("status").map_err(classify)?,
        created_at: row.try_get("created_at").map_err(classify)?,
        completed_at: row.try_get("completed_at").map_err(classify)?,
        id,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_embedded() {
        assert!(super::MIGRATOR.iter().count() >= 1);
    }
}
