//! Postgres catalog: production, many workers on one database.
//!
//! A claim leases rows with `UPDATE … WHERE id IN (…)`, where the inner
//! query walks the jobs it is given (the sweep's eligible jobs, found once)
//! and takes their rows `FOR UPDATE SKIP LOCKED` up to the batch: concurrent
//! claimers get disjoint rows without waiting on each other, and the lease
//! columns let a dead worker's claim expire.
//! Migrations are embedded from `migrations/postgres` and recorded in
//! `_coldsweep_migrations`, apart from any `_sqlx_migrations` the
//! application keeps for its own. They run on a live application database,
//! so a migration never queues for a lock for long (see [`PgCatalog::migrate`]).

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, FromRow, Row};

use super::dynamic::{Dialect, SqlValue, Statement, TextRow};
use super::fixtures::Fixtures;
use super::sql::POSTGRES as SQL;
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
const NAME: &str = "Postgres";

/// The embedded migrations, recorded in [`MIGRATIONS_TABLE`].
static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| with_own_table(&sqlx::migrate!("migrations/postgres")));

/// How long a migration that takes an exclusive lock (ALTER TABLE) may
/// queue for it. While it queues, every other query on that table queues
/// behind it, the application's plain SELECTs included.
const LOCK_TIMEOUT: &str = "1s";

/// How long an index build (`CREATE INDEX CONCURRENTLY`) may wait for other
/// transactions. Its waits block no reads or writes, and giving up throws
/// the build away, so it gets longer than [`LOCK_TIMEOUT`].
const BUILD_LOCK_TIMEOUT: &str = "30s";

/// Pauses between attempts while a lock is busy: the first, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

/// How long `migrate` keeps trying while locks are busy, by default.
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(5 * 60);

