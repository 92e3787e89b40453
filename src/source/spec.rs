//! Source declarations: one `[[sources]]` entry of the config file says
//! which table holds references to blobs, which rows may move, where the
//! cold copy is recorded and what key it gets. This module reads them
//! ([`parse_sources`]), checks each on its own (identifiers, the key
//! template, the rule's settings, duplicate names), and checks them against
//! the catalog's live schema ([`validate_sources`]). Every problem names
//! the source, the setting, the column and the config line ([`SpecProblem`]).
//! The crawler's task HTML is one such declaration too ([`task_html`]).
//!
//! ```toml
//! [[sources]]
//! name = "documents"
//! table = "public.documents"       # optionally schema-qualified
//! key = "id"                        # the primary key: text, integer or uuid
//! cold_key = "uploads/{org_id}/{id}/{filename}"
//! side_table = "coldsweep_documents" # coldsweep's own table (see SIDE_TABLE_COLUMNS)
//!
//! [sources.hot]
//! bucket_column = "bucket"          # or: bucket = "uploads" (one fixed bucket)
//! path_column = "path"
//! # clear_path = true               # default: true when the cold location is
//!                                   # written on the table, false with a side table
//!
//! [sources.columns]                 # optional: what the table records of a blob
//! stored_size = "size"
//! digest = "digest"
//! digest_algorithm = "sha256"       # sha256 (default) or md5, hex
//! digest_of = "stored"              # stored (default) or decoded bytes
//! # decoded_size, content_type, content_encoding
//!
//! [sources.cold]                    # optional: the cold location on the table;
//! provider_column = "archive_provider"  # without it, in the side table
//! bucket_column = "archive_bucket"
//! key_column = "archive_key"
//! archived_at_column = "archived_at"
//!
//! [sources.rule]
//! min_age = "90d"                   # a floor: nothing younger moves
//! age_column = "created_at"         # or a list: the first non-NULL counts
//! keep_newest = 3                   # per group_by, by order_by (newest first)
//! group_by = ["org_id"]
//! order_by = "created_at"           # default: age_column
//! hot_quota = "800MB"               # needs columns.stored_size
//! condition = "deleted_at IS NULL"  # narrows the rows the source considers
//! # scope = "parent"                # rank and age parents, move them whole
//!
//! # [sources.parent]                # the job marker, generalised
//! # table, key, foreign_key, status_column, finished = [...], set = "archived",
//! # previous_status_column
//! ```
//!
//! # How a rule decides
//!
//! The rows a source considers are those with a hot path that match
//! `condition` (and, with `scope = "parent"`, whose parent's status is one
//! of `parent.finished`). Among them, by **unit** (a row; with `scope =
//! "parent"`, a parent and all its rows):
//!
//! 1. `keep_newest = N`: per `group_by` group, the newest N units by
//!    `order_by` (ties by key) stay; older ones move. (Today's retention.)
//! 2. `hot_quota`: while the hot bytes (the `stored_size` of every row with
//!    a hot path, NULL counting 0) minus what step 1 moves exceed the
//!    quota, the oldest remaining units move, one whole unit at a time,
//!    even among the newest N.
//! 3. With neither `keep_newest` nor `hot_quota`, every unit moves.
//!
//! `min_age` is a floor for all three: a unit whose age time
//! (`age_column`, the first non-NULL of a list) is less than `min_age` ago
//! never moves. A rule needs at least one of `min_age`, `keep_newest`,
//! `hot_quota`. This is [`crate::rules::decide`] with rows or parents for
//! jobs.
//!
//! # The condition
//!
//! `condition` is SQL the operator wrote: a boolean expression over the
//! source table's columns. It is refused before any SQL runs if it could
//! reach past the parentheses it is placed in ([`Condition::new`]: no `;`,
//! comments, unbalanced parentheses or quotes, `$`, backslashes), then the
//! database plans it without running it, in a read-only transaction on
//! Postgres ([`Catalog::check_condition`]). It is only ever placed in the
//! `WHERE ( … )` that selects a source's rows, never in a `SET`, a target
//! list or a statement of its own. Its limit: it may call any function the
//! catalog role may call, so run coldsweep under a role that holds only
//! what it needs.
//!
//! # The side table
//!
//! Every source names a `side_table`: one table per source, owned by
//! coldsweep and created by `coldsweep migrate`, holding each row's lease,
//! state and attempts, the cold location (also written on the table's
//! `[sources.cold]` columns when it has them), where the blob was hot and
//! whether that copy is gone; one row per source row
//! that was ever claimed, keyed by that row's key in the key's own type
//! ([`SIDE_TABLE_COLUMNS`]). A table of that name that exists without those
//! columns is an application's table, and the source is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use crate::catalog::{Catalog, Column, Condition, Ident, TableName, TableSchema, TypeFamily};
use crate::config::{parse_min_age, parse_size};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyPrefix, ObjectKey};
use crate::rules::Rules;

/// A value from the declaration and the config line it was written on
/// (`None` for declarations built in code, such as [`task_html`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the config file.
    pub line: Option<u32>,
}

impl<T> At<T> {
    fn new(value: T, line: Option<u32>) -> Self {
        Self { value, line }
    }

    /// A value with no config line.
    pub fn built_in(value: T) -> Self {
        Self { value, line: None }
    }
}

/// One declared source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    /// Its name, in logs, reports and metrics: lowercase letters, digits, `_`, `-`.
    pub name: At<String>,
    /// The table whose rows reference blobs.
    pub table: At<TableName>,
    /// The table's primary key column.
    pub key: At<Ident>,
    /// Where the hot copy is.
    pub hot: HotSpec,
    /// What the table records about each blob.
    pub columns: BlobColumns,
    /// Where the cold location is written.
    pub cold: ColdLocation,
    /// Where coldsweep keeps a row's state, attempts and lease.
    pub bookkeeping: Bookkeeping,
    /// coldsweep's own table for this source, when it needs one.
    pub side_table: Option<At<TableName>>,
    /// The cold key of a row.
    pub cold_key: At<KeyTemplate>,
    /// Which rows move.
    pub rule: RuleSpec,
    /// The parent marker, if any.
    pub parent: Option<ParentSpec>,
}

/// Where a row's hot copy is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotSpec {
    /// Its bucket.
    pub bucket: HotBucket,
    /// The column holding its path in the bucket.
    pub path_column: At<Ident>,
    /// Whether the path column is set to NULL once the hot copy is deleted.
    pub clear_path: bool,
}

/// The hot bucket: a column per row, or one for every row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotBucket {
    /// The column holding each row's bucket.
    Column(At<Ident>),
    /// One bucket for every row.
    Fixed(At<String>),
}

pub use crate::model::{DigestAlgorithm, DigestOf};

/// A digest column and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestSpec {
    /// The column.
    pub column: At<Ident>,
    /// Its algorithm.
    pub algorithm: DigestAlgorithm,
    /// Of which bytes.
    pub of: DigestOf,
}

/// Optional columns recording a blob's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobColumns {
    /// Size of the stored bytes (integer).
    pub stored_size: Option<At<Ident>>,
    /// Size of the decoded bytes (integer).
    pub decoded_size: Option<At<Ident>>,
    /// A digest.
    pub digest: Option<DigestSpec>,
    /// Content type (text).
    pub content_type: Option<At<Ident>>,
    /// Content encoding (text).
    pub content_encoding: Option<At<Ident>>,
}

/// The cold location's columns on the source table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdColumns {
    /// Provider (text).
    pub provider: At<Ident>,
    /// Bucket (text).
    pub bucket: At<Ident>,
    /// Key (text).
    pub key: At<Ident>,
    /// When the row was switched to cold (a time).
    pub archived_at: At<Ident>,
}

/// Where the cold location is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdLocation {
    /// On the source table.
    Columns(ColdColumns),
    /// In the side table.
    SideTable,
}

/// coldsweep's per-row state as columns on the source table (the shipped
/// `tasks` table has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookkeepingColumns {
    /// `quarantined`, `missing`, `lost` or NULL (text).
    pub state: At<Ident>,
    /// Last error or the state's reason (text).
    pub error: At<Ident>,
    /// Failed attempts (integer).
    pub attempts: At<Ident>,
    /// Times claimed (integer).
    pub claims: At<Ident>,
    /// The lease's owner (text).
    pub lease_owner: At<Ident>,
    /// The lease's or back-off's end (a time).
    pub lease_expires_at: At<Ident>,
    /// When first seen missing from both stores (a time).
    pub missing_since: At<Ident>,
}

impl BookkeepingColumns {
    fn all(&self) -> [(&'static str, &At<Ident>, Want); 7] {
        [
            ("bookkeeping.state", &self.state, Want::Text),
            ("bookkeeping.error", &self.error, Want::Text),
            ("bookkeeping.attempts", &self.attempts, Want::Integer),
            ("bookkeeping.claims", &self.claims, Want::Integer),
            ("bookkeeping.lease_owner", &self.lease_owner, Want::Text),
            (
                "bookkeeping.lease_expires_at",
                &self.lease_expires_at,
                Want::Time,
            ),
            ("bookkeeping.missing_since", &self.missing_since, Want::Time),
        ]
    }
}

/// Where coldsweep keeps each row's state, attempts and lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bookkeeping {
    /// On the source table.
    Columns(Box<BookkeepingColumns>),
    /// In the side table.
    SideTable,
}

/// Whose columns a rule ranks and ages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// Each row on its own.
    Row,
    /// Each parent (finished ones only), with all its rows.
    Parent,
}

