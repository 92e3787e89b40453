//! The statements of a declared source, built once from its declaration:
//! every table and column name is a checked, quoted identifier, the
//! operator's condition is placed only inside the `WHERE` that selects
//! rows, and every value is bound. Keys are bound as text and cast to the
//! key column's own type in SQL, so `id = $1` compares a bigint with a
//! bigint and a walk orders by the key's real type.
//!
//! Aliases: `t` the source table, `s` (or `o` inside a claim) its side
//! table, `p` the parent table, `c` the source table again inside the
//! condition's `EXISTS`, so that the condition's unqualified names can only
//! mean the source table's columns.

use crate::catalog::{Dialect, Ident, SqlValue, Statement, TableName, TypeFamily};
use crate::source::spec::{ColdLocation, HotBucket, RuleScope, SIDE_TABLE_COLUMNS, SourceSpec};

/// The key's type, as SQL casts to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyType {
    Integer,
    Uuid,
    Text,
}

impl KeyType {
    pub(super) fn of(family: TypeFamily) -> Self {
        match family {
            TypeFamily::Integer { .. } => KeyType::Integer,
            TypeFamily::Uuid => KeyType::Uuid,
            _ => KeyType::Text,
        }
    }
}

/// How a rule column is compared: as an instant, or as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compare {
    Instant,
    AsIs,
}

/// The column types the statements need, read from the live schema.
#[derive(Clone, Debug)]
pub(super) struct Types {
    pub(super) key: KeyType,
    /// The parent key's type (scope = "parent" and the marker).
    pub(super) parent_key: KeyType,
    /// How the order columns compare.
    pub(super) order: Compare,
}

/// One row switched to its cold copy.
pub(super) struct Switch {
    pub(super) id: String,
    pub(super) cold_key: String,
    pub(super) hot_bucket: String,
    pub(super) hot_path: String,
}

/// Every statement of one declared source, in one dialect.
#[derive(Clone, Debug)]
pub(super) struct Sql {
    pub(super) d: Dialect,
    pub(super) spec: SourceSpec,
    pub(super) types: Types,
    /// The source table, quoted.
    pub(super) table: String,
    /// The side table, quoted.
    pub(super) side: String,
    pub(super) key: String,
}

/// A column of alias `alias`, quoted.
pub(super) fn col(alias: &str, column: &Ident) -> String {
    format!("{alias}.{}", column.quoted())
}

impl Sql {
    pub(super) fn new(d: Dialect, spec: SourceSpec, side: &TableName, types: Types) -> Self {
        Self {
            d,
            table: spec.table.value.quoted(),
            side: side.quoted(),
            key: spec.key.value.quoted(),
            spec,
            types,
        }
    }

    // -- fragments ----------------------------------------------------------

