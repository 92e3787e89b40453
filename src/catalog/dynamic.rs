//! Statements built at run time for declared sources
//! ([`crate::source::TableSource`]): their text comes only from validated,
//! quoted identifiers ([`Ident`](super::Ident), [`TableName`](super::TableName))
//! and a checked [`Condition`](super::Condition); every value is bound. A
//! [`Statement`] can only be built inside the crate, so the door
//! [`Catalog::run_statements`](super::Catalog::run_statements) opens is not
//! open to arbitrary text.

use chrono::{DateTime, Utc};

/// The SQL dialect of a catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Postgres.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A value bound to a [`Statement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    /// NULL (typed as text).
    Null,
    /// Text.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
    /// An instant: a `timestamptz` on Postgres, RFC 3339 text on SQLite.
    Time(DateTime<Utc>),
    /// A list of texts: a `text[]` on Postgres, a JSON array on SQLite.
    TextList(Vec<String>),
    /// Text keyed by text: `jsonb` text on Postgres, JSON text on SQLite.
    TextMap(Vec<(String, String)>),
}

impl SqlValue {
    /// The JSON text of a list or a map (how SQLite, and Postgres for a
    /// map, receive them).
    pub(crate) fn json(&self) -> Option<String> {
        match self {
            SqlValue::TextList(items) => Some(serde_json::Value::from(items.clone()).to_string()),
            SqlValue::TextMap(pairs) => Some(
                serde_json::Value::Object(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                        .collect(),
                )
                .to_string(),
            ),
            _ => None,
        }
    }
}

/// One statement and its binds (`$1`, `$2`, … in bind order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub(crate) sql: String,
    pub(crate) binds: Vec<SqlValue>,
}

impl Statement {
    /// Only the crate builds statements, from checked identifiers.
    pub(crate) fn new(sql: String, binds: Vec<SqlValue>) -> Self {
        Self { sql, binds }
    }

    /// The text, for tests and errors.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// A row with every column read as text (the statements cast them).
pub type TextRow = Vec<Option<String>>;
