//! Where a declared source's rows are (`coldsweep status`): counts by
//! state from the table and its side table, hot bytes per hot bucket, cold
//! blobs per (provider, bucket), and the rows a person must look at.

use chrono::{DateTime, Utc};

use super::sql::{Sql, col};
use super::{TableSource, epoch_time, size};
use crate::catalog::{SqlValue, Statement, TextRow};
use crate::error::Result;
use crate::source::spec::HotBucket;

/// Rows of each listed state returned at most.
pub const STATUS_LIST_LIMIT: usize = 20;

/// A declared source's rows at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Rows with a hot copy (path set, hot copy not recorded gone), any state.
    pub hot: u64,
    /// Rows whose cold copy is recorded and hot copy is gone.
    pub archived: u64,
    /// Rows whose cold copy is recorded and hot copy not deleted yet.
    pub pending_hot_delete: u64,
    /// Rows whose bytes disagree with the table (kept hot).
    pub quarantined: u64,
    /// Rows seen in neither store once, looked at again later.
    pub missing: u64,
    /// Rows in neither store on two looks.
    pub lost: u64,
    /// Hot rows whose last attempt failed.
    pub failing: u64,
    /// Of those, the ones whose retry time has not come.
    pub waiting: u64,
    /// Rows a worker holds a live lease on.
    pub claimed: u64,
    /// Hot rows per hot bucket.
    pub hot_buckets: Vec<BucketUsage>,
    /// Rows with a cold copy recorded, per (provider, bucket).
    pub cold_buckets: Vec<BucketUsage>,
    /// Quarantined rows (at most [`STATUS_LIST_LIMIT`]), by key.
    pub quarantined_rows: Vec<RowState>,
    /// Missing rows, likewise.
    pub missing_rows: Vec<RowState>,
    /// Lost rows, likewise.
    pub lost_rows: Vec<RowState>,
    /// Failing rows, soonest retry first.
    pub failing_rows: Vec<RowState>,
}

/// Blobs and bytes in one bucket, as the table records sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketUsage {
    /// The cold provider (`None` for hot buckets).
    pub provider: Option<String>,
    /// The bucket.
    pub bucket: Option<String>,
    /// Rows.
    pub blobs: u64,
    /// Their stored sizes (a NULL size counts 0).
    pub bytes: u64,
    /// Rows without a recorded size (all of them when the table records none).
    pub blobs_without_size: u64,
}

/// One row that needs a person, with what coldsweep recorded of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowState {
    /// The row's key, as text.
    pub key: String,
    /// Its parent's key, with a parent declared.
    pub parent: Option<String>,
    /// The recorded reason or last error.
    pub reason: Option<String>,
    /// Failed attempts.
    pub attempts: u64,
    /// When it was first seen missing.
    pub missing_since: Option<DateTime<Utc>>,
    /// When it is looked at or tried again (missing, failing).
    pub retry_at: Option<DateTime<Utc>>,
}

impl Sql {
    /// `FROM` the source table joined to its side table.
    fn joined(&self) -> String {
        format!(
            "FROM {} t LEFT JOIN {} s ON s.row_key = t.{}",
            self.table, self.side, self.key
        )
    }

    /// A failing row: no state, an error, still hot.
    fn failing(&self) -> String {
        "s.state IS NULL AND s.error IS NOT NULL AND s.hot_deleted_at IS NULL".to_owned()
    }

    /// The counts at `$1`, one row (see [`SourceStatus`]).
    fn status_counts(&self, now: SqlValue) -> Statement {
        let count = |condition: &str| {
            self.text(&format!(
                "COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"
            ))
        };
        let archived = "s.cold_key IS NOT NULL AND s.hot_deleted_at IS NOT NULL";
        let pending = format!("s.cold_key IS NOT NULL AND {}", self.hot("t", "s"));
        let waiting = format!(
            "{} AND s.lease_owner IS NULL AND {}",
            self.failing(),
            self.at_or_after("s.lease_expires_at", 1)
        );
        let claimed = format!(
            "s.lease_owner IS NOT NULL AND {}",
            self.at_or_after("s.lease_expires_at", 1)
        );
        let columns = [
            count(&self.hot("t", "s")),
            count(archived),
            count(&pending),
            count("s.state = 'quarantined'"),
            count("s.state = 'missing'"),
            count("s.state = 'lost'"),
            count(&self.failing()),
            count(&waiting),
            count(&claimed),
        ];
        Statement::new(
            format!("SELECT {} {}", columns.join(", "), self.joined()),
            vec![now],
        )
    }