/// Which rows move (see the module's "How a rule decides").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// Rows, or parents.
    pub scope: RuleScope,
    /// The floor: nothing younger moves.
    pub min_age: Option<Duration>,
    /// The age time: the first non-NULL of these columns.
    pub age_columns: Vec<At<Ident>>,
    /// Newest units kept per group.
    pub keep_newest: Option<u32>,
    /// The groups of `keep_newest`.
    pub group_by: Vec<At<Ident>>,
    /// The order, newest first: the first non-NULL of these columns
    /// (`age_columns` when not given).
    pub order_by: Vec<At<Ident>>,
    /// Most hot bytes the source may account for after a sweep.
    pub hot_quota: Option<u64>,
    /// Narrows the rows the source considers.
    pub condition: Option<At<Condition>>,
    /// Line of the `[sources.rule]` table.
    pub line: Option<u32>,
}

impl RuleSpec {
    /// The columns a unit is ordered by: `order_by`, else the age columns.
    pub fn order(&self) -> &[At<Ident>] {
        if self.order_by.is_empty() {
            &self.age_columns
        } else {
            &self.order_by
        }
    }
}

/// The parent marker: a parent whose rows have all left hot storage (and at
/// least one was archived) gets `set` as its status, its previous status
/// kept in `previous_status_column` for a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentSpec {
    /// The parent table.
    pub table: At<TableName>,
    /// Its primary key column.
    pub key: At<Ident>,
    /// The source table's column referencing the parent.
    pub foreign_key: At<Ident>,
    /// The parent's status column (text).
    pub status_column: At<Ident>,
    /// Statuses of a finished parent.
    pub finished: At<Vec<String>>,
    /// The status a fully archived parent gets.
    pub set: At<String>,
    /// Where the status before `set` is kept (text), if anywhere.
    pub previous_status_column: Option<At<Ident>>,
}

/// A cold key template such as `uploads/{org_id}/{id}/{filename}`: literal
/// text and `{column}` placeholders. The literal parts must make a valid
/// key ([`ObjectKey`]: no leading `/`, no empty, `.` or `..` segment, no
/// control characters or backslashes), and so must every rendered key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Column(Ident),
}

impl KeyTemplate {
    /// Parse and check `text`.
    pub fn new(text: &str) -> Result<Self> {
        let bad = |why: String| {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!("cold key template {text:?} rejected: {why}"),
            ))
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
                Some(at) if rest[at..].starts_with('}') => {
                    return bad("a '}' without its '{'".to_owned());
                }
                Some(at) => {
                    if at > 0 {
                        parts.push(Part::Literal(rest[..at].to_owned()));
                    }
                    let Some(end) = rest[at + 1..].find(['{', '}']) else {
                        return bad("a '{' without its '}'".to_owned());
                    };
                    let end = at + 1 + end;
                    if !rest[end..].starts_with('}') {
                        return bad("a '{' inside a placeholder".to_owned());
                    }
                    let name = &rest[at + 1..end];
                    match Ident::new(name) {
                        Ok(column) => parts.push(Part::Column(column)),
                        Err(e) => return bad(format!("placeholder {{{name}}}: {}", e.message())),
                    }
                    rest = &rest[end + 1..];
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
            return bad("no {column} placeholder: every row would get the same key".to_owned());
        }
        // The literal parts, with a harmless value for each placeholder,
        // must already be a valid key.
        let sample: String = parts
            .iter()
            .map(|p| match p {
                Part::Literal(text) => text.as_str(),
                Part::Column(_) => "x",
            })
            .collect();
        if let Err(e) = ObjectKey::new(sample) {
            return bad(e.message().to_owned());
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The columns its placeholders name, in order (repeats kept).
    pub fn columns(&self) -> impl Iterator<Item = &Ident> {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(c) => Some(c),
            Part::Literal(_) => None,
        })
    }

    /// The key of a row under `prefix`, `value` giving each placeholder's
    /// column value as text (`None` for NULL, which is refused). The result
    /// is validated as any key is.
    pub fn render(
        &self,
        prefix: &KeyPrefix,
        mut value: impl FnMut(&Ident) -> Option<String>,
    ) -> Result<ObjectKey> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => key.push_str(text),
                Part::Column(column) => match value(column) {
                    Some(v) => key.push_str(&v),
                    None => {
                        return Err(Error::new(
                            ErrorKind::InvalidInput,
                            format!("cold key {:?}: column {column} is NULL", self.text),
                        ));
                    }
                },
            }
        }
        prefix.apply(&key)
    }
}

impl fmt::Debug for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// One column of a side table: its name, its type on each backend (`key`:
/// the source key column's own type) and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideColumn {
    /// Column name.
    pub name: &'static str,
    /// Postgres type.
    pub postgres: &'static str,
    /// SQLite type.
    pub sqlite: &'static str,
    /// What it holds.
    pub meaning: &'static str,
}

/// The columns of a source's side table, as `coldsweep migrate` will create them.
pub const SIDE_TABLE_COLUMNS: &[SideColumn] = &[
    SideColumn {
        name: "row_key",
        postgres: "key",
        sqlite: "key",
        meaning: "the source row's key, in the key column's type; the primary key",
    },
    SideColumn {
        name: "cold_provider",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "provider of the cold copy (r2, s3, …), once switched",
    },
    SideColumn {
        name: "cold_bucket",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "bucket of the cold copy",
    },
    SideColumn {
        name: "cold_key",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "key of the cold copy",
    },
    SideColumn {
        name: "archived_at",
        postgres: "timestamptz",
        sqlite: "TEXT",
        meaning: "when the row was switched to cold",
    },
    SideColumn {
        name: "hot_bucket",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "the hot bucket the row's blob was moved from (for a restore)",
    },
    SideColumn {
        name: "hot_path",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "the hot path it was moved from (for a restore, when the path column is cleared)",
    },
    SideColumn {
        name: "restored_at",
        postgres: "timestamptz",
        sqlite: "TEXT",
        meaning: "when the row was last restored to hot storage; its age counts from then",
    },
    SideColumn {
        name: "hot_deleted_at",
        postgres: "timestamptz",
        sqlite: "TEXT",
        meaning: "when the hot copy was deleted (NULL: it may still exist)",
    },
    SideColumn {
        name: "stored_size_bytes",
        postgres: "bigint",
        sqlite: "INTEGER",
        meaning: "size of the stored bytes, as moved (what a quota counts when the table records none)",
    },
    SideColumn {
        name: "stored_sha256",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "hex SHA-256 of the stored bytes, as moved",
    },
    SideColumn {
        name: "state",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "quarantined, missing, lost or NULL",
    },
    SideColumn {
        name: "error",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "last error, or the state's reason",
    },
    SideColumn {
        name: "attempts",
        postgres: "integer NOT NULL DEFAULT 0",
        sqlite: "INTEGER NOT NULL DEFAULT 0",
        meaning: "failed attempts",
    },
    SideColumn {
        name: "claims",
        postgres: "integer NOT NULL DEFAULT 0",
        sqlite: "INTEGER NOT NULL DEFAULT 0",
        meaning: "times claimed",
    },
    SideColumn {
        name: "lease_owner",
        postgres: "text",
        sqlite: "TEXT",
        meaning: "the worker holding the row",
    },
    SideColumn {
        name: "lease_expires_at",
        postgres: "timestamptz",
        sqlite: "TEXT",
        meaning: "end of the lease, or of a back-off",
    },
    SideColumn {
        name: "missing_since",
        postgres: "timestamptz",
        sqlite: "TEXT",
        meaning: "when first seen missing from both stores",
    },
];

// ---------------------------------------------------------------------------
// Problems

/// What is wrong with a declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpecProblemKind {
    /// The file is not TOML, or a value has the wrong TOML type, or a
    /// setting is unknown or missing where TOML parsing finds it.
    Syntax,
    /// A required setting is absent.
    Missing,
    /// Two settings that exclude each other, or one that needs another.
    Conflict,
    /// A value out of range or not understood.
    BadValue,
    /// A name that is not a plain SQL identifier (refused before any SQL runs).
    BadIdentifier,
    /// A cold key template that cannot make valid keys.
    BadTemplate,
    /// A condition refused by the static check or by the database.
    BadCondition,
    /// Two sources of one name, or sharing a side table.
    DuplicateName,
    /// A table the catalog does not have.
    MissingTable,
    /// A column the table does not have.
    MissingColumn,
    /// A column whose type does not fit its use.
    WrongType,
    /// A side table name that an application table already uses.
    SideTableCollision,
}

/// One problem with one declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// What kind of problem.
    pub kind: SpecProblemKind,
    /// The source's name, when known.
    pub source: Option<String>,
    /// The setting, e.g. `columns.stored_size`.
    pub setting: String,
    /// The column (or table) named, if any.
    pub column: Option<String>,
    /// The config line.
    pub line: Option<u32>,
    /// What was expected, and what was found.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "source {source:?}")?,
            None => write!(f, "sources")?,
        }
        if !self.setting.is_empty() {
            write!(f, ", {}", self.setting)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in the declarations; converts to an
/// [`ErrorKind::InvalidInput`] [`Error`] that lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecProblem>);

impl SpecErrors {
    /// The problems, in the order found.
    pub fn problems(&self) -> &[SpecProblem] {
        &self.0
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl SpecErrors {
    /// The problems an [`Error`] made from them carries (as its cause).
    pub fn of(error: &Error) -> Option<&SpecErrors> {
        std::error::Error::source(error).and_then(|e| e.downcast_ref::<SpecErrors>())
    }
}

impl From<SpecErrors> for Error {
    fn from(errors: SpecErrors) -> Self {
        let n = errors.0.len();
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{n} problem{} in the source declarations",
                if n == 1 { "" } else { "s" }
            ),
        )
        .with_source(errors)
    }
}

/// Collects problems for one source.
struct Report<'a> {
    source: Option<String>,
    problems: &'a mut Vec<SpecProblem>,
}