/// Rank of every terminal job within its (domain, organisation), newest = 1.
/// `PARTITION BY` groups NULL organisations together; `COLLATE "C"` makes the
/// id tie-break byte order, as in SQLite, whatever the database's collation.
macro_rules! ranked_cte {
    () => {
        concat!(
            "ranked AS (
                SELECT j.id,
                       COALESCE(j.restored_at, j.completed_at, j.created_at) AS job_time,
                       row_number() OVER (
                           PARTITION BY j.domain_id, j.organisation_id
                           ORDER BY COALESCE(j.restored_at, j.completed_at, j.created_at) DESC NULLS LAST,
                                    j.id COLLATE \"C\" DESC
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
             AND (t.html_lease_expires_at IS NULL OR t.html_lease_expires_at < ",
            $free_before,
            ")"
        )
    };
}

/// The `int8` sum of a size column over a group (`$filter`: an aggregate
/// FILTER clause or ""): a NULL or negative size counts 0, and a sum past
/// `int8` (a corrupt row) stops at its largest value instead of failing
/// the statement.
macro_rules! size_sum {
    ($column:literal, $($filter:expr),*) => {
        concat!(
            "LEAST(COALESCE(sum(GREATEST(", $column, ", 0))", $($filter,)* ", 0), ",
            "9223372036854775807)::int8"
        )
    };
}

/// Every `TaskRow` column; casts tolerate application schemas that declare
/// a few of them with narrower or zone-less types.
macro_rules! task_columns {
    () => {
        "id, job_id, html_storage_bucket, html_storage_path, html_content_type,
         html_content_encoding, html_size_bytes::int8 AS html_size_bytes,
         html_compressed_size_bytes::int8 AS html_compressed_size_bytes, html_sha256,
         html_captured_at::timestamptz AS html_captured_at, html_archive_provider,
         html_archive_bucket, html_archive_key,
         html_archived_at::timestamptz AS html_archived_at, html_archive_state,
         html_archive_error, html_archive_attempts::int4 AS html_archive_attempts,
         html_missing_since::timestamptz AS html_missing_since,
         html_lease_expires_at::timestamptz AS html_lease_expires_at"
    };
}

/// Catalog in a Postgres database (Supabase included).
#[derive(Clone)]
pub struct PgCatalog {
    pool: PgPool,
    lock_wait_limit: Duration,
}

impl fmt::Debug for PgCatalog {
    // The pool's options may carry the connection URL's password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCatalog").finish_non_exhaustive()
    }
}

impl PgCatalog {
    /// Connect to `url` (`postgres://…` or `postgresql://…`).
    pub async fn connect(url: &str) -> Result<Self> {
        // Never the URL itself in errors: it may hold a password.
        let context = "connecting to the Postgres catalog";
        let options: PgConnectOptions = url.parse().map_err(|e| classify(e).context(context))?;
        // One direct connection first: a pool only reports "timed out" after
        // retrying for half a minute, hiding "connection refused" or a bad password.
        PgConnection::connect_with(&options)
            .await
            .map_err(|e| classify(e).context(context))?
            .close()
            .await
            .map_err(|e| classify(e).context(context))?;
        // During an outage each catalog call waits this long before failing
        // as transient; sqlx's 30 s would stall every blob of a batch in turn.
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy_with(options);
        Ok(Self::from_pool(pool))
    }

    /// Use an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            lock_wait_limit: LOCK_WAIT_LIMIT,
        }
    }

    /// How long [`Catalog::migrate`] keeps retrying while other sessions
    /// hold locks it needs (default 5 minutes) before it fails.
    pub fn with_lock_wait_limit(mut self, limit: Duration) -> Self {
        self.lock_wait_limit = limit;
        self
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// [`Catalog::claim_task_html_rows`] on `conn`, inside whatever
    /// transaction it has open: the claimed rows stay locked until that
    /// transaction ends, and no other row is locked.
    pub async fn claim_task_html_rows_in(
        &self,
        conn: &mut PgConnection,
        jobs: &[String],
        limit: usize,
        lease: &Lease,
    ) -> Result<Claim> {
        if limit == 0 || jobs.is_empty() {
            return Ok(Claim::default());
        }
        // The jobs in their given order, each walked through the hot-HTML
        // index in id order, the walk stopped by the outer LIMIT: LockRows
        // sits inside the per-job scan and is pulled one row at a time, so
        // only the rows the LIMIT passes get locked, and SKIP LOCKED passes
        // over rows other claimers hold. No ORDER BY above the LIMIT, or a
        // sort would pull (and lock) every row first; the nested loop's
        // order is the jobs' order. The per-job LIMIT locks nothing more (it
        // is pulled lazily too); it steers the planner to the index's order
        // instead of a sort of the job's rows. The claimable test sits in
        // the locking scan, so a row another claimer leased after our
        // snapshot is re-checked, and dropped, once locked.
        let rows = sqlx::query(concat!(
            "UPDATE tasks
            SET html_lease_owner = $2, html_lease_expires_at = $3,
                html_archive_claims = html_archive_claims + 1
            WHERE id IN (
                SELECT c.id
                FROM unnest($1::text[]) AS j(id)
                CROSS JOIN LATERAL (
                    SELECT t.id
                    FROM tasks t
                    WHERE t.job_id = j.id AND ",
            claimable!("$4"),
            "
                    ORDER BY t.id
                    LIMIT $5
                    FOR UPDATE SKIP LOCKED
                ) c
                LIMIT $5
            )
            RETURNING id, job_id, html_storage_bucket, html_storage_path, html_sha256,
                      html_compressed_size_bytes::int8 AS html_compressed_size_bytes,
                      html_size_bytes::int8 AS html_size_bytes,
                      html_content_type, html_content_encoding,
                      html_archive_provider, html_archive_bucket, html_archive_key,
                      html_archive_attempts::int4 AS html_archive_attempts,
                      html_archive_claims::int4 AS html_archive_claims,
                      html_missing_since::timestamptz AS html_missing_since"
        ))
        .bind(jobs)
        .bind(&lease.owner)
        .bind(lease.until)
        .bind(lease.free_before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;

        // As on SQLite: a row that cannot be read is quarantined, not allowed
        // to fail the batch (and every later sweep that claims it again).
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in &rows {
            match candidate_from_row(row) {
                Ok(c) => claimed.push(c),
                Err(e) => {
                    // Postgres text is always valid UTF-8: the id reads.
                    let id: String = row.try_get("id").map_err(classify)?;
                    let reason = unreadable_reason(&e);
                    tracing::warn!(task_id = %id, %reason, "quarantined a catalog row that cannot be read");
                    // On `conn`: the row may be locked by its open transaction.
                    sqlx::query(
                        "UPDATE tasks
                         SET html_archive_state = 'quarantined', html_archive_error = $2,
                             html_lease_owner = NULL, html_lease_expires_at = NULL
                         WHERE id = $1 AND html_lease_owner = $3",
                    )
                    .bind(&id)
                    .bind(&reason)
                    .bind(&lease.owner)
                    .execute(&mut *conn)
                    .await
                    .map_err(classify)?;
                    unreadable.push(Unreadable {
                        task_id: id,
                        reason,
                    });
                }
            }
        }
        // RETURNING has no order: the jobs' order, then task id.
        sort_claimed(jobs, &mut claimed);
        Ok(Claim {
            candidates: claimed,
            unreadable,
        })
    }
}

#[async_trait]
impl Catalog for PgCatalog {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn describe_table(&self, table: &TableName) -> Result<Option<TableSchema>> {
        // to_regclass resolves the quoted name as the search_path would,
        // and answers NULL (no rows) for a missing table: nothing runs.
        let rows = sqlx::query(
            "WITH rel AS (
                SELECT c.oid, n.nspname::text AS schema_name, c.relname::text AS table_name
                FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.oid = to_regclass(CASE WHEN $1::text IS NULL THEN quote_ident($2::text)
                                               ELSE quote_ident($1::text) || '.' || quote_ident($2::text) END)
                  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             )
             SELECT rel.schema_name, rel.table_name, a.attname::text AS name,
                    format_type(a.atttypid, a.atttypmod) AS declared,
                    bt.typname::text AS type_name, NOT a.attnotnull AS nullable,
                    EXISTS (SELECT 1 FROM pg_index i
                            WHERE i.indrelid = a.attrelid AND i.indisprimary
                              AND a.attnum = ANY (i.indkey)) AS primary_key
             FROM rel
             JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             ORDER BY a.attnum",
        )
        .bind(table.schema.as_ref().map(Ident::as_str))
        .bind(table.name.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e).context(format!("describing table {table}")))?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut schema = TableSchema {
            schema: first.try_get("schema_name").map_err(classify)?,
            name: first.try_get("table_name").map_err(classify)?,
            columns: Vec::with_capacity(rows.len()),
            case_insensitive: false,
        };
        for row in &rows {
            let type_name: String = row.try_get("type_name").map_err(classify)?;
            schema.columns.push(Column {
                name: row.try_get("name").map_err(classify)?,
                family: TypeFamily::from_postgres(&type_name),
                declared: row.try_get("declared").map_err(classify)?,
                nullable: row.try_get("nullable").map_err(classify)?,
                primary_key: row.try_get("primary_key").map_err(classify)?,
            });
        }
        Ok(Some(schema))
    }

    async fn check_condition(&self, table: &TableName, condition: &Condition) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| classify(e).context("checking a condition"))?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| classify(e).context("checking a condition"))?;
        // EXPLAIN plans the statement without running it. Both words are
        // validated: the table an Ident pair, the condition balanced and
        // free of separators and comments.
        let sql = format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {}",
            table.quoted(),
            condition.parenthesized()
        );
        let outcome = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await;
        let _ = tx.rollback().await;
        outcome.map(|_| ()).map_err(|e| condition_refused(table, e))
    }

    /// Apply the pending migrations on one connection of their own, each
    /// with a short `lock_timeout`: a migration that would queue for its
    /// lock behind a long transaction (and stall the application's queries
    /// on that table behind itself) gives up instead, rolls back, and is
    /// tried again after a pause, until [`PgCatalog::with_lock_wait_limit`].
    async fn migrate(&self) -> Result<()> {
        let context = "connecting to the Postgres catalog to migrate it";
        // Named, so a DBA sees who waits in pg_stat_activity. No statement
        // log: a wait or an index build would print a whole migration file
        // as a "slow statement" warning.
        let options = (*self.pool.connect_options())
            .clone()
            .application_name("coldsweep migrate")
            .disable_statement_logging();
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| classify(e).context(context))?;
        // Re-running a migration on an existing schema makes Postgres send an
        // "already exists, skipping" NOTICE per object, which sqlx logs.
        conn.execute("SET client_min_messages = warning")
            .await
            .map_err(|e| classify(e).context(context))?;
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let busy = match migrate_once(&mut conn).await {
                Ok(()) => break,
                Err(e) if lock_busy(&e) => e,
                Err(e) => return Err(migrate_error(NAME, e)),
            };
            // A failed attempt leaves sqlx's session-level advisory lock
            // held (its transaction is rolled back on the next query).
            conn.execute("SELECT pg_advisory_unlock_all()")
                .await
                .map_err(|e| migrate_error(NAME, MigrateError::Execute(e)))?;
            let which = match &busy {
                MigrateError::ExecuteMigration(_, version) => format!("migration {version}"),
                _ => "the migration lock".to_owned(),
            };
            if started.elapsed() + pause > self.lock_wait_limit {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "applying {NAME} catalog migrations: gave up after {}s waiting for a lock \
                         ({which}): a long transaction holds the jobs or tasks table (or another \
                         `coldsweep migrate` is running); end it and run `coldsweep migrate` again",
                        started.elapsed().as_secs()
                    ),
                )
                .with_verbose_source(busy));
            }
            tracing::info!(
                waiting_for = %which,
                retry_in_s = pause.as_secs(),
                "a long transaction holds a lock the catalog migration needs (or another \
                 `coldsweep migrate` is running); rolled back, will try again"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
        conn.close().await.map_err(|e| classify(e).context(context))
    }

    async fn check_migrations(&self) -> Result<()> {
        let table_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(MIGRATIONS_TABLE)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let applied: Vec<i64> = if table_exists {
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
                    SELECT r.id, r.rank, r.job_time::timestamptz AS job_time
                    FROM ranked r
                    WHERE r.rank > $1
                      AND EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = r.id AND ",
                    claimable!("$2"),
                    ")
                    ORDER BY r.job_time ASC NULLS FIRST, r.id COLLATE \"C\""
                ))
                .bind(i64::from(retention_jobs))
                .bind(free_before)
                .fetch_all(&self.pool)
                .await
            }
            // Every hot row, read once through the hot-HTML index (its
            // predicate is this WHERE), summed per job; joined in full so
            // that the bytes of jobs that are not finished count too.
            Scope::Counted => {
                sqlx::query(concat!(
                    "WITH ",
                    ranked_cte!(),
                    ",
                    hot AS (
                        SELECT t.job_id,
                               count(*) FILTER (WHERE ",
                    claimable!("$1"),
                    ") AS movable_blobs,
                               ",
                    size_sum!(
                        "t.html_compressed_size_bytes",
                        " FILTER (WHERE ",
                        claimable!("$1"),
                        ")"
                    ),
                    " AS movable_bytes,
                               ",
                    size_sum!("t.html_compressed_size_bytes", ""),
                    " AS hot_bytes
                        FROM tasks t
                        WHERE t.html_storage_path IS NOT NULL
                        GROUP BY t.job_id
                    )
                    SELECT COALESCE(r.id, h.job_id) AS id, r.rank,
                           r.job_time::timestamptz AS job_time,
                           COALESCE(h.movable_blobs, 0) AS movable_blobs,
                           COALESCE(h.movable_bytes, 0) AS movable_bytes,
                           COALESCE(h.hot_bytes, 0) AS hot_bytes
                    FROM ranked r
                    FULL JOIN hot h ON h.job_id = r.id"
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
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        self.claim_task_html_rows_in(&mut conn, jobs, limit, lease)
            .await
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
        let (ids, keys): (Vec<&str>, Vec<&str>) = rows
            .iter()
            .map(|(id, key)| (id.as_str(), key.as_str()))
            .unzip();
        sqlx::query_scalar(
            "UPDATE tasks AS t
             SET html_archive_provider = $3, html_archive_bucket = $4, html_archive_key = v.key,
                 html_archived_at = CASE
                     WHEN t.html_archive_provider = $3 AND t.html_archive_bucket = $4
                          AND t.html_archive_key = v.key
                     THEN COALESCE(t.html_archived_at, $5) ELSE $5 END
             FROM unnest($1::text[], $2::text[]) AS v(id, key)
             WHERE t.id = v.id AND t.html_lease_owner = $6 AND t.html_lease_expires_at >= $5
             RETURNING t.id",
        )
        .bind(ids)
        .bind(keys)
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
            .bind(task_ids)
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
            .bind(task_ids)
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
            .bind(task_ids)
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
        .bind(&filter.jobs)
        .bind(&filter.tasks)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE {} ORDER BY id COLLATE \"C\" LIMIT $4"
            ),
            clause
        )))
        .bind(now)
        .bind(&filter.jobs)
        .bind(&filter.tasks)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let rows = rows
            .iter()
            .map(TaskRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)?;
        Ok((u64::try_from(count).unwrap_or(0), rows))
    }

    async fn reset(&self, filter: &ResetFilter, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(SQL.reset(filter)))
            .bind(now)
            .bind(&filter.jobs)
            .bind(&filter.tasks)
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
              ORDER BY html_lease_expires_at NULLS FIRST, id COLLATE \"C\" LIMIT $1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(TaskRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
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
                                                               AND html_storage_path IS NOT NULL)::int8
                           AS hot_bytes
                FROM tasks
                GROUP BY job_id
            )
            SELECT j.id, j.domain_id::int4 AS domain_id, j.organisation_id, j.status::text AS status,
                   j.created_at::timestamptz AS created_at,
                   j.completed_at::timestamptz AS completed_at,
                   r.rank,
                   COALESCE(c.hot, 0) AS hot, COALESCE(c.archived, 0) AS archived,
                   COALESCE(c.quarantined, 0) AS quarantined, COALESCE(c.lost, 0) AS lost,
                   COALESCE(c.hot_bytes, 0) AS hot_bytes
            FROM jobs j
            LEFT JOIN ranked r ON r.id = j.id
            LEFT JOIN counts c ON c.job_id = j.id
            ORDER BY j.domain_id, j.organisation_id NULLS LAST,
                     COALESCE(j.restored_at, j.completed_at, j.created_at) DESC NULLS LAST,
                     j.id COLLATE \"C\" DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| retention_from_row(job_from_row(row)?, row))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    async fn status(&self, now: DateTime<Utc>) -> Result<CatalogStatus> {
        // hot / pending_hot_delete / archived / quarantined / lost partition
        // the tasks that have HTML; leased and failing cut across them. A
        // released row's back-off has no owner, so it is not "leased".
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
                count(*) FILTER (WHERE html_lease_owner IS NOT NULL
                                   AND html_lease_expires_at >= $1) AS leased,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_error IS NOT NULL) AS failing,
                count(*) FILTER (WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
                                   AND html_archive_error IS NOT NULL AND html_lease_owner IS NULL
                                   AND html_lease_expires_at >= $1) AS waiting,
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
            " FROM tasks WHERE id = $1"
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
                    min(html_storage_path COLLATE \"C\") AS sample_path
             FROM tasks
             WHERE html_archive_state IS NULL AND html_storage_path IS NOT NULL
               AND html_archive_key IS NULL AND html_storage_bucket IS NOT NULL
             GROUP BY html_storage_bucket
             ORDER BY html_storage_bucket COLLATE \"C\"
             LIMIT $1",
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
        Dialect::Postgres
    }

    async fn run_statements(&self, statements: &[Statement]) -> Result<Vec<Vec<TextRow>>> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            let mut query = sqlx::query(AssertSqlSafe(statement.sql.clone()));
            for value in &statement.binds {
                query = match value {
                    SqlValue::Null => query.bind(None::<String>),
                    SqlValue::Text(text) => query.bind(text.clone()),
                    SqlValue::Int(n) => query.bind(*n),
                    SqlValue::Time(at) => query.bind(*at),
                    SqlValue::TextList(items) => query.bind(items.clone()),
                    SqlValue::TextMap(_) => query.bind(value.json()),
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
            "SELECT NULL::text AS provider, html_storage_bucket AS bucket, count(*) AS blobs,
                    ",
            size_sum!("html_compressed_size_bytes", ""),
            " AS bytes,
                    count(*) FILTER (WHERE html_compressed_size_bytes IS NULL) AS blobs_without_size
             FROM tasks
             WHERE html_storage_path IS NOT NULL
             GROUP BY html_storage_bucket
             ORDER BY html_storage_bucket COLLATE \"C\" NULLS LAST"
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
             ORDER BY html_archive_provider COLLATE \"C\" NULLS LAST,
                      html_archive_bucket COLLATE \"C\" NULLS LAST"
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
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
            BlobState::Archived => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                    AND html_archive_key IS NOT NULL
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
            BlobState::Quarantined => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'quarantined'
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
            BlobState::Lost => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'lost'
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
            BlobState::Missing => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state = 'missing'
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
            BlobState::None => concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                    AND html_archive_key IS NULL
                  ORDER BY id COLLATE \"C\" LIMIT $1"
            ),
        };
        let rows = sqlx::query(query)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(TaskRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn archived_tasks_after(
        &self,
        after: Option<&str>,
        job: Option<&str>,
        limit: usize,
    ) -> Result<Vec<TaskRow>> {
        // `COLLATE "C"`: bytewise order, as in SQLite, so a cursor means the
        // same on both backends whatever the database's collation. One
        // statement per shape (no `$1 IS NULL OR …`) so that every page is a
        // range scan of `coldsweep_tasks_archived_id_idx`, not a full scan.
        macro_rules! archived {
            ($filter:literal, $limit:literal) => {
                concat!(
                    "SELECT ",
                    task_columns!(),
                    " FROM tasks WHERE html_archive_state IS NULL AND html_storage_path IS NULL
                        AND html_archive_key IS NOT NULL ",
                    $filter,
                    " ORDER BY id COLLATE \"C\" LIMIT ",
                    $limit
                )
            };
        }
        let sql = match (after.is_some(), job.is_some()) {
            (false, false) => archived!("", "$1"),
            (true, false) => archived!("AND id COLLATE \"C\" > $1", "$2"),
            (false, true) => archived!("AND job_id = $1", "$2"),
            (true, true) => archived!("AND id COLLATE \"C\" > $1 AND job_id = $2", "$3"),
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
            " FROM tasks WHERE id = ANY($1) OR job_id = ANY($2) ORDER BY id COLLATE \"C\""
        ))
        .bind(tasks)
        .bind(jobs)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(TaskRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn known_jobs(&self, ids: &[String]) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id COLLATE \"C\"")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn claim_archived(&self, task_ids: &[String], lease: &Lease) -> Result<Vec<TaskRow>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        // As a sweep's claim: rows locked by another claimer are skipped,
        // and the archived test sits in the locking scan.
        let rows = sqlx::query(concat!(
            "UPDATE tasks
             SET html_lease_owner = $2, html_lease_expires_at = $3
             WHERE id IN (
                 SELECT t.id FROM tasks t
                 WHERE t.id = ANY($1) AND t.html_archive_state IS NULL
                   AND t.html_storage_path IS NULL AND t.html_archive_key IS NOT NULL
                   AND (t.html_lease_expires_at IS NULL OR t.html_lease_expires_at < $4)
                 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            task_columns!()
        ))
        .bind(task_ids)
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
        let (ids, keys): (Vec<&str>, Vec<&str>) = rows
            .iter()
            .map(|(id, key)| (id.as_str(), key.as_str()))
            .unzip();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let switched: Vec<(String, String)> = sqlx::query_as(
            "UPDATE tasks AS t
             SET html_storage_bucket = $3, html_storage_path = v.key,
                 html_archive_provider = NULL, html_archive_bucket = NULL,
                 html_archive_key = NULL, html_archived_at = NULL,
                 html_archive_error = NULL,
                 html_lease_owner = NULL, html_lease_expires_at = NULL
             FROM unnest($1::text[], $2::text[]) AS v(id, key)
             WHERE t.id = v.id AND t.html_archive_state IS NULL
               AND t.html_storage_path IS NULL AND t.html_archive_key IS NOT NULL
               AND t.html_lease_owner = $5 AND t.html_lease_expires_at >= $4
             RETURNING t.id, t.job_id",
        )
        .bind(ids)
        .bind(keys)
        .bind(hot_bucket)
        .bind(fence.now)
        .bind(fence.owner)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut jobs: Vec<String> = switched.iter().map(|(_, job)| job.clone()).collect();
        jobs.sort();
        jobs.dedup();
        // Locked first, so the job marker cannot change a status between
        // the look and the write.
        let jobs_reopened: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'archived'
             ORDER BY id COLLATE \"C\" FOR UPDATE",
        )
        .bind(&jobs)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "UPDATE jobs
             SET restored_at = $2,
                 status = CASE WHEN status = 'archived'
                               THEN COALESCE(status_before_archived, 'completed')
                               ELSE status END,
                 status_before_archived = CASE WHEN status = 'archived' THEN NULL
                                               ELSE status_before_archived END
             WHERE id = ANY($1)",
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
impl Fixtures for PgCatalog {
    async fn insert_job(&self, job: &JobRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, domain_id, organisation_id, status, created_at, completed_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&job.id)
        .bind(job.domain_id)
        .bind(job.organisation_id)
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
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ));
        bind_task(query, task)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