    /// Hot rows per hot bucket: bucket, blobs, bytes, blobs without a size.
    fn status_hot_buckets(&self) -> Statement {
        let bucket = match &self.spec.hot.bucket {
            HotBucket::Column(bucket) => col("t", &bucket.value),
            HotBucket::Fixed(_) => "NULL".to_owned(),
        };
        self.usage(&bucket, "NULL", &self.hot("t", "s"))
    }

    /// Rows with a cold copy recorded, per provider and bucket.
    fn status_cold_buckets(&self) -> Statement {
        self.usage("s.cold_bucket", "s.cold_provider", "s.cold_key IS NOT NULL")
    }

    fn usage(&self, bucket: &str, provider: &str, condition: &str) -> Statement {
        let size = self.size("t");
        Statement::new(
            format!(
                "SELECT {b}, {p}, {blobs}, {bytes}, {unsized} {joined}
                 WHERE {condition}
                 {grouped}",
                grouped = grouped(&[bucket, provider]),
                b = self.text(bucket),
                p = self.text(provider),
                blobs = self.text("COUNT(*)"),
                bytes = self.text(&format!("SUM(COALESCE({size}, 0))")),
                unsized = self.text(&format!("SUM(CASE WHEN {size} IS NULL THEN 1 ELSE 0 END)")),
                joined = self.joined(),
            ),
            Vec::new(),
        )
    }

    /// Rows in `state` (`None`: failing), at most [`STATUS_LIST_LIMIT`]:
    /// key, parent, error, attempts, missing since, retry time (epochs).
    fn status_rows(&self, state: Option<&str>) -> Statement {
        let parent = match &self.spec.parent {
            Some(parent) => self.text(&col("t", &parent.foreign_key.value)),
            None => "NULL".to_owned(),
        };
        let (condition, order, binds) = match state {
            Some(state) => (
                "s.state = $1".to_owned(),
                format!("t.{}", self.key),
                vec![SqlValue::Text(state.to_owned())],
            ),
            None => (
                self.failing(),
                format!("s.lease_expires_at, t.{}", self.key),
                Vec::new(),
            ),
        };
        Statement::new(
            format!(
                "SELECT {k}, {parent}, {error}, {attempts}, {missing}, {retry} {joined}
                 WHERE {condition}
                 ORDER BY {order}
                 LIMIT {STATUS_LIST_LIMIT}",
                k = self.text(&format!("t.{}", self.key)),
                error = self.text("s.error"),
                attempts = self.text("s.attempts"),
                missing = self.text(&self.epoch("s.missing_since")),
                retry = self.text(&self.epoch("s.lease_expires_at")),
                joined = self.joined(),
            ),
            binds,
        )
    }

    /// The distinct hot buckets of the rows with a hot copy, each with its
    /// smallest path, at most `limit` (`coldsweep check` looks in each).
    fn sample_hot_paths(&self, limit: usize) -> Statement {
        let path = col("t", &self.spec.hot.path_column.value);
        let bucket = match &self.spec.hot.bucket {
            HotBucket::Column(bucket) => col("t", &bucket.value),
            HotBucket::Fixed(_) => "NULL".to_owned(),
        };
        Statement::new(
            format!(
                "SELECT {b}, {p}, {n} {joined}
                 WHERE {hot}
                 {grouped}
                 LIMIT {limit}",
                grouped = grouped(&[&bucket]),
                b = self.text(&bucket),
                p = self.text(&format!("MIN({path})")),
                n = self.text("COUNT(*)"),
                joined = self.joined(),
                hot = self.hot("t", "s"),
            ),
            Vec::new(),
        )
    }
}