impl Report<'_> {
    fn push(
        &mut self,
        kind: SpecProblemKind,
        setting: &str,
        column: Option<&str>,
        line: Option<u32>,
        message: impl Into<String>,
    ) {
        self.problems.push(SpecProblem {
            kind,
            source: self.source.clone(),
            setting: setting.to_owned(),
            column: column.map(str::to_owned),
            line,
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// Line numbers of byte offsets in a text.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    fn of(&self, span: Range<usize>) -> Option<u32> {
        let line = self.0.partition_point(|&nl| nl < span.start) + 1;
        u32::try_from(line).ok()
    }
}

/// One column name, or a list whose first non-NULL value counts.
#[derive(Debug)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name or a list of column names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    all.push(item);
                }
                Ok(OneOrMany(all))
            }
        }
        deserializer.deserialize_any(V)
    }
}

type S<T> = Spanned<T>;

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    sources: Vec<S<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: S<String>,
    table: S<String>,
    key: S<String>,
    cold_key: S<String>,
    side_table: Option<S<String>>,
    hot: S<RawHot>,
    columns: Option<S<RawColumns>>,
    cold: Option<S<RawCold>>,
    bookkeeping: Option<S<RawBookkeeping>>,
    rule: S<RawRule>,
    parent: Option<S<RawParent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHot {
    bucket: Option<S<String>>,
    bucket_column: Option<S<String>>,
    path_column: S<String>,
    clear_path: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumns {
    stored_size: Option<S<String>>,
    decoded_size: Option<S<String>>,
    digest: Option<S<String>>,
    digest_algorithm: Option<S<String>>,
    digest_of: Option<S<String>>,
    content_type: Option<S<String>>,
    content_encoding: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCold {
    provider_column: S<String>,
    bucket_column: S<String>,
    key_column: S<String>,
    archived_at_column: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBookkeeping {
    state: S<String>,
    error: S<String>,
    attempts: S<String>,
    claims: S<String>,
    lease_owner: S<String>,
    lease_expires_at: S<String>,
    missing_since: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    scope: Option<S<String>>,
    min_age: Option<S<String>>,
    age_column: Option<S<OneOrMany>>,
    keep_newest: Option<S<i64>>,
    group_by: Option<S<Vec<String>>>,
    order_by: Option<S<OneOrMany>>,
    hot_quota: Option<S<String>>,
    condition: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    table: S<String>,
    key: S<String>,
    foreign_key: S<String>,
    status_column: S<String>,
    finished: S<Vec<String>>,
    set: S<String>,
    previous_status_column: Option<S<String>>,
}

/// Longest source name.
const MAX_NAME_LEN: usize = 63;

/// Read the `[[sources]]` array of a config file (`text` is the whole
/// file; other tables, such as `[settings]`, are left to their readers)
/// and check each declaration on its own and against the others. An empty
/// list means no declared sources.
pub fn parse_sources(text: &str) -> Result<Vec<SourceSpec>, SpecErrors> {
    let lines = Lines::new(text);
    let file: RawFile = toml::from_str(text).map_err(|e| {
        SpecErrors(vec![SpecProblem {
            kind: SpecProblemKind::Syntax,
            source: None,
            setting: String::new(),
            column: None,
            line: e.span().and_then(|s| lines.of(s)),
            message: e.message().trim().to_owned(),
        }])
    })?;
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    for raw in file.sources {
        let line = lines.of(raw.span());
        if let Some(spec) = convert(raw.into_inner(), line, &lines, &mut problems) {
            specs.push(spec);
        }
    }
    check_together(&specs, &mut problems);
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(SpecErrors(problems))
    }
}

fn ident(r: &mut Report<'_>, setting: &str, raw: &S<String>, lines: &Lines) -> Option<At<Ident>> {
    let line = lines.of(raw.span());
    match Ident::new(raw.get_ref()) {
        Ok(id) => Some(At::new(id, line)),
        Err(e) => {
            r.push(
                SpecProblemKind::BadIdentifier,
                setting,
                Some(raw.get_ref()),
                line,
                format!(
                    "expected a plain SQL name (a letter or '_', then letters, digits or '_', \
                     at most 63 bytes), got {:?} ({})",
                    raw.get_ref(),
                    e.message()
                ),
            );
            None
        }
    }
}

fn table_name(
    r: &mut Report<'_>,
    setting: &str,
    raw: &S<String>,
    lines: &Lines,
) -> Option<At<TableName>> {
    let line = lines.of(raw.span());
    match TableName::new(raw.get_ref()) {
        Ok(t) => Some(At::new(t, line)),
        Err(e) => {
            r.push(
                SpecProblemKind::BadIdentifier,
                setting,
                Some(raw.get_ref()),
                line,
                format!(
                    "expected a table name (`table` or `schema.table`, each a plain SQL name), \
                     got {:?} ({})",
                    raw.get_ref(),
                    e.message()
                ),
            );
            None
        }
    }
}

fn idents(
    r: &mut Report<'_>,
    setting: &str,
    names: &[String],
    line: Option<u32>,
) -> Option<Vec<At<Ident>>> {
    let mut out = Vec::new();
    let mut ok = true;
    for name in names {
        match Ident::new(name) {
            Ok(id) => out.push(At::new(id, line)),
            Err(e) => {
                ok = false;
                r.push(
                    SpecProblemKind::BadIdentifier,
                    setting,
                    Some(name),
                    line,
                    format!("expected a plain SQL name, got {name:?} ({})", e.message()),
                );
            }
        }
    }
    ok.then_some(out)
}

/// One raw declaration to a checked one; `None` (with problems pushed)
/// when any part of it is wrong.
fn convert(
    raw: RawSource,
    line: Option<u32>,
    lines: &Lines,
    problems: &mut Vec<SpecProblem>,
) -> Option<SourceSpec> {
    let before = problems.len();
    let name_line = lines.of(raw.name.span());
    let name = raw.name.get_ref().clone();
    let mut r = Report {
        source: Some(name.clone()),
        problems,
    };
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        r.push(
            SpecProblemKind::BadValue,
            "name",
            None,
            name_line,
            format!("expected 1 to 63 lowercase letters, digits, '_' or '-', got {name:?}"),
        );
    }
    let table = table_name(&mut r, "table", &raw.table, lines);
    let key = ident(&mut r, "key", &raw.key, lines);

    // hot
    let hot_line = lines.of(raw.hot.span());
    let hot = raw.hot.into_inner();
    let bucket = match (&hot.bucket, &hot.bucket_column) {
        (Some(_), Some(column)) => {
            r.push(
                SpecProblemKind::Conflict,
                "hot.bucket_column",
                None,
                lines.of(column.span()),
                "expected one of hot.bucket (one bucket for every row) or hot.bucket_column, \
                 got both",
            );
            None
        }
        (None, None) => {
            r.push(
                SpecProblemKind::Missing,
                "hot.bucket_column",
                None,
                hot_line,
                "expected hot.bucket_column (the column holding each row's bucket) or \
                 hot.bucket (one bucket for every row), got neither",
            );
            None
        }
        (Some(bucket), None) => {
            let value = bucket.get_ref().trim();
            if value.is_empty() || value.contains('/') || value.chars().any(char::is_control) {
                r.push(
                    SpecProblemKind::BadValue,
                    "hot.bucket",
                    None,
                    lines.of(bucket.span()),
                    format!("expected a bucket name without '/', got {value:?}"),
                );
                None
            } else {
                Some(HotBucket::Fixed(At::new(
                    value.to_owned(),
                    lines.of(bucket.span()),
                )))
            }
        }
        (None, Some(column)) => {
            ident(&mut r, "hot.bucket_column", column, lines).map(HotBucket::Column)
        }
    };
    let path_column = ident(&mut r, "hot.path_column", &hot.path_column, lines);

    // columns
    let mut columns = BlobColumns::default();
    if let Some(raw_columns) = raw.columns {
        let c = raw_columns.into_inner();
        let mut opt = |setting: &str, v: &Option<S<String>>| {
            v.as_ref().and_then(|v| ident(&mut r, setting, v, lines))
        };
        columns.stored_size = opt("columns.stored_size", &c.stored_size);
        columns.decoded_size = opt("columns.decoded_size", &c.decoded_size);
        columns.content_type = opt("columns.content_type", &c.content_type);
        columns.content_encoding = opt("columns.content_encoding", &c.content_encoding);
        let digest_column = opt("columns.digest", &c.digest);
        let algorithm = match c.digest_algorithm.as_ref() {
            None => Some(DigestAlgorithm::Sha256),
            Some(a) => match a.get_ref().to_ascii_lowercase().as_str() {
                "sha256" | "sha-256" => Some(DigestAlgorithm::Sha256),
                "md5" => Some(DigestAlgorithm::Md5),
                other => {
                    r.push(
                        SpecProblemKind::BadValue,
                        "columns.digest_algorithm",
                        None,
                        lines.of(a.span()),
                        format!("expected sha256 or md5, got {other:?}"),
                    );
                    None
                }
            },
        };
        let of = match c.digest_of.as_ref() {
            None => Some(DigestOf::Stored),
            Some(o) => match o.get_ref().as_str() {
                "stored" => Some(DigestOf::Stored),
                "decoded" => Some(DigestOf::Decoded),
                other => {
                    r.push(
                        SpecProblemKind::BadValue,
                        "columns.digest_of",
                        None,
                        lines.of(o.span()),
                        format!("expected stored or decoded, got {other:?}"),
                    );
                    None
                }
            },
        };
        if c.digest.is_none() {
            for (setting, given) in [
                ("columns.digest_algorithm", &c.digest_algorithm),
                ("columns.digest_of", &c.digest_of),
            ] {
                if let Some(given) = given {
                    r.push(
                        SpecProblemKind::Conflict,
                        setting,
                        None,
                        lines.of(given.span()),
                        format!("{setting} says what columns.digest holds, but no columns.digest is given"),
                    );
                }
            }
        }
        if of == Some(DigestOf::Decoded) && c.content_encoding.is_none() {
            r.push(
                SpecProblemKind::Conflict,
                "columns.digest_of",
                None,
                c.digest_of.as_ref().and_then(|o| lines.of(o.span())),
                "a digest of the decoded bytes needs columns.content_encoding (how to decode \
                 them); without one, the stored bytes are the decoded ones: say \"stored\"",
            );
        }
        if let (Some(column), Some(algorithm), Some(of)) = (digest_column, algorithm, of) {
            columns.digest = Some(DigestSpec {
                column,
                algorithm,
                of,
            });
        }
    }

    // cold location and bookkeeping
    let side_table = raw
        .side_table
        .as_ref()
        .and_then(|s| table_name(&mut r, "side_table", s, lines));
    let cold = match raw.cold {
        Some(c) => {
            let c = c.into_inner();
            let provider = ident(&mut r, "cold.provider_column", &c.provider_column, lines);
            let bucket = ident(&mut r, "cold.bucket_column", &c.bucket_column, lines);
            let key = ident(&mut r, "cold.key_column", &c.key_column, lines);
            let archived_at = ident(
                &mut r,
                "cold.archived_at_column",
                &c.archived_at_column,
                lines,
            );
            match (provider, bucket, key, archived_at) {
                (Some(provider), Some(bucket), Some(key), Some(archived_at)) => {
                    Some(ColdLocation::Columns(ColdColumns {
                        provider,
                        bucket,
                        key,
                        archived_at,
                    }))
                }
                _ => None,
            }
        }
        None => Some(ColdLocation::SideTable),
    };
    let bookkeeping_line = raw.bookkeeping.as_ref().map(|b| lines.of(b.span()));
    let bookkeeping = match raw.bookkeeping {
        Some(b) => {
            let b = b.into_inner();
            let all = [
                ident(&mut r, "bookkeeping.state", &b.state, lines),
                ident(&mut r, "bookkeeping.error", &b.error, lines),
                ident(&mut r, "bookkeeping.attempts", &b.attempts, lines),
                ident(&mut r, "bookkeeping.claims", &b.claims, lines),
                ident(&mut r, "bookkeeping.lease_owner", &b.lease_owner, lines),
                ident(
                    &mut r,
                    "bookkeeping.lease_expires_at",
                    &b.lease_expires_at,
                    lines,
                ),
                ident(&mut r, "bookkeeping.missing_since", &b.missing_since, lines),
            ];
            match all {
                [
                    Some(state),
                    Some(error),
                    Some(attempts),
                    Some(claims),
                    Some(lease_owner),
                    Some(lease_expires_at),
                    Some(missing_since),
                ] => Some(Bookkeeping::Columns(Box::new(BookkeepingColumns {
                    state,
                    error,
                    attempts,
                    claims,
                    lease_owner,
                    lease_expires_at,
                    missing_since,
                }))),
                _ => None,
            }
        }
        None => Some(Bookkeeping::SideTable),
    };
    // The engine keeps a declared source's state in its side table, with
    // what the table's columns cannot say (the hot copy gone, where it came
    // from, a restore).
    if let Some(Bookkeeping::Columns(_)) = &bookkeeping {
        r.push(
            SpecProblemKind::Conflict,
            "bookkeeping",
            None,
            bookkeeping_line.flatten(),
            "[sources.bookkeeping] is not supported for a declared source: coldsweep keeps each \
             row's lease and state in the source's side_table; remove [sources.bookkeeping]",
        );
    }
    if raw.side_table.is_none() {
        r.push(
            SpecProblemKind::Missing,
            "side_table",
            None,
            line,
            "expected side_table (coldsweep's own table for this source): it holds each row's \
             lease and state, and the cold location unless [sources.cold] puts it on the table",
        );
    }
    let clear_path = match &hot.clear_path {
        Some(v) => *v.get_ref(),
        None => !matches!(cold, Some(ColdLocation::SideTable)),
    };

    // cold key
    let template_line = lines.of(raw.cold_key.span());
    let cold_key = match KeyTemplate::new(raw.cold_key.get_ref()) {
        Ok(t) => Some(At::new(t, template_line)),
        Err(e) => {
            r.push(
                SpecProblemKind::BadTemplate,
                "cold_key",
                None,
                template_line,
                e.message().to_owned(),
            );
            None
        }
    };
    if let (Some(template), Some(key), Some(path)) = (&cold_key, &key, &path_column) {
        let names: BTreeSet<&str> = template.value.columns().map(Ident::as_str).collect();
        if !names.contains(key.value.as_str()) && !names.contains(path.value.as_str()) {
            r.push(
                SpecProblemKind::BadTemplate,
                "cold_key",
                None,
                template_line,
                format!(
                    "expected a {{{}}} or {{{}}} placeholder (the key or the hot path): without \
                     one, two rows could get the same cold key and one copy overwrite the other",
                    key.value, path.value
                ),
            );
        }
    }

    let rule = rule(&mut r, raw.rule, lines, &columns);
    let parent = raw.parent.and_then(|p| parent(&mut r, p, lines));
    if let Some(rule) = &rule
        && rule.scope == RuleScope::Parent
        && parent.is_none()
        && r.problems.len() == before
    {
        r.push(
            SpecProblemKind::Missing,
            "parent",
            None,
            rule.line,
            "rule.scope = \"parent\" ranks and ages parents: it needs [sources.parent]",
        );
    }
    if r.problems.len() > before {
        return None;
    }
    Some(SourceSpec {
        name: At::new(name, name_line),
        table: table?,
        key: key?,
        hot: HotSpec {
            bucket: bucket?,
            path_column: path_column?,
            clear_path,
        },
        columns,
        cold: cold?,
        bookkeeping: bookkeeping?,
        side_table,
        cold_key: cold_key?,
        rule: rule?,
        parent,
    })
}

fn rule(
    r: &mut Report<'_>,
    raw: S<RawRule>,
    lines: &Lines,
    columns: &BlobColumns,
) -> Option<RuleSpec> {
    let line = lines.of(raw.span());
    let raw = raw.into_inner();
    let before = r.problems.len();
    let scope = match raw.scope.as_ref() {
        None => RuleScope::Row,
        Some(s) => match s.get_ref().as_str() {
            "row" => RuleScope::Row,
            "parent" => RuleScope::Parent,
            other => {
                r.push(
                    SpecProblemKind::BadValue,
                    "rule.scope",
                    None,
                    lines.of(s.span()),
                    format!("expected row or parent, got {other:?}"),
                );
                RuleScope::Row
            }
        },
    };
    let min_age = raw.min_age.as_ref().and_then(|m| {
        parse_min_age("rule.min_age", m.get_ref().trim())
            .map_err(|e| {
                r.push(
                    SpecProblemKind::BadValue,
                    "rule.min_age",
                    None,
                    lines.of(m.span()),
                    e.message().to_owned(),
                )
            })
            .ok()
            .flatten()
    });
    let hot_quota = raw.hot_quota.as_ref().and_then(|q| {
        parse_size("rule.hot_quota", q.get_ref().trim())
            .map_err(|e| {
                r.push(
                    SpecProblemKind::BadValue,
                    "rule.hot_quota",
                    None,
                    lines.of(q.span()),
                    e.message().to_owned(),
                )
            })
            .ok()
    });
    let keep_newest = raw
        .keep_newest
        .as_ref()
        .and_then(|k| match u32::try_from(*k.get_ref()) {
            Ok(n) if n <= 1_000_000 => Some(n),
            _ => {
                r.push(
                    SpecProblemKind::BadValue,
                    "rule.keep_newest",
                    None,
                    lines.of(k.span()),
                    format!(
                        "expected a whole number from 0 to 1000000, got {}",
                        k.get_ref()
                    ),
                );
                None
            }
        });
    let list = |r: &mut Report<'_>, setting: &str, v: &Option<S<OneOrMany>>| match v {
        Some(v) => {
            let l = lines.of(v.span());
            if v.get_ref().0.is_empty() {
                r.push(
                    SpecProblemKind::BadValue,
                    setting,
                    None,
                    l,
                    "expected a column name or a non-empty list of them, got []",
                );
                Some(Vec::new())
            } else {
                idents(r, setting, &v.get_ref().0, l)
            }
        }
        None => Some(Vec::new()),
    };
    let age_columns = list(r, "rule.age_column", &raw.age_column)?;
    let order_by = list(r, "rule.order_by", &raw.order_by)?;
    let group_by = match &raw.group_by {
        Some(g) => idents(r, "rule.group_by", g.get_ref(), lines.of(g.span()))?,
        None => Vec::new(),
    };
    let condition = raw.condition.as_ref().and_then(|c| {
        let l = lines.of(c.span());
        match Condition::new(c.get_ref()) {
            Ok(cond) => Some(At::new(cond, l)),
            Err(e) => {
                r.push(
                    SpecProblemKind::BadCondition,
                    "rule.condition",
                    None,
                    l,
                    e.message().to_owned(),
                );
                None
            }
        }
    });

    let ordered = !order_by.is_empty() || !age_columns.is_empty();
    if raw.min_age.is_some() && age_columns.is_empty() {
        r.push(
            SpecProblemKind::Missing,
            "rule.age_column",
            None,
            line,
            "rule.min_age needs rule.age_column (the time a row's age counts from)",
        );
    }
    if keep_newest.is_some() && !ordered {
        r.push(
            SpecProblemKind::Missing,
            "rule.order_by",
            None,
            line,
            "rule.keep_newest needs rule.order_by (or rule.age_column) to say which are newest",
        );
    }
    if let Some(g) = &raw.group_by
        && raw.keep_newest.is_none()
    {
        r.push(
            SpecProblemKind::Conflict,
            "rule.group_by",
            None,
            lines.of(g.span()),
            "rule.group_by groups rule.keep_newest, which is not given",
        );
    }
    if let Some(q) = &raw.hot_quota {
        if !ordered {
            r.push(
                SpecProblemKind::Missing,
                "rule.order_by",
                None,
                lines.of(q.span()),
                "rule.hot_quota moves the oldest first: it needs rule.order_by or rule.age_column",
            );
        }
        if columns.stored_size.is_none() {
            r.push(
                SpecProblemKind::Missing,
                "columns.stored_size",
                None,
                lines.of(q.span()),
                "rule.hot_quota counts hot bytes: it needs columns.stored_size",
            );
        }
    }
    if raw.min_age.is_none() && raw.keep_newest.is_none() && raw.hot_quota.is_none() {
        r.push(
            SpecProblemKind::Missing,
            "rule",
            None,
            line,
            "expected at least one of rule.min_age, rule.keep_newest, rule.hot_quota \
             (without one, every row would move at once)",
        );
    }
    if r.problems.len() > before {
        return None;
    }
    Some(RuleSpec {
        scope,
        min_age,
        age_columns,
        keep_newest,
        group_by,
        order_by,
        hot_quota,
        condition,
        line,
    })
}