    pub(super) fn cast_type(&self, key: KeyType) -> &'static str {
        match (self.d, key) {
            (Dialect::Postgres, KeyType::Integer) => "bigint",
            (Dialect::Postgres, KeyType::Uuid) => "uuid",
            (Dialect::Postgres, KeyType::Text) => "text",
            (Dialect::Sqlite, KeyType::Integer) => "INTEGER",
            (Dialect::Sqlite, _) => "TEXT",
        }
    }

    /// Placeholder `n`, a key as text, in the key's own type.
    pub(super) fn key_param(&self, key: KeyType, n: usize) -> String {
        format!("CAST(${n} AS {})", self.cast_type(key))
    }

    /// `expr` is one of the keys in list placeholder `n`.
    pub(super) fn key_in(&self, key: KeyType, expr: &str, n: usize) -> String {
        match self.d {
            Dialect::Postgres => format!("{expr} = ANY(CAST(${n} AS {}[]))", self.cast_type(key)),
            Dialect::Sqlite => format!(
                "{expr} IN (SELECT CAST(value AS {}) FROM json_each(${n}))",
                self.cast_type(key)
            ),
        }
    }

    /// `expr` is one of the texts in list placeholder `n`.
    pub(super) fn text_in(&self, expr: &str, n: usize) -> String {
        match self.d {
            Dialect::Postgres => format!("{expr} = ANY(${n})"),
            Dialect::Sqlite => format!("{expr} IN (SELECT value FROM json_each(${n}))"),
        }
    }

    pub(super) fn text(&self, expr: &str) -> String {
        format!("CAST({expr} AS TEXT)")
    }

    /// The value for text `key_text` in map placeholder `n`.
    pub(super) fn lookup(&self, n: usize, key_text: &str) -> String {
        match self.d {
            Dialect::Postgres => format!("(CAST(${n} AS jsonb) ->> {key_text})"),
            Dialect::Sqlite => {
                format!("(SELECT value FROM json_each(${n}) WHERE key = {key_text})")
            }
        }
    }

    /// `column < $n`, both instants (SQLite keeps times as text of
    /// several formats: compared through `julianday`).
    pub(super) fn before(&self, column: &str, n: usize) -> String {
        match self.d {
            Dialect::Postgres => format!("{column} < ${n}"),
            Dialect::Sqlite => format!("julianday({column}) < julianday(${n})"),
        }
    }

    pub(super) fn at_or_after(&self, column: &str, n: usize) -> String {
        match self.d {
            Dialect::Postgres => format!("{column} >= ${n}"),
            Dialect::Sqlite => format!("julianday({column}) >= julianday(${n})"),
        }
    }

    /// Seconds since the epoch of a time column (SQLite: text in any
    /// format `julianday` reads, or a number of Unix seconds).
    pub(super) fn epoch(&self, expr: &str) -> String {
        match self.d {
            Dialect::Postgres => format!("EXTRACT(EPOCH FROM {expr})"),
            Dialect::Sqlite => format!(
                "(CASE WHEN typeof({expr}) IN ('integer', 'real') THEN {expr} \
                 ELSE (julianday({expr}) - 2440587.5) * 86400.0 END)"
            ),
        }
    }

    /// The fence on side alias `s`: the lease is `$owner`'s and live at `$now`.
    pub(super) fn fence(&self, s: &str, owner: usize, now: usize) -> String {
        format!(
            "{s}.lease_owner = ${owner} AND {}",
            self.at_or_after(&format!("{s}.lease_expires_at"), now)
        )
    }

    /// A row still has its hot copy (as far as coldsweep knows).
    pub(super) fn hot(&self, t: &str, s: &str) -> String {
        let mut hot = format!(
            "{} IS NOT NULL AND {s}.hot_deleted_at IS NULL",
            col(t, &self.spec.hot.path_column.value)
        );
        if let HotBucket::Column(bucket) = &self.spec.hot.bucket {
            hot.push_str(&format!(" AND {} IS NOT NULL", col(t, &bucket.value)));
        }
        hot
    }

    /// A row a sweep may claim at `$n`: no state but a due `missing`, no
    /// live lease or back-off.
    pub(super) fn free(&self, s: &str, n: usize) -> String {
        format!(
            "({s}.state IS NULL OR {s}.state = 'missing') \
             AND ({s}.lease_expires_at IS NULL OR {})",
            self.before(&format!("{s}.lease_expires_at"), n)
        )
    }

    /// The operator's condition on row `t`, or nothing.
    pub(super) fn condition(&self, t: &str) -> Option<String> {
        self.spec.rule.condition.as_ref().map(|condition| {
            format!(
                "EXISTS (SELECT 1 FROM {} c WHERE c.{key} = {t}.{key} AND {})",
                self.table,
                condition.value.parenthesized(),
                key = self.key,
            )
        })
    }

    pub(super) fn considered(&self, t: &str) -> String {
        self.condition(t).unwrap_or_else(|| "1 = 1".to_owned())
    }

    /// The unit of row `t`: itself, or its parent.
    pub(super) fn unit(&self, t: &str) -> (String, KeyType) {
        match (&self.spec.rule.scope, &self.spec.parent) {
            (RuleScope::Parent, Some(parent)) => {
                (col(t, &parent.foreign_key.value), self.types.parent_key)
            }
            _ => (format!("{t}.{}", self.key), self.types.key),
        }
    }

    /// The first non-NULL of the age columns on `alias`, as epoch
    /// seconds; a row restored to hot storage (side alias `s`) ages from
    /// its restore.
    pub(super) fn age(&self, alias: &str, side: Option<&str>) -> String {
        let mut parts: Vec<String> = side
            .map(|s| self.epoch(&format!("{s}.restored_at")))
            .into_iter()
            .collect();
        parts.extend(
            self.spec
                .rule
                .age_columns
                .iter()
                .map(|c| self.epoch(&col(alias, &c.value))),
        );
        match parts.len() {
            0 => "NULL".to_owned(),
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => format!("COALESCE({})", parts.join(", ")),
        }
    }

    /// The rank of unit `alias` among the considered ones of its group,
    /// newest first (a NULL order last), or "1" for all without `keep_newest`.
    pub(super) fn rank(&self, alias: &str, key: &str, considered: &str) -> String {
        if self.spec.rule.keep_newest.is_none() {
            return format!("CASE WHEN {considered} THEN '1' END");
        }
        let order: Vec<String> = self
            .spec
            .rule
            .order()
            .iter()
            .map(|c| match self.types.order {
                Compare::Instant => self.epoch(&col(alias, &c.value)),
                Compare::AsIs => col(alias, &c.value),
            })
            .collect();
        let order = match order.len() {
            1 => order.into_iter().next().unwrap_or_default(),
            _ => format!("COALESCE({})", order.join(", ")),
        };
        let mut partition = vec![format!("CASE WHEN {considered} THEN 1 ELSE 0 END")];
        partition.extend(self.spec.rule.group_by.iter().map(|g| col(alias, &g.value)));
        format!(
            "CASE WHEN {considered} THEN {} END",
            self.text(&format!(
                "ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {order} DESC NULLS LAST, {key} DESC)",
                partition.join(", ")
            ))
        )
    }

    pub(super) fn size(&self, t: &str) -> String {
        match &self.spec.columns.stored_size {
            Some(size) => col(t, &size.value),
            None => "NULL".to_owned(),
        }
    }

    // -- statements ---------------------------------------------------------

    /// `CREATE TABLE IF NOT EXISTS` of the side table.
    pub(super) fn create_side_table(&self) -> Statement {
        let columns: Vec<String> = SIDE_TABLE_COLUMNS
            .iter()
            .map(|c| {
                let ty = match (self.d, c.postgres) {
                    (_, "key") => self.cast_type(self.types.key),
                    (Dialect::Postgres, ty) => ty,
                    (Dialect::Sqlite, _) => c.sqlite,
                };
                let pk = if c.name == "row_key" {
                    " PRIMARY KEY NOT NULL"
                } else {
                    ""
                };
                format!("{} {ty}{pk}", c.name)
            })
            .collect();
        Statement::new(
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
                self.side,
                columns.join(",\n    ")
            ),
            Vec::new(),
        )
    }

    /// Each unit's standing at `free_before`: key, age (epoch seconds),
    /// rank among the considered units of its group, movable (0/1), hot
    /// bytes, movable bytes. Rows: every unit with a hot row.
    pub(super) fn standings(&self, free_before: SqlValue, finished: &[String]) -> Statement {
        let free = self.free("s", 1);
        let considered = self.considered("t");
        let size = format!("COALESCE({}, 0)", self.size("t"));
        match (&self.spec.rule.scope, &self.spec.parent) {
            (RuleScope::Parent, Some(parent)) => {
                let pk = col("p", &parent.key.value);
                let status = col("p", &parent.status_column.value);
                let finished_sql = self.text_in(&status, 2);
                let rank = self.rank("p", &pk, &finished_sql);
                let sql = format!(
                    "SELECT {k}, {age}, rank, movable, hot, moving FROM (
                        SELECT {pk} AS pk, {rank} AS rank, {age_inner} AS age_inner,
                               {movable} AS movable, {hot} AS hot, {moving} AS moving,
                               hot_rows.unit AS unit
                        FROM {parent} p LEFT JOIN (
                            SELECT {fk} AS unit,
                                   MAX(CASE WHEN {free} AND {considered} THEN 1 ELSE 0 END) AS movable,
                                   SUM({size}) AS hot,
                                   SUM(CASE WHEN {free} AND {considered} THEN {size} ELSE 0 END) AS moving
                            FROM {table} t LEFT JOIN {side} s ON s.row_key = t.{key}
                            WHERE {hot_row}
                            GROUP BY {fk}
                        ) hot_rows ON hot_rows.unit = {pk}
                        WHERE {finished_sql} OR hot_rows.unit IS NOT NULL
                    ) units WHERE unit IS NOT NULL",
                    k = self.text("pk"),
                    age = self.text("age_inner"),
                    age_inner = self.age("p", None),
                    movable = self.text(&format!("CASE WHEN {finished_sql} THEN hot_rows.movable ELSE 0 END")),
                    hot = self.text("hot_rows.hot"),
                    moving = self.text(&format!("CASE WHEN {finished_sql} THEN hot_rows.moving ELSE 0 END")),
                    parent = parent.table.value.quoted(),
                    fk = col("t", &parent.foreign_key.value),
                    table = self.table,
                    side = self.side,
                    key = self.key,
                    hot_row = self.hot("t", "s"),
                );
                Statement::new(
                    sql,
                    vec![free_before, SqlValue::TextList(finished.to_vec())],
                )
            }
            _ => {
                let key = format!("t.{}", self.key);
                let movable = format!("CASE WHEN {free} AND {considered} THEN '1' ELSE '0' END");
                let moving = format!(
                    "CASE WHEN {free} AND {considered} THEN {} ELSE '0' END",
                    self.text(&size)
                );
                let sql = format!(
                    "SELECT {k}, {age}, {rank}, {movable}, {hot}, {moving}
                     FROM {table} t LEFT JOIN {side} s ON s.row_key = t.{key_col}
                     WHERE {hot_row}",
                    k = self.text(&key),
                    age = self.text(&self.age("t", Some("s"))),
                    rank = self.rank("t", &key, &considered),
                    movable = movable,
                    hot = self.text(&size),
                    moving = moving,
                    table = self.table,
                    side = self.side,
                    key_col = self.key,
                    hot_row = self.hot("t", "s"),
                );
                Statement::new(sql, vec![free_before])
            }
        }
    }

    /// Claim up to `limit` claimable rows of `units` for `owner` until
    /// `until`; returns the keys claimed. One statement: on Postgres the
    /// rows are picked `FOR UPDATE SKIP LOCKED`, on SQLite the statement
    /// is the only writer; either way the upsert's `WHERE` re-checks each
    /// side row, so a row another worker took meanwhile is not returned.
    pub(super) fn claim(
        &self,
        units: Vec<String>,
        free_before: SqlValue,
        limit: usize,
        owner: &str,
        until: SqlValue,
    ) -> Statement {
        let (unit, unit_type) = self.unit("t");
        let pick = format!(
            "FROM {table} t LEFT JOIN {side} o ON o.row_key = t.{key}
             WHERE {units} AND {hot} AND {free} AND {considered}
             ORDER BY t.{key}
             LIMIT $3",
            table = self.table,
            side = self.side,
            key = self.key,
            units = self.key_in(unit_type, &unit, 1),
            hot = self.hot("t", "o"),
            free = self.free("o", 2),
            considered = self.considered("t"),
        );
        let upsert = format!(
            "ON CONFLICT (row_key) DO UPDATE
                 SET lease_owner = excluded.lease_owner,
                     lease_expires_at = excluded.lease_expires_at,
                     claims = s.claims + 1
                 WHERE s.hot_deleted_at IS NULL AND {free}
             RETURNING {key}",
            free = self.free("s", 2),
            key = self.text("row_key"),
        );
        let sql = match self.d {
            Dialect::Postgres => format!(
                "WITH picked AS (SELECT t.{key} AS k {pick} FOR UPDATE OF t SKIP LOCKED)
                 INSERT INTO {side} AS s (row_key, lease_owner, lease_expires_at, claims)
                 SELECT k, $4, $5, 1 FROM picked
                 {upsert}",
                key = self.key,
                side = self.side,
            ),
            Dialect::Sqlite => format!(
                "INSERT INTO {side} AS s (row_key, lease_owner, lease_expires_at, claims)
                 SELECT t.{key}, $4, $5, 1 {pick}
                 {upsert}",
                key = self.key,
                side = self.side,
            ),
        };
        Statement::new(
            sql,
            vec![
                SqlValue::TextList(units),
                free_before,
                SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
                SqlValue::Text(owner.to_owned()),
                until,
            ],
        )
    }

    /// The claimed rows `keys` held by `owner`, as [`CandidateRow`]s read
    /// them (see [`Sql::CANDIDATE_COLUMNS`]), then each template column.
    pub(super) fn candidates(&self, keys: Vec<String>, owner: &str) -> Statement {
        let c = &self.spec.columns;
        let opt = |column: &Option<crate::source::spec::At<Ident>>| match column {
            Some(column) => self.text(&col("t", &column.value)),
            None => "NULL".to_owned(),
        };
        let parent = match &self.spec.parent {
            Some(parent) => self.text(&col("t", &parent.foreign_key.value)),
            None => "NULL".to_owned(),
        };
        let bucket = match &self.spec.hot.bucket {
            HotBucket::Column(bucket) => col("t", &bucket.value),
            HotBucket::Fixed(_) => "NULL".to_owned(),
        };
        let mut columns = vec![
            self.text(&format!("t.{}", self.key)),
            parent,
            bucket,
            col("t", &self.spec.hot.path_column.value),
            opt(&c.stored_size),
            opt(&c.decoded_size),
            opt(&c.digest.as_ref().map(|d| d.column.clone())),
            opt(&c.content_type),
            opt(&c.content_encoding),
            "s.cold_provider".to_owned(),
            "s.cold_bucket".to_owned(),
            "s.cold_key".to_owned(),
            self.text("s.attempts"),
            self.text("s.claims"),
            self.text(&self.epoch("s.missing_since")),
        ];
        columns.extend(
            self.spec
                .cold_key
                .value
                .columns()
                .map(|column| self.text(&col("t", column))),
        );
        Statement::new(
            format!(
                "SELECT {}
                 FROM {} t JOIN {} s ON s.row_key = t.{}
                 WHERE {} AND s.lease_owner = $2
                 ORDER BY t.{}",
                columns.join(", "),
                self.table,
                self.side,
                self.key,
                self.key_in(self.types.key, "s.row_key", 1),
                self.key,
            ),
            vec![SqlValue::TextList(keys), SqlValue::Text(owner.to_owned())],
        )
    }

    /// Record the cold copies (`keys`: row key → cold key) of the rows
    /// `fence` holds, and the hot location each came from: in the side
    /// table, and on the table's cold columns when it has them. Returns the
    /// keys written.
    pub(super) fn record_archived(
        &self,
        switches: &[Switch],
        provider: &str,
        bucket: &str,
        owner: &str,
        now: SqlValue,
    ) -> Vec<Statement> {
        let pairs = |f: fn(&Switch) -> &str| -> Vec<(String, String)> {
            switches
                .iter()
                .map(|w| (w.id.clone(), f(w).to_owned()))
                .collect()
        };
        let keys = pairs(|w| &w.cold_key);
        let hot_buckets = pairs(|w| &w.hot_bucket);
        let hot_paths = pairs(|w| &w.hot_path);
        let ids: Vec<String> = switches.iter().map(|w| w.id.clone()).collect();
        let cold_key = self.lookup(2, &self.text("row_key"));
        let side = Statement::new(
            format!(
                "UPDATE {side} SET cold_provider = $3, cold_bucket = $4, cold_key = {cold_key},
                     hot_bucket = {hot_bucket}, hot_path = {hot_path},
                     archived_at = CASE
                         WHEN cold_provider = $3 AND cold_bucket = $4 AND cold_key = {cold_key}
                         THEN COALESCE(archived_at, $5) ELSE $5 END
                 WHERE {ids} AND {fence}
                 RETURNING {key}",
                side = self.side,
                ids = self.key_in(self.types.key, "row_key", 1),
                fence = self.fence(&self.side, 6, 5),
                key = self.text("row_key"),
                hot_bucket = self.lookup(7, &self.text("row_key")),
                hot_path = self.lookup(8, &self.text("row_key")),
            ),
            vec![
                SqlValue::TextList(ids.clone()),
                SqlValue::TextMap(keys.clone()),
                SqlValue::Text(provider.to_owned()),
                SqlValue::Text(bucket.to_owned()),
                now.clone(),
                SqlValue::Text(owner.to_owned()),
                SqlValue::TextMap(hot_buckets),
                SqlValue::TextMap(hot_paths),
            ],
        );
        let mut statements = vec![side];
        if let ColdLocation::Columns(cold) = &self.spec.cold {
            statements.push(Statement::new(
                format!(
                    "UPDATE {table} AS t SET {p} = $3, {b} = $4, {k} = {cold_key}, {a} = $5
                     WHERE {ids} AND EXISTS (
                         SELECT 1 FROM {side} s
                         WHERE s.row_key = t.{key} AND s.cold_key IS NOT NULL AND {fence})",
                    table = self.table,
                    p = cold.provider.value.quoted(),
                    b = cold.bucket.value.quoted(),
                    k = cold.key.value.quoted(),
                    a = cold.archived_at.value.quoted(),
                    cold_key = self.lookup(2, &self.text(&format!("t.{}", self.key))),
                    ids = self.key_in(self.types.key, &format!("t.{}", self.key), 1),
                    side = self.side,
                    key = self.key,
                    fence = self.fence("s", 6, 5),
                ),
                vec![
                    SqlValue::TextList(ids),
                    SqlValue::TextMap(keys),
                    SqlValue::Text(provider.to_owned()),
                    SqlValue::Text(bucket.to_owned()),
                    now,
                    SqlValue::Text(owner.to_owned()),
                ],
            ));
        }
        statements
    }

    /// The hot copies of `ids` are gone: record it (only where a cold copy
    /// is recorded), clear the path when the source says so, end the
    /// leases. The first statement returns the keys cleared.
    pub(super) fn clear_hot(&self, ids: Vec<String>, owner: &str, now: SqlValue) -> Vec<Statement> {
        let binds = vec![
            SqlValue::TextList(ids),
            SqlValue::Text(owner.to_owned()),
            now,
        ];
        let mut statements = vec![Statement::new(
            format!(
                "UPDATE {side} SET hot_deleted_at = $3
                 WHERE {ids} AND cold_key IS NOT NULL AND {fence}
                 RETURNING {key}",
                side = self.side,
                ids = self.key_in(self.types.key, "row_key", 1),
                fence = self.fence(&self.side, 2, 3),
                key = self.text("row_key"),
            ),
            binds.clone(),
        )];
        if self.spec.hot.clear_path {
            statements.push(Statement::new(
                format!(
                    "UPDATE {table} AS t SET {path} = NULL
                     WHERE {ids} AND EXISTS (
                         SELECT 1 FROM {side} s
                         WHERE s.row_key = t.{key} AND s.hot_deleted_at IS NOT NULL AND {fence})",
                    table = self.table,
                    path = self.spec.hot.path_column.value.quoted(),
                    ids = self.key_in(self.types.key, &format!("t.{}", self.key), 1),
                    side = self.side,
                    key = self.key,
                    fence = self.fence("s", 2, 3),
                ),
                binds.clone(),
            ));
        }
        statements.push(Statement::new(
            format!(
                "UPDATE {side} SET lease_owner = NULL, lease_expires_at = NULL, error = NULL
                 WHERE {ids} AND hot_deleted_at IS NOT NULL AND {fence}",
                side = self.side,
                ids = self.key_in(self.types.key, "row_key", 1),
                fence = self.fence(&self.side, 2, 3),
            ),
            binds,
        ));
        statements
    }

    /// A fenced write of one side row: `set` (binding from `$4` on) where
    /// the row is `$1`, the fence `$2` owner, `$3` now, and `extra` holds.
    pub(super) fn fenced(
        &self,
        set: &str,
        extra: &str,
        id: &str,
        owner: &str,
        now: SqlValue,
        more: Vec<SqlValue>,
    ) -> Statement {
        let mut binds = vec![
            SqlValue::Text(id.to_owned()),
            SqlValue::Text(owner.to_owned()),
            now,
        ];
        binds.extend(more);
        Statement::new(
            format!(
                "UPDATE {side} SET {set}
                 WHERE row_key = {id}{extra} AND {fence}
                 RETURNING {key}",
                side = self.side,
                id = self.key_param(self.types.key, 1),
                fence = self.fence(&self.side, 2, 3),
                key = self.text("row_key"),
            ),
            binds,
        )
    }

    /// A write of the side rows `ids`: `set` (binding from `$3` on) where
    /// `condition` (with `$2`) holds. Returns the keys written.
    pub(super) fn many(
        &self,
        set: &str,
        condition: &str,
        ids: Vec<String>,
        second: SqlValue,
        more: Vec<SqlValue>,
    ) -> Statement {
        let mut binds = vec![SqlValue::TextList(ids), second];
        binds.extend(more);
        Statement::new(
            format!(
                "UPDATE {side} SET {set}
                 WHERE {ids} AND {condition}
                 RETURNING {key}",
                side = self.side,
                ids = self.key_in(self.types.key, "row_key", 1),
                key = self.text("row_key"),
            ),
            binds,
        )
    }

    /// Fence `$owner`/`$now` on the side table (for [`Sql::many`]).
    pub(super) fn fence_on_side(&self, owner: usize, now: usize) -> String {
        self.fence(&self.side, owner, now)
    }

    /// The parent marker: finished parents (`$1` statuses) with no row
    /// holding a hot copy or a state, and at least one archived, get `$2`
    /// (the previous status kept where the source says). Returns their keys.
    pub(super) fn mark_parents(&self) -> Option<Statement> {
        let parent = self.spec.parent.as_ref()?;
        let pk = col("p", &parent.key.value);
        let fk = col("t", &parent.foreign_key.value);
        let status = parent.status_column.value.quoted();
        let previous = match &parent.previous_status_column {
            Some(previous) => format!(", {} = p.{status}", previous.value.quoted()),
            None => String::new(),
        };
        Some(Statement::new(
            format!(
                "UPDATE {parent} AS p SET {status} = $2{previous}
                 WHERE {finished}
                   AND EXISTS (
                       SELECT 1 FROM {table} t JOIN {side} s ON s.row_key = t.{key}
                       WHERE {fk} = {pk} AND s.cold_key IS NOT NULL AND s.hot_deleted_at IS NOT NULL)
                   AND NOT EXISTS (
                       SELECT 1 FROM {table} t LEFT JOIN {side} s ON s.row_key = t.{key}
                       WHERE {fk} = {pk} AND (({hot}) OR s.state IS NOT NULL))
                 RETURNING {k}",
                parent = parent.table.value.quoted(),
                finished = self.text_in(&format!("p.{status}"), 1),
                table = self.table,
                side = self.side,
                key = self.key,
                hot = self.hot("t", "s"),
                // SQLite takes no alias-qualified name in RETURNING.
                k = self.text(&parent.key.value.quoted()),
            ),
            vec![
                SqlValue::TextList(parent.finished.value.clone()),
                SqlValue::Text(parent.set.value.clone()),
            ],
        ))
    }

    /// Rows that failed and wait for their back-off to end at `$1`; with
    /// `retry`, their back-off ended now instead. Returns their keys.
    pub(super) fn waiting(&self, now: SqlValue, retry: bool) -> Statement {
        let waiting = format!(
            "state IS NULL AND error IS NOT NULL AND lease_owner IS NULL \
             AND hot_deleted_at IS NULL AND {}",
            self.at_or_after("lease_expires_at", 1)
        );
        let key = self.text("row_key");
        let sql = if retry {
            format!(
                "UPDATE {} SET lease_expires_at = NULL WHERE {waiting} RETURNING {key}",
                self.side
            )
        } else {
            format!("SELECT {key} FROM {} WHERE {waiting}", self.side)
        };
        Statement::new(sql, vec![now])
    }

    /// Hot bytes of every row with a hot copy.
    pub(super) fn hot_bytes(&self) -> Statement {
        Statement::new(
            format!(
                "SELECT {} FROM {} t LEFT JOIN {} s ON s.row_key = t.{} WHERE {}",
                self.text(&format!("SUM(COALESCE({}, 0))", self.size("t"))),
                self.table,
                self.side,
                self.key,
                self.hot("t", "s"),
            ),
            Vec::new(),
        )
    }
}
