//! The statements of a restore of a declared source (`coldsweep restore
//! --source`): read the archived rows selected, claim them under a lease on
//! the side table, and the fenced switch back to hot. The copy itself (cold
//! read, hot write, read back) is the restorer's.

use super::TableSource;
use super::sql::{Sql, col};
use crate::catalog::{SqlValue, Statement, TextRow};
use crate::error::Result;
use crate::model::{CatalogDigest, Fence, Lease};
use crate::source::spec::ColdLocation;

/// A selected row of a declared source, as a restore reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedRow {
    /// The row's key.
    pub key: String,
    /// Its parent's key, when the source has a parent.
    pub parent: Option<String>,
    /// The side table's state (`lost`, `missing`, `quarantined`), if any.
    pub state: Option<String>,
    /// The recorded cold provider.
    pub cold_provider: Option<String>,
    /// The recorded cold bucket.
    pub cold_bucket: Option<String>,
    /// The recorded cold key.
    pub cold_key: Option<String>,
    /// The hot bucket the blob came from.
    pub hot_bucket: Option<String>,
    /// The hot path the blob came from.
    pub hot_path: Option<String>,
    /// Whether the hot copy is recorded gone.
    pub hot_deleted: bool,
    /// Stored size, where the table records it.
    pub stored_size: Option<i64>,
    /// The table's digest, where it records one.
    pub digest: Option<CatalogDigest>,
    /// Content type, where the table records it.
    pub content_type: Option<String>,
    /// Content encoding, where the table records it.
    pub content_encoding: Option<String>,
}

/// What one switch back to hot changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Switched {
    /// Rows now hot again (a row missing here was no longer held).
    pub keys: Vec<String>,
    /// Parents whose status came back from the marker's.
    pub parents_reopened: Vec<String>,
}

impl Sql {
    /// The rows `$1` (keys) and the rows of parents `$2`, with their side
    /// rows; with `owner`, only those it holds.
    fn restore_rows(
        &self,
        keys: Vec<String>,
        parents: Vec<String>,
        owner: Option<&str>,
    ) -> Statement {
        let c = &self.spec.columns;
        let opt = |column: &Option<crate::source::spec::At<crate::catalog::Ident>>| match column {
            Some(column) => self.text(&col("t", &column.value)),
            None => "NULL".to_owned(),
        };
        let (parent, parents_in) = match &self.spec.parent {
            Some(parent) => {
                let fk = col("t", &parent.foreign_key.value);
                (
                    self.text(&fk),
                    format!(" OR {}", self.key_in(self.types.parent_key, &fk, 2)),
                )
            }
            None => ("NULL".to_owned(), String::new()),
        };
        let mut binds = vec![SqlValue::TextList(keys)];
        if self.spec.parent.is_some() {
            binds.push(SqlValue::TextList(parents));
        }
        let held = match owner {
            Some(owner) => {
                binds.push(SqlValue::Text(owner.to_owned()));
                format!(" AND s.lease_owner = ${}", binds.len())
            }
            None => String::new(),
        };
        Statement::new(
            format!(
                "SELECT {key}, {parent}, s.state, s.cold_provider, s.cold_bucket, s.cold_key,
                        s.hot_bucket, s.hot_path,
                        CASE WHEN s.hot_deleted_at IS NULL THEN '0' ELSE '1' END,
                        {size}, {digest}, {ctype}, {cenc}
                 FROM {table} t LEFT JOIN {side} s ON s.row_key = t.{key_col}
                 WHERE ({keys_in}{parents_in}){held}
                 ORDER BY t.{key_col}",
                key = self.text(&format!("t.{}", self.key)),
                size = opt(&c.stored_size),
                digest = opt(&c.digest.as_ref().map(|d| d.column.clone())),
                ctype = opt(&c.content_type),
                cenc = opt(&c.content_encoding),
                table = self.table,
                side = self.side,
                key_col = self.key,
                keys_in = self.key_in(self.types.key, &format!("t.{}", self.key), 1),
            ),
            binds,
        )
    }