fn parent(r: &mut Report<'_>, raw: S<RawParent>, lines: &Lines) -> Option<ParentSpec> {
    let raw = raw.into_inner();
    let before = r.problems.len();
    let table = table_name(r, "parent.table", &raw.table, lines);
    let key = ident(r, "parent.key", &raw.key, lines);
    let foreign_key = ident(r, "parent.foreign_key", &raw.foreign_key, lines);
    let status_column = ident(r, "parent.status_column", &raw.status_column, lines);
    let previous = raw
        .previous_status_column
        .as_ref()
        .and_then(|p| ident(r, "parent.previous_status_column", p, lines));
    let finished_line = lines.of(raw.finished.span());
    let finished = raw.finished.into_inner();
    if finished.is_empty() || finished.iter().any(|s| s.trim().is_empty()) {
        r.push(
            SpecProblemKind::BadValue,
            "parent.finished",
            None,
            finished_line,
            "expected a non-empty list of non-empty status values",
        );
    }
    let set_line = lines.of(raw.set.span());
    let set = raw.set.into_inner();
    if set.trim().is_empty() || finished.contains(&set) {
        r.push(
            SpecProblemKind::BadValue,
            "parent.set",
            None,
            set_line,
            format!(
                "expected a status that is not empty and not one of parent.finished, got {set:?}"
            ),
        );
    }
    if r.problems.len() > before {
        return None;
    }
    Some(ParentSpec {
        table: table?,
        key: key?,
        foreign_key: foreign_key?,
        status_column: status_column?,
        finished: At::new(finished, finished_line),
        set: At::new(set, set_line),
        previous_status_column: previous,
    })
}

