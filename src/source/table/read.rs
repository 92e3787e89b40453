//! Reading a declared source's rows as they are, for `coldsweep get` (one
//! row by its key) and `coldsweep verify` (the archived rows, in the key's
//! own order). Read-only: nothing here takes a lease or writes.
//!
//! A key arrives as text and is checked in Rust against the key column's
//! type before any query (digits for an integer key, a uuid for a uuid
//! key), so a malformed key is an [`ErrorKind::InvalidInput`] error naming
//! the source, never a cast error of the database; it is then bound as
//! text and cast to the column's type in SQL ([`Sql::key_param`]), so
//! `--after 2` resumes at 10, not at 3.

use chrono::{DateTime, Utc};

use crate::catalog::{SqlValue, Statement, TextRow};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{ArchiveCandidate, ArchivedAt, BlobState, CatalogDigest};
use crate::source::spec::HotBucket;

use super::sql::{KeyType, Sql, col};
use super::{TableSource, epoch_time};

/// One row of a declared source as the catalog holds it: the table's
/// columns the declaration names and coldsweep's record in the side table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRow {
    /// The row's key, as the database writes it as text.
    pub key: String,
    /// The parent key, for a source with a parent.
    pub parent: Option<String>,
    /// The hot bucket (the column's value, or the source's fixed bucket).
    pub hot_bucket: Option<String>,
    /// The hot path column.
    pub hot_path: Option<String>,
    /// When coldsweep deleted the hot copy (side table).
    pub hot_deleted_at: Option<DateTime<Utc>>,
    /// The stored size the table records.
    pub stored_size: Option<i64>,
    /// The decoded size the table records.
    pub decoded_size: Option<i64>,
    /// The digest the table records.
    pub digest: Option<CatalogDigest>,
    /// The content type the table records.
    pub content_type: Option<String>,
    /// The content encoding the table records.
    pub content_encoding: Option<String>,
    /// The cold copy coldsweep recorded (side table).
    pub cold: Option<ArchivedAt>,
    /// When it was recorded.
    pub archived_at: Option<DateTime<Utc>>,
    /// `quarantined`, `missing` or `lost`, as the side table records it.
    pub recorded_state: Option<String>,
    /// The reason recorded with the state or the last failure.
    pub error: Option<String>,
    /// When a sweep first found the blob missing from both stores.
    pub missing_since: Option<DateTime<Utc>>,
}

impl TableRow {
    /// The row still has its hot copy: a path, and no hot delete recorded.
    pub fn is_hot(&self) -> bool {
        self.hot_path.is_some() && self.hot_deleted_at.is_none()
    }

    /// Where the row's blob is, as the catalog says.
    pub fn state(&self) -> BlobState {
        match self.recorded_state.as_deref() {
            Some("lost") => BlobState::Lost,
            Some("missing") => BlobState::Missing,
            Some("quarantined") => BlobState::Quarantined,
            _ if self.is_hot() => BlobState::Hot,
            _ if self.cold.is_some() => BlobState::Archived,
            _ => BlobState::None,
        }
    }

    /// What the integrity checks take: the row's sizes, digest and
    /// encoding, for the copy at `bucket`/`key`.
    pub fn as_candidate(&self, bucket: &str, key: &str) -> ArchiveCandidate {
        ArchiveCandidate {
            task_id: self.key.clone(),
            job_id: self.parent.clone().unwrap_or_default(),
            storage_bucket: bucket.to_owned(),
            storage_path: key.to_owned(),
            sha256: None,
            compressed_size_bytes: self.stored_size,
            size_bytes: self.decoded_size,
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            archived_at: None,
            attempts: 0,
            claims: 0,
            missing_since: self.missing_since,
            digest: self.digest.clone(),
            cold_name: None,
        }
    }
}