    /// Claim the archived rows `$1` (cold copy recorded, hot copy gone, no
    /// state, no live lease at `$4`) for `$2` until `$3`.
    fn claim_archived(&self, keys: Vec<String>, lease: &Lease) -> Statement {
        Statement::new(
            format!(
                "UPDATE {side} SET lease_owner = $2, lease_expires_at = $3
                 WHERE {keys} AND cold_key IS NOT NULL AND hot_deleted_at IS NOT NULL
                   AND state IS NULL
                   AND (lease_expires_at IS NULL OR {free})
                 RETURNING {key}",
                side = self.side,
                keys = self.key_in(self.types.key, "row_key", 1),
                free = self.before("lease_expires_at", 4),
                key = self.text("row_key"),
            ),
            vec![
                SqlValue::TextList(keys),
                SqlValue::Text(lease.owner.clone()),
                SqlValue::Time(lease.until),
                SqlValue::Time(lease.free_before),
            ],
        )
    }

    /// The switch back to hot of the rows `$1` that `$2` holds at `$3`, in
    /// one transaction: the path column set again (when the source clears
    /// it), the table's cold columns cleared, the parent's status set back,
    /// and last the side row (hot again, restored now, cold location and
    /// lease cleared), whose statement returns the keys switched.
    fn record_restored(&self, keys: Vec<String>, owner: &str, now: SqlValue) -> Vec<Statement> {
        let binds = vec![
            SqlValue::TextList(keys),
            SqlValue::Text(owner.to_owned()),
            now,
        ];
        let held = format!(
            "EXISTS (SELECT 1 FROM {side} s WHERE s.row_key = t.{key}
                 AND s.hot_deleted_at IS NOT NULL AND s.cold_key IS NOT NULL
                 AND s.hot_path IS NOT NULL AND {fence})",
            side = self.side,
            key = self.key,
            fence = self.fence("s", 2, 3),
        );
        let ids = self.key_in(self.types.key, &format!("t.{}", self.key), 1);
        let mut statements = Vec::new();
        if self.spec.hot.clear_path {
            statements.push(Statement::new(
                format!(
                    "UPDATE {table} AS t SET {path} =
                         (SELECT s.hot_path FROM {side} s WHERE s.row_key = t.{key})
                     WHERE {ids} AND {held}",
                    table = self.table,
                    path = self.spec.hot.path_column.value.quoted(),
                    side = self.side,
                    key = self.key,
                ),
                binds.clone(),
            ));
        }
        if let ColdLocation::Columns(cold) = &self.spec.cold {
            statements.push(Statement::new(
                format!(
                    "UPDATE {table} AS t SET {p} = NULL, {b} = NULL, {k} = NULL, {a} = NULL
                     WHERE {ids} AND {held}",
                    table = self.table,
                    p = cold.provider.value.quoted(),
                    b = cold.bucket.value.quoted(),
                    k = cold.key.value.quoted(),
                    a = cold.archived_at.value.quoted(),
                ),
                binds.clone(),
            ));
        }
        if let Some(parent) = &self.spec.parent
            && let Some(previous) = &parent.previous_status_column
        {
            let status = parent.status_column.value.quoted();
            let previous = previous.value.quoted();
            let mut parent_binds = binds.clone();
            parent_binds.push(SqlValue::Text(parent.set.value.clone()));
            statements.push(Statement::new(
                format!(
                    "UPDATE {parent_table} AS p SET {status} = p.{previous}
                     WHERE p.{status} = $4 AND p.{previous} IS NOT NULL
                       AND EXISTS (SELECT 1 FROM {table} t
                                   WHERE {fk} = {pk} AND {ids} AND {held})
                     RETURNING {k}",
                    parent_table = parent.table.value.quoted(),
                    table = self.table,
                    fk = col("t", &parent.foreign_key.value),
                    pk = col("p", &parent.key.value),
                    // SQLite takes no alias-qualified name in RETURNING.
                    k = self.text(&parent.key.value.quoted()),
                ),
                parent_binds,
            ));
        }
        statements.push(Statement::new(
            format!(
                "UPDATE {side} SET hot_deleted_at = NULL, restored_at = $3,
                     cold_provider = NULL, cold_bucket = NULL, cold_key = NULL,
                     archived_at = NULL, error = NULL,
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE {ids} AND hot_deleted_at IS NOT NULL AND cold_key IS NOT NULL
                   AND hot_path IS NOT NULL AND {fence}
                 RETURNING {key}",
                side = self.side,
                ids = self.key_in(self.types.key, "row_key", 1),
                fence = self.fence(&self.side, 2, 3),
                key = self.text("row_key"),
            ),
            binds,
        ));
        statements
    }
}