/// Problems between declarations: duplicate names, a side table shared or
/// named like a declared table.
fn check_together(specs: &[SourceSpec], problems: &mut Vec<SpecProblem>) {
    let mut names: BTreeMap<&str, Option<u32>> = BTreeMap::new();
    for spec in specs {
        if let Some(first) = names.insert(&spec.name.value, spec.name.line) {
            let mut r = Report {
                source: Some(spec.name.value.clone()),
                problems,
            };
            r.push(
                SpecProblemKind::DuplicateName,
                "name",
                None,
                spec.name.line,
                format!(
                    "another source has this name{}",
                    first.map(|l| format!(" (line {l})")).unwrap_or_default()
                ),
            );
        }
    }
    let declared: Vec<&TableName> = specs
        .iter()
        .flat_map(|s| {
            std::iter::once(&s.table.value).chain(s.parent.as_ref().map(|p| &p.table.value))
        })
        .collect();
    let mut sides: BTreeMap<&str, &str> = BTreeMap::new();
    for spec in specs {
        let Some(side) = &spec.side_table else {
            continue;
        };
        let mut r = Report {
            source: Some(spec.name.value.clone()),
            problems,
        };
        if declared.iter().any(|t| same_table(t, &side.value)) {
            r.push(
                SpecProblemKind::SideTableCollision,
                "side_table",
                Some(&side.value.to_string()),
                side.line,
                format!(
                    "side table {} is a table a source reads: coldsweep's own table needs a \
                     name of its own",
                    side.value
                ),
            );
        }
        if let Some(other) = sides.insert(side.value.name.as_str(), &spec.name.value) {
            r.push(
                SpecProblemKind::DuplicateName,
                "side_table",
                Some(&side.value.to_string()),
                side.line,
                format!("source {other:?} uses the same side table"),
            );
        }
    }
}

/// Whether two names may be the same table (an unqualified name may
/// resolve to any schema).
fn same_table(a: &TableName, b: &TableName) -> bool {
    a.name == b.name && (a.schema.is_none() || b.schema.is_none() || a.schema == b.schema)
}

// ---------------------------------------------------------------------------
// Against the live schema

/// What a column is used for decides which types fit it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Text,
    Integer,
    /// A point in time; on SQLite, text too (compared as instants).
    Time,
    /// A key: text, integer or uuid.
    Key,
    /// A value a cold key can carry: text, integer, uuid or date.
    KeyPart,
    /// A point in time or an integer (an order).
    Order,
    /// Anything.
    Any,
}

impl Want {
    fn fits(self, family: TypeFamily, sqlite: bool) -> bool {
        use TypeFamily as F;
        let time = matches!(family, F::Timestamp { .. } | F::Date) || (sqlite && family == F::Text);
        match self {
            Want::Text => family == F::Text,
            Want::Integer => matches!(family, F::Integer { .. }),
            Want::Time => time,
            Want::Key => matches!(family, F::Text | F::Integer { .. } | F::Uuid),
            Want::KeyPart => matches!(family, F::Text | F::Integer { .. } | F::Uuid | F::Date),
            Want::Order => time || matches!(family, F::Integer { .. }),
            Want::Any => true,
        }
    }

    fn expected(self, sqlite: bool) -> &'static str {
        match (self, sqlite) {
            (Want::Text, _) => "a text column",
            (Want::Integer, _) => "an integer column",
            (Want::Time, false) => "a timestamp or date column",
            (Want::Time, true) => "a timestamp, date or text column (text compared as instants)",
            (Want::Key, _) => "a text, integer or uuid column",
            (Want::KeyPart, _) => "a text, integer, uuid or date column",
            (Want::Order, false) => "a timestamp, date or integer column",
            (Want::Order, true) => "a timestamp, date, text or integer column",
            (Want::Any, _) => "a column",
        }
    }
}

/// What a source's tables look like in the live schema: each table it
/// names, `None` where the catalog has no such table.
pub type Schemas = BTreeMap<TableName, Option<TableSchema>>;

/// A remark on a declaration that passed, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The source.
    pub source: String,
    /// The setting.
    pub setting: String,
    /// The column.
    pub column: String,
    /// What to know.
    pub message: String,
}

impl SourceSpec {
    /// The tables this declaration names: its table, the parent table,
    /// the side table.
    pub fn tables(&self) -> Vec<&TableName> {
        let mut tables = vec![&self.table.value];
        if let Some(parent) = &self.parent {
            tables.push(&parent.table.value);
        }
        if let Some(side) = &self.side_table {
            tables.push(&side.value);
        }
        tables
    }

