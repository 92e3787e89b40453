//! What the catalog's live schema says about a table: its columns, each
//! with the family of its type, nullability and whether it is part of the
//! primary key ([`Catalog::describe_table`](super::Catalog::describe_table)).
//!
//! Postgres reports a column's type (a domain's base type); SQLite reports
//! the declared type, from which its affinity follows (SQLite's rules:
//! `INT` → integer; `CHAR`, `CLOB`, `TEXT` → text; `BLOB` or none → blob;
//! `REAL`, `FLOA`, `DOUB` → real; anything else numeric). A few declared
//! names SQLite gives no affinity of their own are recognised first:
//! `UUID`, `BOOL…`, `DATE…`/`…TIME…` (timestamps, stored as text or
//! numbers and compared as instants).

use crate::catalog::ident::Ident;

/// The family of a column's type, as far as coldsweep's checks and bindings care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TypeFamily {
    /// `text`, `varchar`, `char`, `citext`, `name`; SQLite text affinity.
    Text,
    /// An integer of this many bits (`smallint` 16, `integer` 32,
    /// `bigint` 64; every SQLite integer is 64).
    Integer {
        /// Width in bits.
        bits: u8,
    },
    /// `numeric`, `real`, `double precision`; SQLite real or numeric affinity.
    Number,
    /// `uuid` (on SQLite: a column declared `UUID`, whose values are text).
    Uuid,
    /// A point in time: `timestamptz` (`with_time_zone`), `timestamp`; on
    /// SQLite a column declared `DATETIME`, `TIMESTAMP`, … (values are text
    /// or numbers, compared as instants).
    Timestamp {
        /// Whether the database keeps the instant with its zone.
        with_time_zone: bool,
    },
    /// `date`.
    Date,
    /// `boolean`.
    Boolean,
    /// `bytea`; SQLite blob affinity.
    Bytes,
    /// `json`, `jsonb`.
    Json,
    /// Anything else (arrays, ranges, enums, …): named in [`Column::declared`].
    Other,
}

impl TypeFamily {
    /// Short name for messages: `text`, `integer`, `bigint`, `uuid`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            TypeFamily::Text => "text",
            TypeFamily::Integer { bits: 64 } => "bigint",
            TypeFamily::Integer { bits: 16 } => "smallint",
            TypeFamily::Integer { .. } => "integer",
            TypeFamily::Number => "number",
            TypeFamily::Uuid => "uuid",
            TypeFamily::Timestamp {
                with_time_zone: true,
            } => "timestamptz",
            TypeFamily::Timestamp { .. } => "timestamp",
            TypeFamily::Date => "date",
            TypeFamily::Boolean => "boolean",
            TypeFamily::Bytes => "bytes",
            TypeFamily::Json => "json",
            TypeFamily::Other => "other",
        }
    }

    /// The family of a Postgres type, by its (base) type name in `pg_type`.
    pub fn from_postgres(type_name: &str) -> Self {
        match type_name {
            "text" | "varchar" | "bpchar" | "name" | "citext" => TypeFamily::Text,
            "int2" => TypeFamily::Integer { bits: 16 },
            "int4" => TypeFamily::Integer { bits: 32 },
            "int8" => TypeFamily::Integer { bits: 64 },
            "numeric" | "float4" | "float8" | "money" => TypeFamily::Number,
            "uuid" => TypeFamily::Uuid,
            "timestamptz" => TypeFamily::Timestamp {
                with_time_zone: true,
            },
            "timestamp" => TypeFamily::Timestamp {
                with_time_zone: false,
            },
            "date" => TypeFamily::Date,
            "bool" => TypeFamily::Boolean,
            "bytea" => TypeFamily::Bytes,
            "json" | "jsonb" => TypeFamily::Json,
            _ => TypeFamily::Other,
        }
    }

    /// The family of a SQLite column declared with `declared` (see the
    /// module's notes).
    pub fn from_sqlite(declared: &str) -> Self {
        let d = declared.to_ascii_uppercase();
        if d.contains("UUID") {
            return TypeFamily::Uuid;
        }
        if d.starts_with("BOOL") {
            return TypeFamily::Boolean;
        }
        if d.contains("INT") {
            return TypeFamily::Integer { bits: 64 };
        }
        if d.contains("TIME") {
            return TypeFamily::Timestamp {
                with_time_zone: false,
            };
        }
        if d.starts_with("DATE") {
            return TypeFamily::Date;
        }
        if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
            return TypeFamily::Text;
        }
        if d.is_empty() || d.contains("BLOB") {
            return TypeFamily::Bytes;
        }
        if d.starts_with("JSON") {
            return TypeFamily::Json;
        }
        TypeFamily::Number
    }
}

/// One column as the database describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Its name, as the database spells it.
    pub name: String,
    /// Its type's family.
    pub family: TypeFamily,
    /// Its type as the database writes it (`bigint`, `timestamp with time
    /// zone`, SQLite's declared text).
    pub declared: String,
    /// Whether it may hold NULL.
    pub nullable: bool,
    /// Whether it is (part of) the primary key.
    pub primary_key: bool,
}

/// A table (or view) as the database describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSchema {
    /// The schema it was found in (`public`, SQLite's `main`).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its columns, in table order.
    pub columns: Vec<Column>,
    /// Whether the database matches names regardless of case (SQLite);
    /// Postgres matches the quoted names coldsweep writes exactly.
    pub case_insensitive: bool,
}

impl TableSchema {
    /// The column named `name`, as the database would resolve it.
    pub fn column(&self, name: &Ident) -> Option<&Column> {
        let name = name.as_str();
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            self.case_insensitive
                .then(|| {
                    self.columns
                        .iter()
                        .find(|c| c.name.eq_ignore_ascii_case(name))
                })
                .flatten()
        })
    }

    /// The primary key's columns, in table order.
    pub fn primary_key(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| c.primary_key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_declared_types_map_to_their_affinity() {
        for (declared, family) in [
            ("INTEGER", TypeFamily::Integer { bits: 64 }),
            ("BIGINT", TypeFamily::Integer { bits: 64 }),
            ("TEXT", TypeFamily::Text),
            ("VARCHAR(20)", TypeFamily::Text),
            ("", TypeFamily::Bytes),
            ("BLOB", TypeFamily::Bytes),
            ("REAL", TypeFamily::Number),
            ("NUMERIC", TypeFamily::Number),
            ("uuid", TypeFamily::Uuid),
            ("BOOLEAN", TypeFamily::Boolean),
            (
                "DATETIME",
                TypeFamily::Timestamp {
                    with_time_zone: false,
                },
            ),
            (
                "TIMESTAMP",
                TypeFamily::Timestamp {
                    with_time_zone: false,
                },
            ),
            ("DATE", TypeFamily::Date),
        ] {
            assert_eq!(TypeFamily::from_sqlite(declared), family, "{declared}");
        }
    }
}