impl PgCatalog {
    /// The lease columns of `task_id`, `None` when there is no such row.
    async fn lease_of(
        &self,
        task_id: &str,
    ) -> Result<Option<(Option<String>, Option<DateTime<Utc>>)>> {
        sqlx::query_as(
            "SELECT html_lease_owner, html_lease_expires_at::timestamptz FROM tasks WHERE id = $1",
        )
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

/// One attempt at every pending migration, in order.
async fn migrate_once(conn: &mut PgConnection) -> std::result::Result<(), MigrateError> {
    drop_invalid_indexes(conn).await?;
    for migration in MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        // Per migration, as the lock it waits for differs; one already
        // applied costs sqlx's few bookkeeping queries.
        let timeout = if migration.no_tx {
            BUILD_LOCK_TIMEOUT
        } else {
            LOCK_TIMEOUT
        };
        conn.execute(AssertSqlSafe(format!("SET lock_timeout = '{timeout}'")))
            .await?;
        // `run_to` with `&mut PgConnection` trips the compiler's Send
        // check in an async trait; `run_direct` is what it calls.
        MIGRATOR
            .run_direct(Some(migration.version), &mut *conn, false)
            .await?;
    }
    Ok(())
}

/// Drop INVALID `coldsweep_*` indexes: what an interrupted or timed-out
/// `CREATE INDEX CONCURRENTLY` leaves behind, and which its `IF NOT EXISTS`
/// would then keep (sqlx records no-transaction migrations only once they
/// succeed, so the next attempt runs the build again). An index another
/// `migrate` is building right now is INVALID too, but dropping it waits
/// for that build's table lock, which it holds until the build is done.
async fn drop_invalid_indexes(conn: &mut PgConnection) -> std::result::Result<(), MigrateError> {
    conn.execute(AssertSqlSafe(format!(
        "SET lock_timeout = '{BUILD_LOCK_TIMEOUT}'"
    )))
    .await?;
    let invalid: Vec<String> = sqlx::query_scalar(
        r"SELECT format('%I.%I', n.nspname, c.relname)
          FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE NOT i.indisvalid
            AND c.relname LIKE 'coldsweep\_%'
            AND n.nspname = ANY (current_schemas(false))",
    )
    .fetch_all(&mut *conn)
    .await?;
    for index in invalid {
        tracing::info!(%index, "dropping an index an interrupted migration left unfinished");
        conn.execute(AssertSqlSafe(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {index}"
        )))
        .await?;
    }
    Ok(())
}

/// Whether a migration failed only because a lock stayed busy: its lock
/// timeout ran out (55P03), or Postgres broke a deadlock by cancelling it
/// (40P01). Either way nothing was recorded and a later attempt may pass.
fn lock_busy(err: &MigrateError) -> bool {
    let (MigrateError::Execute(sqlx::Error::Database(db))
    | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)) = err
    else {
        return false;
    };
    matches!(db.code().as_deref(), Some("55P03" | "40P01"))
}

fn job_from_row(row: &PgRow) -> Result<JobRow, sqlx::Error> {
    Ok(JobRow {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        organisation_id: row.try_get("organisation_id")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_embedded() {
        assert!(super::MIGRATOR.iter().count() >= 3);
    }
}