    /// Check this declaration against `schemas` (which must hold every
    /// table of [`SourceSpec::tables`]), on a SQLite catalog when `sqlite`
    /// (TEXT timestamps accepted). Problems are pushed to `problems`;
    /// remarks worth logging are returned.
    pub fn check(
        &self,
        schemas: &Schemas,
        sqlite: bool,
        problems: &mut Vec<SpecProblem>,
    ) -> Vec<Note> {
        let mut notes = Vec::new();
        let mut r = Report {
            source: Some(self.name.value.clone()),
            problems,
        };
        let lookup = |t: &TableName| schemas.get(t).and_then(Option::as_ref);
        let Some(table) = lookup(&self.table.value) else {
            r.push(
                SpecProblemKind::MissingTable,
                "table",
                Some(&self.table.value.to_string()),
                self.table.line,
                format!("the catalog has no table {}", self.table.value),
            );
            return notes;
        };
        let col = |r: &mut Report<'_>,
                   notes: &mut Vec<Note>,
                   table: &TableSchema,
                   setting: &str,
                   at: &At<Ident>,
                   want: Want|
         -> Option<Column> {
            let Some(column) = table.column(&at.value) else {
                r.push(
                    SpecProblemKind::MissingColumn,
                    setting,
                    Some(at.value.as_str()),
                    at.line,
                    format!(
                        "table {} has no column {} (expected {})",
                        table.name,
                        at.value,
                        want.expected(sqlite)
                    ),
                );
                return None;
            };
            if !want.fits(column.family, sqlite) {
                r.push(
                    SpecProblemKind::WrongType,
                    setting,
                    Some(at.value.as_str()),
                    at.line,
                    format!(
                        "column {}.{} is {} ({}): expected {}",
                        table.name,
                        column.name,
                        column.family.as_str(),
                        column.declared,
                        want.expected(sqlite)
                    ),
                );
                return None;
            }
            if sqlite
                && matches!(want, Want::Time | Want::Order)
                && column.family == TypeFamily::Text
            {
                notes.push(Note {
                    source: self.name.value.clone(),
                    setting: setting.to_owned(),
                    column: column.name.clone(),
                    message: format!(
                        "{}.{} is TEXT: its values are compared as instants (julianday), \
                         whatever their format or offset",
                        table.name, column.name
                    ),
                });
            }
            Some(column.clone())
        };

        // The key: the table's one primary-key column.
        if let Some(key) = col(&mut r, &mut notes, table, "key", &self.key, Want::Key) {
            let pk = table.primary_key();
            if !(key.primary_key && pk.len() == 1) {
                r.push(
                    SpecProblemKind::WrongType,
                    "key",
                    Some(self.key.value.as_str()),
                    self.key.line,
                    format!(
                        "column {}.{} is not the table's primary key (expected the one column \
                         of its primary key{})",
                        table.name,
                        key.name,
                        match pk.as_slice() {
                            [] => ", and the table has none".to_owned(),
                            [one] => format!(": {}", one.name),
                            many => format!(
                                "; it has several: {}",
                                many.iter()
                                    .map(|c| c.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }
                    ),
                );
            }
        }
        if let HotBucket::Column(c) = &self.hot.bucket {
            col(
                &mut r,
                &mut notes,
                table,
                "hot.bucket_column",
                c,
                Want::Text,
            );
        }
        col(
            &mut r,
            &mut notes,
            table,
            "hot.path_column",
            &self.hot.path_column,
            Want::Text,
        );
        let c = &self.columns;
        for (setting, column, want) in [
            ("columns.stored_size", &c.stored_size, Want::Integer),
            ("columns.decoded_size", &c.decoded_size, Want::Integer),
            ("columns.content_type", &c.content_type, Want::Text),
            ("columns.content_encoding", &c.content_encoding, Want::Text),
        ] {
            if let Some(column) = column {
                col(&mut r, &mut notes, table, setting, column, want);
            }
        }
        if let Some(digest) = &c.digest {
            col(
                &mut r,
                &mut notes,
                table,
                "columns.digest",
                &digest.column,
                Want::Text,
            );
        }
        if let ColdLocation::Columns(cold) = &self.cold {
            for (setting, column, want) in [
                ("cold.provider_column", &cold.provider, Want::Text),
                ("cold.bucket_column", &cold.bucket, Want::Text),
                ("cold.key_column", &cold.key, Want::Text),
                ("cold.archived_at_column", &cold.archived_at, Want::Time),
            ] {
                col(&mut r, &mut notes, table, setting, column, want);
            }
        }
        if let Bookkeeping::Columns(b) = &self.bookkeeping {
            for (setting, column, want) in b.all() {
                col(&mut r, &mut notes, table, setting, column, want);
            }
        }
        for placeholder in self.cold_key.value.columns() {
            let at = At::new(placeholder.clone(), self.cold_key.line);
            col(&mut r, &mut notes, table, "cold_key", &at, Want::KeyPart);
        }

        // The parent, and the rule's columns (on the parent with scope = "parent").
        let parent_table = match &self.parent {
            Some(parent) => match lookup(&parent.table.value) {
                Some(pt) => {
                    let pkey = col(&mut r, &mut notes, pt, "parent.key", &parent.key, Want::Key);
                    if let Some(pkey) = &pkey
                        && !(pkey.primary_key && pt.primary_key().len() == 1)
                    {
                        r.push(
                            SpecProblemKind::WrongType,
                            "parent.key",
                            Some(parent.key.value.as_str()),
                            parent.key.line,
                            format!(
                                "column {}.{} is not the table's primary key",
                                pt.name, pkey.name
                            ),
                        );
                    }
                    let fk = col(
                        &mut r,
                        &mut notes,
                        table,
                        "parent.foreign_key",
                        &parent.foreign_key,
                        Want::Key,
                    );
                    if let (Some(pkey), Some(fk)) = (&pkey, &fk)
                        && !same_family(pkey.family, fk.family)
                    {
                        r.push(
                            SpecProblemKind::WrongType,
                            "parent.foreign_key",
                            Some(parent.foreign_key.value.as_str()),
                            parent.foreign_key.line,
                            format!(
                                "column {}.{} is {}, but the parent key {}.{} is {}: expected the same type",
                                table.name,
                                fk.name,
                                fk.family.as_str(),
                                pt.name,
                                pkey.name,
                                pkey.family.as_str()
                            ),
                        );
                    }
                    col(
                        &mut r,
                        &mut notes,
                        pt,
                        "parent.status_column",
                        &parent.status_column,
                        Want::Text,
                    );
                    if let Some(previous) = &parent.previous_status_column {
                        col(
                            &mut r,
                            &mut notes,
                            pt,
                            "parent.previous_status_column",
                            previous,
                            Want::Text,
                        );
                    }
                    Some(pt)
                }
                None => {
                    r.push(
                        SpecProblemKind::MissingTable,
                        "parent.table",
                        Some(&parent.table.value.to_string()),
                        parent.table.line,
                        format!("the catalog has no table {}", parent.table.value),
                    );
                    None
                }
            },
            None => None,
        };
        let rule_table = match self.rule.scope {
            RuleScope::Row => Some(table),
            RuleScope::Parent => parent_table,
        };
        if let Some(rt) = rule_table {
            for at in &self.rule.age_columns {
                col(&mut r, &mut notes, rt, "rule.age_column", at, Want::Time);
            }
            let order: Vec<Column> = self
                .rule
                .order_by
                .iter()
                .filter_map(|at| col(&mut r, &mut notes, rt, "rule.order_by", at, Want::Order))
                .collect();
            if let Some(first) = order.first()
                && let Some(odd) = order.iter().find(|c| !same_family(c.family, first.family))
            {
                r.push(
                    SpecProblemKind::WrongType,
                    "rule.order_by",
                    Some(&odd.name),
                    self.rule.order_by.first().and_then(|a| a.line),
                    format!(
                        "the first non-NULL of the order_by columns is compared: {} is {} but {} is {}",
                        first.name,
                        first.family.as_str(),
                        odd.name,
                        odd.family.as_str()
                    ),
                );
            }
            for at in &self.rule.group_by {
                col(&mut r, &mut notes, rt, "rule.group_by", at, Want::Any);
            }
        }

        // The side table: coldsweep's, or not there yet.
        if let Some(side) = &self.side_table
            && let Some(st) = lookup(&side.value)
        {
            let missing: Vec<&str> = SIDE_TABLE_COLUMNS
                .iter()
                .map(|c| c.name)
                .filter(|name| Ident::new(name).map_or(true, |n| st.column(&n).is_none()))
                .collect();
            if !missing.is_empty() {
                r.push(
                    SpecProblemKind::SideTableCollision,
                    "side_table",
                    Some(&side.value.to_string()),
                    side.line,
                    format!(
                        "table {} exists and is not a coldsweep side table (it lacks {}): \
                             choose a name no application table uses",
                        side.value,
                        missing.join(", ")
                    ),
                );
            } else if let (Some(row_key), Some(key)) = (
                Ident::new("row_key").ok().and_then(|n| st.column(&n)),
                table.column(&self.key.value),
            ) && !same_family(row_key.family, key.family)
            {
                r.push(
                        SpecProblemKind::WrongType,
                        "side_table",
                        Some("row_key"),
                        side.line,
                        format!(
                            "side table {}.row_key is {}, but the key {}.{} is {}: expected the same type",
                            side.value,
                            row_key.family.as_str(),
                            table.name,
                            key.name,
                            key.family.as_str()
                        ),
                    );
            }
        }
        notes
    }
}

/// Whether two families compare as one type (any integer width with any).
fn same_family(a: TypeFamily, b: TypeFamily) -> bool {
    match (a, b) {
        (TypeFamily::Integer { .. }, TypeFamily::Integer { .. }) => true,
        _ => a == b,
    }
}

/// Check `specs` against `catalog`'s live schema before any sweep: every
/// table and column exists with a type that fits its use, each condition
/// is accepted by the database (checked without running it), no side table
/// takes an application table's name. Returns the remarks worth logging,
/// or every problem found.
pub async fn validate_sources(specs: &[SourceSpec], catalog: &dyn Catalog) -> Result<Vec<Note>> {
    let sqlite = catalog.backend() == "sqlite";
    let mut schemas = Schemas::new();
    for spec in specs {
        for table in spec.tables() {
            if !schemas.contains_key(table) {
                let schema = catalog.describe_table(table).await?;
                schemas.insert(table.clone(), schema);
            }
        }
    }
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut duplicates = Vec::new();
    check_together(specs, &mut duplicates);
    problems.extend(duplicates);
    for spec in specs {
        let before = problems.len();
        notes.extend(spec.check(&schemas, sqlite, &mut problems));
        // The condition names the table's columns: asked only of a table
        // that exists, by a declaration otherwise sound.
        if problems.len() == before
            && let Some(condition) = &spec.rule.condition
        {
            match catalog
                .check_condition(&spec.table.value, &condition.value)
                .await
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::InvalidInput => problems.push(SpecProblem {
                    kind: SpecProblemKind::BadCondition,
                    source: Some(spec.name.value.clone()),
                    setting: "rule.condition".to_owned(),
                    column: None,
                    line: condition.line,
                    message: format!("the catalog refused it: {}", e.chain()),
                }),
                Err(e) => return Err(e),
            }
        }
    }
    if problems.is_empty() {
        Ok(notes)
    } else {
        Err(SpecErrors(problems).into())
    }
}

// ---------------------------------------------------------------------------
// The built-in source

/// The crawler's task HTML as a declaration: what
/// [`TaskHtmlSource`](crate::source::TaskHtmlSource) archives, under `rules` (retention per
/// domain and organisation, the hot quota, the minimum age), on the schema
/// `coldsweep migrate` ships.
pub fn task_html(rules: &Rules) -> SourceSpec {
    let id = |name: &str| At::built_in(Ident::new(name).expect("a built-in column name"));
    let table = |name: &str| At::built_in(TableName::new(name).expect("a built-in table name"));
    SourceSpec {
        name: At::built_in("task_html".to_owned()),
        table: table("tasks"),
        key: id("id"),
        hot: HotSpec {
            bucket: HotBucket::Column(id("html_storage_bucket")),
            path_column: id("html_storage_path"),
            clear_path: true,
        },
        columns: BlobColumns {
            stored_size: Some(id("html_compressed_size_bytes")),
            decoded_size: Some(id("html_size_bytes")),
            digest: Some(DigestSpec {
                column: id("html_sha256"),
                algorithm: DigestAlgorithm::Sha256,
                of: DigestOf::Decoded,
            }),
            content_type: Some(id("html_content_type")),
            content_encoding: Some(id("html_content_encoding")),
        },
        cold: ColdLocation::Columns(ColdColumns {
            provider: id("html_archive_provider"),
            bucket: id("html_archive_bucket"),
            key: id("html_archive_key"),
            archived_at: id("html_archived_at"),
        }),
        bookkeeping: Bookkeeping::Columns(Box::new(BookkeepingColumns {
            state: id("html_archive_state"),
            error: id("html_archive_error"),
            attempts: id("html_archive_attempts"),
            claims: id("html_archive_claims"),
            lease_owner: id("html_lease_owner"),
            lease_expires_at: id("html_lease_expires_at"),
            missing_since: id("html_missing_since"),
        })),
        side_table: None,
        cold_key: At::built_in(
            KeyTemplate::new("jobs/{job_id}/tasks/{id}/page-content.html.gz")
                .expect("the built-in key template"),
        ),
        rule: RuleSpec {
            scope: RuleScope::Parent,
            min_age: rules.min_age,
            age_columns: vec![id("restored_at"), id("completed_at"), id("created_at")],
            keep_newest: Some(rules.retention_jobs),
            group_by: vec![id("domain_id"), id("organisation_id")],
            order_by: Vec::new(),
            hot_quota: rules.hot_quota,
            condition: None,
            line: None,
        },
        parent: Some(ParentSpec {
            table: table("jobs"),
            key: id("id"),
            foreign_key: id("job_id"),
            status_column: id("status"),
            finished: At::built_in(
                crate::catalog::TERMINAL_STATUSES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            set: At::built_in(crate::catalog::ARCHIVED_STATUS.to_owned()),
            previous_status_column: Some(id("status_before_archived")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::task_html_object_path;

    /// A good declaration; line numbers matter to the tests below.
    const DOCUMENTS: &str = r#"[settings]
interval = "1m"

[[sources]]
name = "documents"
table = "public.documents"
key = "id"
cold_key = "uploads/{org_id}/{id}/{filename}"
side_table = "coldsweep_documents"

[sources.hot]
bucket_column = "bucket"
path_column = "path"

[sources.columns]
stored_size = "size"
digest = "digest"

[sources.cold]
provider_column = "archive_provider"
bucket_column = "archive_bucket"
key_column = "archive_key"
archived_at_column = "archived_at"

[sources.rule]
min_age = "90d"
age_column = "created_at"
keep_newest = 2
group_by = ["org_id"]
hot_quota = "800MB"
condition = "filename <> 'keep.pdf'"
"#;

    /// `DOCUMENTS` with the line starting `old` replaced by `new` (or
    /// removed when `new` is empty).
    fn with(old: &str, new: &str) -> String {
        let mut found = false;
        let text: Vec<&str> = DOCUMENTS
            .lines()
            .map(|l| {
                if l.starts_with(old) && !found {
                    found = true;
                    new
                } else {
                    l
                }
            })
            .collect();
        assert!(found, "no line starts with {old:?}");
        text.join("\n")
    }

    fn only_problem(text: &str) -> SpecProblem {
        let errors = parse_sources(text).expect_err("expected a problem");
        assert_eq!(errors.problems().len(), 1, "{errors}");
        errors.0.into_iter().next().unwrap()
    }

    #[test]
    fn a_declaration_reads_with_its_lines() {
        let specs = parse_sources(DOCUMENTS).unwrap();
        let [spec] = specs.as_slice() else {
            panic!("one source expected: {specs:?}")
        };
        assert_eq!(spec.name, At::new("documents".to_owned(), Some(5)));
        assert_eq!(spec.table.value.to_string(), "public.documents");
        assert_eq!(spec.table.value.quoted(), "\"public\".\"documents\"");
        assert_eq!(spec.key.line, Some(7));
        assert_eq!(spec.hot.path_column.line, Some(13));
        // The cold location is on the table: the hot path is cleared, as today.
        assert!(spec.hot.clear_path);
        let digest = spec.columns.digest.as_ref().unwrap();
        assert_eq!(
            (digest.algorithm, digest.of, digest.column.line),
            (DigestAlgorithm::Sha256, DigestOf::Stored, Some(17))
        );
        assert!(matches!(spec.cold, ColdLocation::Columns(_)));
        assert_eq!(spec.bookkeeping, Bookkeeping::SideTable);
        assert_eq!(spec.rule.min_age, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(spec.rule.keep_newest, Some(2));
        assert_eq!(spec.rule.hot_quota, Some(800_000_000));
        assert_eq!(spec.rule.order()[0].value.as_str(), "created_at");
        assert_eq!(
            spec.rule.condition.as_ref().unwrap().value.as_str(),
            "filename <> 'keep.pdf'"
        );
        assert_eq!(spec.rule.line, Some(25));
        // No [[sources]] at all: none declared.
        assert!(parse_sources("[settings]\nx = 1\n").unwrap().is_empty());
    }

    #[test]
    fn each_mistake_names_its_setting_and_line() {
        use SpecProblemKind as K;
        let cases: Vec<(String, SpecProblemKind, &str, Option<u32>)> = vec![
            (
                with("key =", "key = \"id; DROP TABLE x\""),
                K::BadIdentifier,
                "key",
                Some(7),
            ),
            (
                with("table =", "table = \"public.docs\\\"--\""),
                K::BadIdentifier,
                "table",
                Some(6),
            ),
            (
                with("path_column", "path_column = \"path/*x*/\""),
                K::BadIdentifier,
                "hot.path_column",
                Some(13),
            ),
            (
                with("group_by", "group_by = [\"org_id\", \"x'--\"]"),
                K::BadIdentifier,
                "rule.group_by",
                Some(29),
            ),
            (
                with("name =", "name = \"Documents!\""),
                K::BadValue,
                "name",
                Some(5),
            ),
            (
                with(
                    "bucket_column = \"bucket\"",
                    "bucket = \"b\"\nbucket_column = \"bucket\"",
                ),
                K::Conflict,
                "hot.bucket_column",
                Some(13),
            ),
            (
                with("bucket_column = \"bucket\"", ""),
                K::Missing,
                "hot.bucket_column",
                Some(11),
            ),
            (
                with("cold_key", "cold_key = \"uploads/../{id}\""),
                K::BadTemplate,
                "cold_key",
                Some(8),
            ),
            (
                with("cold_key", "cold_key = \"uploads/{org_id}\""),
                K::BadTemplate,
                "cold_key",
                Some(8),
            ),
            (
                with("cold_key", "cold_key = \"/{id}\""),
                K::BadTemplate,
                "cold_key",
                Some(8),
            ),
            (
                with("cold_key", "cold_key = \"a/{id; DROP}\""),
                K::BadTemplate,
                "cold_key",
                Some(8),
            ),
            (with("side_table", ""), K::Missing, "side_table", Some(4)),
            (
                with("side_table", "side_table = \"documents\""),
                K::SideTableCollision,
                "side_table",
                Some(9),
            ),
            (
                with("digest =", "digest_of = \"stored\""),
                K::Conflict,
                "columns.digest_of",
                Some(17),
            ),
            (
                with("digest =", "digest = \"digest\"\ndigest_of = \"decoded\""),
                K::Conflict,
                "columns.digest_of",
                Some(18),
            ),
            (
                with(
                    "digest =",
                    "digest = \"digest\"\ndigest_algorithm = \"crc32\"",
                ),
                K::BadValue,
                "columns.digest_algorithm",
                Some(18),
            ),
            (
                with("min_age", "min_age = \"90 fortnights\""),
                K::BadValue,
                "rule.min_age",
                Some(26),
            ),
            (
                with("hot_quota", "hot_quota = \"lots\""),
                K::BadValue,
                "rule.hot_quota",
                Some(30),
            ),
            (
                with("stored_size", ""),
                K::Missing,
                "columns.stored_size",
                Some(30),
            ),
            (
                with("keep_newest", "keep_newest = -1"),
                K::BadValue,
                "rule.keep_newest",
                Some(28),
            ),
            (
                with("keep_newest", ""),
                K::Conflict,
                "rule.group_by",
                Some(29),
            ),
            (
                with("age_column", "order_by = \"created_at\""),
                K::Missing,
                "rule.age_column",
                Some(25),
            ),
            (
                with("condition", "condition = \"true) OR (true\""),
                K::BadCondition,
                "rule.condition",
                Some(31),
            ),
            (
                with("condition", "condition = \"true; DELETE FROM documents\""),
                K::BadCondition,
                "rule.condition",
                Some(31),
            ),
            (
                with("condition", "condition = \"true -- \""),
                K::BadCondition,
                "rule.condition",
                Some(31),
            ),
            (
                with("condition", "scope = \"parent\""),
                K::Missing,
                "parent",
                Some(25),
            ),
            (
                with("key_column", "key_column = 3"),
                K::Syntax,
                "",
                Some(22),
            ),
            (
                with("key_column", "key_col = \"archive_key\""),
                K::Syntax,
                "",
                Some(22),
            ),
            (
                with("[sources.rule]", "[sources.rule"),
                K::Syntax,
                "",
                Some(25),
            ),
        ];
        for (text, kind, setting, line) in cases {
            let problem = only_problem(&text);
            assert_eq!(
                (problem.kind, problem.setting.as_str(), problem.line),
                (kind, setting, line),
                "{problem}\n---\n{text}"
            );
            // What a user reads: the source (once known), the setting and the line.
            let shown = problem.to_string();
            if kind != K::Syntax {
                assert!(shown.starts_with("source \""), "{shown}");
                assert!(shown.contains(setting), "{shown}");
            }
            if let Some(line) = line {
                assert!(shown.contains(&format!("(line {line})")), "{shown}");
            }
        }
    }

    #[test]
    fn bookkeeping_columns_on_the_table_are_refused() {
        let text = DOCUMENTS.to_owned()
            + "\n[sources.bookkeeping]\nstate = \"s\"\nerror = \"e\"\nattempts = \"a\"\n\
               claims = \"c\"\nlease_owner = \"o\"\nlease_expires_at = \"x\"\n\
               missing_since = \"m\"\n";
        let p = only_problem(&text);
        assert_eq!(
            (p.kind, p.setting.as_str()),
            (SpecProblemKind::Conflict, "bookkeeping")
        );
        assert!(p.line.is_some(), "{p}");
    }

    #[test]
    fn a_rule_needs_something_to_decide() {
        let text = [
            "min_age",
            "age_column",
            "keep_newest",
            "group_by",
            "hot_quota",
        ]
        .iter()
        .fold(DOCUMENTS.to_owned(), |text, field| {
            text.lines()
                .filter(|l| !l.starts_with(field))
                .collect::<Vec<_>>()
                .join("\n")
        });
        let problem = only_problem(&text);
        assert_eq!(
            (problem.kind, problem.setting.as_str(), problem.line),
            (SpecProblemKind::Missing, "rule", Some(25))
        );
    }

    #[test]
    fn two_sources_of_one_name_are_refused() {
        let second = DOCUMENTS
            .split_once("[[sources]]")
            .unwrap()
            .1
            .replace("coldsweep_documents", "coldsweep_documents_2");
        let text = format!("{DOCUMENTS}\n[[sources]]{second}");
        let problem = only_problem(&text);
        assert_eq!(problem.kind, SpecProblemKind::DuplicateName);
        assert_eq!(problem.setting, "name");
        assert!(
            problem.line > Some(30),
            "the second one is named: {problem}"
        );
        assert!(problem.message.contains("line 5"), "{problem}");

        let same_side = format!(
            "{DOCUMENTS}\n[[sources]]{}",
            second
                .replace("name = \"documents\"", "name = \"others\"")
                .replace("coldsweep_documents_2", "coldsweep_documents")
        );
        let problem = only_problem(&same_side);
        assert_eq!(
            (
                problem.kind,
                problem.setting.as_str(),
                problem.source.as_deref()
            ),
            (SpecProblemKind::DuplicateName, "side_table", Some("others"))
        );
    }

    #[test]
    fn errors_convert_to_invalid_input() {
        let errors = parse_sources(&with("key =", "key = \"1d\"")).unwrap_err();
        let error: Error = errors.into();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(SpecErrors::of(&error).unwrap().problems().len(), 1);
        assert!(
            error
                .chain()
                .to_string()
                .contains("source \"documents\", key (line 7)"),
            "{error}"
        );
    }

    #[test]
    fn templates_render_valid_keys_only() {
        let t = KeyTemplate::new("uploads/{org_id}/{id}/{filename}").unwrap();
        assert_eq!(
            t.columns().map(Ident::as_str).collect::<Vec<_>>(),
            ["org_id", "id", "filename"]
        );
        let values = |name: &str, file: &str| {
            let file = file.to_owned();
            let name = name.to_owned();
            move |c: &Ident| match c.as_str() {
                "org_id" => Some(name.clone()),
                "id" => Some("42".to_owned()),
                "filename" => Some(file.clone()),
                _ => None,
            }
        };
        let key = t
            .render(
                &KeyPrefix::new("prod").unwrap(),
                values("o1", "Ré sumé + #1 🎉.pdf"),
            )
            .unwrap();
        assert_eq!(key.as_str(), "prod/uploads/o1/42/Ré sumé + #1 🎉.pdf");
        // A value may not climb out or leave an empty segment.
        for (org, file) in [
            ("..", "a.pdf"),
            ("o1", "../../etc/passwd"),
            ("", "a.pdf"),
            ("o1", "a\\b"),
        ] {
            let err = t.render(&KeyPrefix::none(), values(org, file)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{org:?} {file:?}");
        }
        let err = t.render(&KeyPrefix::none(), |_| None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        for bad in [
            "",
            "plain/key",
            "a/{",
            "a/}",
            "a/{x{y}}",
            "a/{}",
            "a//{id}",
            "a/{id}/",
            "./{id}",
            "{id}\u{0}",
        ] {
            assert!(KeyTemplate::new(bad).is_err(), "{bad:?}");
        }
        assert!(KeyTemplate::new("{id}").is_ok());
        assert!(KeyTemplate::new("v1/{org_id}-{id}.bin").is_ok());
    }

    #[test]
    fn the_built_in_source_keys_tasks_as_today() {
        let spec = task_html(&Rules::retention(3));
        let key = spec
            .cold_key
            .value
            .render(&KeyPrefix::none(), |c| match c.as_str() {
                "job_id" => Some("j1".to_owned()),
                "id" => Some("t9".to_owned()),
                _ => None,
            })
            .unwrap();
        assert_eq!(key.as_str(), task_html_object_path("j1", "t9"));
        assert_eq!(spec.rule.keep_newest, Some(3));
        assert_eq!(spec.rule.scope, RuleScope::Parent);
        let mut problems = Vec::new();
        check_together(&[spec], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    fn column(name: &str, family: TypeFamily, primary_key: bool) -> Column {
        Column {
            name: name.to_owned(),
            family,
            declared: family.as_str().to_owned(),
            nullable: !primary_key,
            primary_key,
        }
    }

    #[test]
    fn sqlite_text_timestamps_pass_with_a_note_and_postgres_text_does_not() {
        let spec = parse_sources(DOCUMENTS).unwrap().remove(0);
        let text = TypeFamily::Text;
        let documents = TableSchema {
            schema: "public".to_owned(),
            name: "documents".to_owned(),
            columns: vec![
                column("id", TypeFamily::Integer { bits: 64 }, true),
                column("org_id", TypeFamily::Uuid, false),
                column("filename", text, false),
                column("bucket", text, false),
                column("path", text, false),
                column("created_at", text, false),
                column("digest", text, false),
                column("size", TypeFamily::Integer { bits: 64 }, false),
                column("archive_provider", text, false),
                column("archive_bucket", text, false),
                column("archive_key", text, false),
                column(
                    "archived_at",
                    TypeFamily::Timestamp {
                        with_time_zone: true,
                    },
                    false,
                ),
            ],
            case_insensitive: false,
        };
        let mut schemas = Schemas::new();
        schemas.insert(spec.table.value.clone(), Some(documents));
        schemas.insert(spec.side_table.clone().unwrap().value, None);

        let mut problems = Vec::new();
        let notes = spec.check(&schemas, true, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].column, "created_at");
        assert!(notes[0].message.contains("compared as instants"));

        spec.check(&schemas, false, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(
            (p.kind, p.setting.as_str(), p.column.as_deref(), p.line),
            (
                SpecProblemKind::WrongType,
                "rule.age_column",
                Some("created_at"),
                Some(27)
            )
        );
    }
}