impl TableSource {
    /// Where this source's rows are at `now` (the side table must exist).
    pub async fn status(&self, now: DateTime<Utc>) -> Result<SourceStatus> {
        let sql = &self.sql;
        let results = self
            .catalog
            .run_statements(&[
                sql.status_counts(SqlValue::Time(now)),
                sql.status_hot_buckets(),
                sql.status_cold_buckets(),
                sql.status_rows(Some("quarantined")),
                sql.status_rows(Some("missing")),
                sql.status_rows(Some("lost")),
                sql.status_rows(None),
            ])
            .await
            .map_err(|e| {
                e.context(format!(
                    "reading the status of source {:?}",
                    self.spec.name.value
                ))
            })?;
        let mut results = results.into_iter();
        let mut next = || results.next().unwrap_or_default();
        let counts = next().into_iter().next().unwrap_or_default();
        let count = |i: usize| counts.get(i).cloned().flatten().map_or(0, |n| size(&n));
        let fixed = match &self.spec.hot.bucket {
            HotBucket::Fixed(bucket) => Some(bucket.value.clone()),
            HotBucket::Column(_) => None,
        };
        let mut hot_buckets = usage(next());
        for bucket in &mut hot_buckets {
            bucket.bucket = bucket.bucket.take().or_else(|| fixed.clone());
        }
        Ok(SourceStatus {
            hot: count(0),
            archived: count(1),
            pending_hot_delete: count(2),
            quarantined: count(3),
            missing: count(4),
            lost: count(5),
            failing: count(6),
            waiting: count(7),
            claimed: count(8),
            hot_buckets,
            cold_buckets: usage(next()),
            quarantined_rows: row_states(next()),
            missing_rows: row_states(next()),
            lost_rows: row_states(next()),
            failing_rows: row_states(next()),
        })
    }

    /// The hot buckets its rows are in, each with the smallest hot path
    /// in it: `(bucket, path, rows)`, at most `limit`.
    pub async fn hot_samples(&self, limit: usize) -> Result<Vec<(String, String, u64)>> {
        let rows = self
            .catalog
            .run_statements(&[self.sql.sample_hot_paths(limit)])
            .await?;
        let fixed = match &self.spec.hot.bucket {
            HotBucket::Fixed(bucket) => Some(bucket.value.clone()),
            HotBucket::Column(_) => None,
        };
        Ok(rows
            .into_iter()
            .flatten()
            .filter_map(|row| {
                let text = |i: usize| row.get(i).cloned().flatten();
                let bucket = text(0).or_else(|| fixed.clone())?;
                let rows = text(2).map_or(0, |n| size(&n));
                (rows > 0).then_some(())?;
                Some((bucket, text(1)?, rows))
            })
            .collect())
    }
}

/// `GROUP BY` and `ORDER BY` the expressions that are columns (Postgres
/// refuses a constant there); none: one group, the whole table.
fn grouped(exprs: &[&str]) -> String {
    let columns: Vec<&str> = exprs.iter().copied().filter(|e| *e != "NULL").collect();
    if columns.is_empty() {
        return String::new();
    }
    let columns = columns.join(", ");
    format!("GROUP BY {columns} ORDER BY {columns}")
}

fn usage(rows: Vec<TextRow>) -> Vec<BucketUsage> {
    rows.into_iter()
        .map(|row| {
            let text = |i: usize| row.get(i).cloned().flatten();
            let n = |i: usize| text(i).map_or(0, |n| size(&n));
            BucketUsage {
                bucket: text(0),
                provider: text(1),
                blobs: n(2),
                bytes: n(3),
                blobs_without_size: n(4),
            }
        })
        // Without a group, an empty table still answers one row.
        .filter(|b| b.blobs > 0)
        .collect()
}

fn row_states(rows: Vec<TextRow>) -> Vec<RowState> {
    rows.into_iter()
        .map(|row| {
            let text = |i: usize| row.get(i).cloned().flatten();
            RowState {
                key: text(0).unwrap_or_default(),
                parent: text(1),
                reason: text(2),
                attempts: text(3).map_or(0, |n| size(&n)),
                missing_since: text(4).and_then(|s| epoch_time(&s)),
                retry_at: text(5).and_then(|s| epoch_time(&s)),
            }
        })
        .collect()
}