impl TableSource {
    /// The rows `keys` and every row of the parents `parents`, as a
    /// restore reads them (by key).
    pub async fn restore_rows(
        &self,
        keys: &[String],
        parents: &[String],
    ) -> Result<Vec<ArchivedRow>> {
        self.check_keys(keys, parents)?;
        let results = self
            .catalog
            .run_statements(&[self.sql.restore_rows(keys.to_vec(), parents.to_vec(), None)])
            .await?;
        Ok(results
            .iter()
            .flatten()
            .map(|r| self.archived_row(r))
            .collect())
    }

    /// Claim the archived rows among `keys` under `lease`; returns them as
    /// the claim left them (a row another worker holds, or no longer
    /// archived, is not among them).
    pub async fn claim_archived(&self, keys: &[String], lease: &Lease) -> Result<Vec<ArchivedRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let claimed = self
            .catalog
            .run_statements(&[self.sql.claim_archived(keys.to_vec(), lease)])
            .await?;
        let claimed: Vec<String> = claimed
            .into_iter()
            .flatten()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let results = self
            .catalog
            .run_statements(&[self
                .sql
                .restore_rows(claimed, Vec::new(), Some(&lease.owner))])
            .await?;
        Ok(results
            .iter()
            .flatten()
            .map(|r| self.archived_row(r))
            .collect())
    }

    /// The switch back to hot of `keys`, held by `fence` (see the module
    /// documentation); a row no longer held is left as it was.
    pub async fn record_restored(&self, keys: &[String], fence: Fence<'_>) -> Result<Switched> {
        if keys.is_empty() {
            return Ok(Switched::default());
        }
        let statements =
            self.sql
                .record_restored(keys.to_vec(), fence.owner, SqlValue::Time(fence.now));
        let parent_marker = statements.len() >= 2
            && self
                .spec
                .parent
                .as_ref()
                .is_some_and(|p| p.previous_status_column.is_some());
        let mut results = self.catalog.run_statements(&statements).await?;
        let first = |rows: Vec<TextRow>| -> Vec<String> {
            rows.into_iter()
                .filter_map(|row| row.into_iter().next().flatten())
                .collect()
        };
        let keys = first(results.pop().unwrap_or_default());
        let parents_reopened = if parent_marker {
            first(results.pop().unwrap_or_default())
        } else {
            Vec::new()
        };
        Ok(Switched {
            keys,
            parents_reopened,
        })
    }

    fn archived_row(&self, row: &TextRow) -> ArchivedRow {
        let text = |i: usize| row.get(i).cloned().flatten();
        let digest = match (&self.spec.columns.digest, text(10)) {
            (Some(spec), Some(hex)) if !hex.trim().is_empty() => Some(CatalogDigest {
                algorithm: spec.algorithm,
                of: spec.of,
                hex,
            }),
            _ => None,
        };
        ArchivedRow {
            key: text(0).unwrap_or_default(),
            parent: text(1),
            state: text(2),
            cold_provider: text(3),
            cold_bucket: text(4),
            cold_key: text(5),
            hot_bucket: text(6),
            hot_path: text(7),
            hot_deleted: text(8).is_some_and(|d| d.trim() == "1"),
            stored_size: text(9).and_then(|n| n.trim().parse().ok()),
            digest,
            content_type: text(11),
            content_encoding: text(12),
        }
    }
}