impl TableSource {
    /// `key` as the key column's type takes it (an integer's digits, a
    /// uuid in its hyphenated form, text as given); anything else is an
    /// [`ErrorKind::InvalidInput`] error naming the source and the type.
    pub fn parse_key(&self, key: &str) -> Result<String> {
        let refused = |expected: &str| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "source {:?}: key {key:?} is not {expected} (the type of its key column {})",
                    self.spec.name.value, self.spec.key.value
                ),
            )
        };
        match self.sql.types.key {
            KeyType::Integer => key
                .trim()
                .parse::<i64>()
                .map(|n| n.to_string())
                .map_err(|_| refused("an integer")),
            KeyType::Uuid => uuid::Uuid::parse_str(key.trim())
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| refused("a uuid")),
            KeyType::Text if key.is_empty() => Err(refused("a key")),
            KeyType::Text => Ok(key.to_owned()),
        }
    }

    /// The row with key `key` (see [`TableSource::parse_key`]), or `None`.
    pub async fn row(&self, key: &str) -> Result<Option<TableRow>> {
        let key = self.parse_key(key)?;
        let statement = self.sql.row(key);
        let rows = self.catalog.run_statements(&[statement]).await?;
        match rows.into_iter().flatten().next() {
            Some(row) => self.table_row(&row).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` archived rows (a cold copy recorded, the hot copy
    /// gone, no state) after key `after`, in the key's own order.
    pub async fn archived_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<TableRow>> {
        let after = after.map(|a| self.parse_key(a)).transpose()?;
        let statement = self.sql.archived_after(after, limit);
        let rows = self.catalog.run_statements(&[statement]).await?;
        rows.into_iter()
            .flatten()
            .map(|row| self.table_row(&row))
            .collect()
    }

    /// A [`TableRow`] from a row of [`Sql::row`]'s columns.
    fn table_row(&self, row: &TextRow) -> Result<TableRow> {
        let text = |i: usize| row.get(i).cloned().flatten();
        let key = text(0).unwrap_or_default();
        let int = |i: usize, what: &str| -> Result<Option<i64>> {
            text(i)
                .map(|n| {
                    n.trim().parse::<i64>().map_err(|_| {
                        Error::new(
                            ErrorKind::InvalidInput,
                            format!(
                                "source {:?}, row {key}: {what} {n:?} is not an integer",
                                self.spec.name.value
                            ),
                        )
                    })
                })
                .transpose()
        };
        let hot_bucket = match &self.spec.hot.bucket {
            HotBucket::Column(_) => text(2),
            HotBucket::Fixed(bucket) => Some(bucket.value.clone()),
        };
        let digest = match (&self.spec.columns.digest, text(6)) {
            (Some(spec), Some(hex)) if !hex.trim().is_empty() => Some(CatalogDigest {
                algorithm: spec.algorithm,
                of: spec.of,
                hex,
            }),
            _ => None,
        };
        let cold = match (text(9), text(10), text(11)) {
            (Some(provider), Some(bucket), Some(key)) => Some(ArchivedAt {
                provider,
                bucket,
                key,
            }),
            _ => None,
        };
        Ok(TableRow {
            parent: text(1),
            hot_bucket,
            hot_path: text(3),
            stored_size: int(4, "the stored size")?,
            decoded_size: int(5, "the decoded size")?,
            digest,
            content_type: text(7),
            content_encoding: text(8),
            cold,
            recorded_state: text(12),
            error: text(13),
            missing_since: text(14).and_then(|s| epoch_time(&s)),
            hot_deleted_at: text(15).and_then(|s| epoch_time(&s)),
            archived_at: text(16).and_then(|s| epoch_time(&s)),
            key,
        })
    }
}

impl Sql {
    /// The columns [`TableSource::table_row`] reads, from `t` and `s`.
    fn row_columns(&self) -> String {
        let c = &self.spec.columns;
        let opt = |column: Option<&crate::catalog::Ident>| match column {
            Some(column) => self.text(&col("t", column)),
            None => "NULL".to_owned(),
        };
        let bucket = match &self.spec.hot.bucket {
            HotBucket::Column(bucket) => Some(&bucket.value),
            HotBucket::Fixed(_) => None,
        };
        [
            self.text(&format!("t.{}", self.key)),
            opt(self.spec.parent.as_ref().map(|p| &p.foreign_key.value)),
            opt(bucket),
            opt(Some(&self.spec.hot.path_column.value)),
            opt(c.stored_size.as_ref().map(|s| &s.value)),
            opt(c.decoded_size.as_ref().map(|s| &s.value)),
            opt(c.digest.as_ref().map(|d| &d.column.value)),
            opt(c.content_type.as_ref().map(|s| &s.value)),
            opt(c.content_encoding.as_ref().map(|s| &s.value)),
            "s.cold_provider".to_owned(),
            "s.cold_bucket".to_owned(),
            "s.cold_key".to_owned(),
            "s.state".to_owned(),
            "s.error".to_owned(),
            self.text(&self.epoch("s.missing_since")),
            self.text(&self.epoch("s.hot_deleted_at")),
            self.text(&self.epoch("s.archived_at")),
        ]
        .join(", ")
    }

    /// The row whose key is `$1`, with its side row if it has one.
    pub(super) fn row(&self, key: String) -> Statement {
        Statement::new(
            format!(
                "SELECT {columns}
                 FROM {table} t LEFT JOIN {side} s ON s.row_key = t.{key_col}
                 WHERE t.{key_col} = {key}",
                columns = self.row_columns(),
                table = self.table,
                side = self.side,
                key_col = self.key,
                key = self.key_param(self.types.key, 1),
            ),
            vec![SqlValue::Text(key)],
        )
    }

    /// Archived rows after key `$1` (when given), in the key's order, at most `limit`.
    pub(super) fn archived_after(&self, after: Option<String>, limit: usize) -> Statement {
        let limit = SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX));
        let (after_sql, binds) = match after {
            Some(after) => (
                format!(
                    " AND t.{} > {}",
                    self.key,
                    self.key_param(self.types.key, 1)
                ),
                vec![SqlValue::Text(after), limit],
            ),
            None => (String::new(), vec![limit]),
        };
        let n = binds.len();
        Statement::new(
            format!(
                "SELECT {columns}
                 FROM {table} t JOIN {side} s ON s.row_key = t.{key_col}
                 WHERE s.cold_key IS NOT NULL AND s.state IS NULL
                   AND NOT ({hot}){after_sql}
                 ORDER BY t.{key_col}
                 LIMIT ${n}",
                columns = self.row_columns(),
                table = self.table,
                side = self.side,
                key_col = self.key,
                hot = self.hot("t", "s"),
            ),
            binds,
        )
    }
}
