//! `coldsweep reset` for a declared source: the built-in's selections
//! (by state, by row, by parent) mapped onto the side table, clearing what
//! the built-in clears (state and reason, attempts, missing-since time and
//! back-off), never a live lease.

use chrono::{DateTime, Utc};

use super::TableSource;
use super::sql::{KeyType, Sql, col};
use crate::catalog::{ResetState, SqlValue, Statement};
use crate::error::{Error, ErrorKind, Result};

/// Which rows of a declared source a reset selects; the selectors combine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableResetFilter {
    /// States to reset; empty means all of them.
    pub states: Vec<ResetState>,
    /// Only these rows, by key (all rows when empty).
    pub keys: Vec<String>,
    /// Only rows of these parents (the source's parent table).
    pub parents: Vec<String>,
}

/// A row a reset would put back into play.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetRow {
    /// The row's key.
    pub key: String,
    /// `lost`, `missing`, `quarantined` or `failing`.
    pub state: String,
    /// The recorded reason.
    pub error: Option<String>,
    /// The row's hot path, when it has one.
    pub path: Option<String>,
}

/// What a reset clears: as the built-in's.
const RESET_SET: &str = "state = NULL, error = NULL, attempts = 0, missing_since = NULL, \
                         lease_owner = NULL, lease_expires_at = NULL";

impl Sql {
    /// The side table condition of `filter` on alias `s` (`$1` now, then
    /// the key list and the parent list where given), and its binds.
    fn reset_where(&self, filter: &TableResetFilter, now: SqlValue) -> (String, Vec<SqlValue>) {
        let states = if filter.states.is_empty() {
            &ResetState::ALL[..]
        } else {
            &filter.states[..]
        };
        let states: Vec<&str> = states
            .iter()
            .map(|state| match state {
                ResetState::Lost => "s.state = 'lost'",
                ResetState::Missing => "s.state = 'missing'",
                ResetState::Quarantined => "s.state = 'quarantined'",
                ResetState::Failing => {
                    "(s.state IS NULL AND s.error IS NOT NULL AND s.hot_deleted_at IS NULL)"
                }
            })
            .collect();
        let mut clause = format!(
            "({}) AND NOT (s.lease_owner IS NOT NULL AND {})",
            states.join(" OR "),
            self.at_or_after("s.lease_expires_at", 1)
        );
        let mut binds = vec![now];
        if !filter.keys.is_empty() {
            binds.push(SqlValue::TextList(filter.keys.clone()));
            clause.push_str(&format!(
                " AND {}",
                self.key_in(self.types.key, "s.row_key", binds.len())
            ));
        }
        if let (false, Some(parent)) = (filter.parents.is_empty(), &self.spec.parent) {
            binds.push(SqlValue::TextList(filter.parents.clone()));
            clause.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM {table} r WHERE r.{key} = s.row_key AND {parents})",
                table = self.table,
                key = self.key,
                parents = self.key_in(
                    self.types.parent_key,
                    &col("r", &parent.foreign_key.value),
                    binds.len()
                ),
            ));
        }
        (clause, binds)
    }

    /// How many rows `filter` selects, then the first `limit` of them:
    /// key, state, error, hot path.
    fn reset_preview(
        &self,
        filter: &TableResetFilter,
        now: SqlValue,
        limit: usize,
    ) -> Vec<Statement> {
        let (clause, binds) = self.reset_where(filter, now);
        let count = Statement::new(
            format!(
                "SELECT {} FROM {} s WHERE {clause}",
                self.text("COUNT(*)"),
                self.side
            ),
            binds.clone(),
        );
        let list = Statement::new(
            format!(
                "SELECT {key}, s.state, s.error, {path}
                 FROM {side} s LEFT JOIN {table} t ON t.{key_col} = s.row_key
                 WHERE {clause}
                 ORDER BY s.row_key
                 LIMIT {limit}",
                key = self.text("s.row_key"),
                path = self.text(&col("t", &self.spec.hot.path_column.value)),
                side = self.side,
                table = self.table,
                key_col = self.key,
            ),
            binds,
        );
        vec![count, list]
    }

    /// The reset itself; returns the keys reset.
    fn reset(&self, filter: &TableResetFilter, now: SqlValue) -> Statement {
        let (clause, binds) = self.reset_where(filter, now);
        Statement::new(
            format!(
                "UPDATE {} AS s SET {RESET_SET} WHERE {clause} RETURNING {}",
                self.side,
                self.text("row_key")
            ),
            binds,
        )
    }
}

impl TableSource {
    /// Fail with [`ErrorKind::InvalidInput`] unless every one of `keys`
    /// reads as this source's key type, and every one of `parents` as its
    /// parent's (a source without a parent takes none).
    pub fn check_keys(&self, keys: &[String], parents: &[String]) -> Result<()> {
        let name = &self.spec.name.value;
        if !parents.is_empty() && self.spec.parent.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("source {name:?} declares no parent: select its rows by key"),
            ));
        }
        for (values, ty, what) in [
            (keys, self.sql.types.key, "key"),
            (parents, self.sql.types.parent_key, "parent key"),
        ] {
            for value in values {
                let fits = match ty {
                    KeyType::Integer => value.trim().parse::<i64>().is_ok(),
                    KeyType::Uuid => uuid::Uuid::parse_str(value.trim()).is_ok(),
                    KeyType::Text => !value.is_empty(),
                };
                if !fits {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "source {name:?}: {value:?} is not a {what} (expected {})",
                            match ty {
                                KeyType::Integer => "an integer",
                                KeyType::Uuid => "a uuid",
                                KeyType::Text => "some text",
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// How many rows a reset with `filter` at `now` would change, and the
    /// first `limit` of them (rows a worker holds are never selected).
    pub async fn reset_preview(
        &self,
        filter: &TableResetFilter,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(u64, Vec<ResetRow>)> {
        self.check_keys(&filter.keys, &filter.parents)?;
        let results = self
            .catalog
            .run_statements(&self.sql.reset_preview(filter, SqlValue::Time(now), limit))
            .await?;
        let count = results
            .first()
            .and_then(|rows| rows.first())
            .and_then(|row| row.first().cloned().flatten())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let rows = results
            .get(1)
            .into_iter()
            .flatten()
            .map(|row| {
                let text = |i: usize| row.get(i).cloned().flatten();
                ResetRow {
                    key: text(0).unwrap_or_default(),
                    state: text(1).unwrap_or_else(|| "failing".to_owned()),
                    error: text(2),
                    path: text(3),
                }
            })
            .collect();
        Ok((count, rows))
    }

    /// Put the rows `filter` selects back into play; returns how many.
    pub async fn reset(&self, filter: &TableResetFilter, now: DateTime<Utc>) -> Result<u64> {
        self.check_keys(&filter.keys, &filter.parents)?;
        let results = self
            .catalog
            .run_statements(&[self.sql.reset(filter, SqlValue::Time(now))])
            .await?;
        Ok(results.iter().flatten().count() as u64)
    }
}
