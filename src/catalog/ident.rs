//! SQL words that come from a configuration file: identifiers, table names
//! and a source's row condition, each validated once so that no text from
//! outside reaches a statement unchecked.
//!
//! An identifier is a plain SQL name (`[A-Za-z_][A-Za-z0-9_]*`, at most
//! [`MAX_IDENT_LEN`] bytes, Postgres's limit) and is always written quoted
//! (`"name"`, an embedded `"` doubled, although the pattern admits none).
//! Quoted names are case-sensitive on Postgres: `Documents` and
//! `documents` are different tables there (SQLite folds case either way).
//!
//! A [`Condition`] is a boolean expression an operator wrote. It is checked
//! here for the marks that could break out of the `WHERE ( … )` it is
//! placed in (see [`Condition::new`]), then by the database itself
//! ([`Catalog::check_condition`](super::Catalog::check_condition)).

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// Longest identifier accepted, in bytes (Postgres truncates names past 63).
pub const MAX_IDENT_LEN: usize = 63;

/// Longest condition accepted, in bytes.
pub const MAX_CONDITION_LEN: usize = 4096;

/// A validated SQL identifier (column, table or schema name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validate `name`: a letter or `_`, then letters, digits or `_`; at
    /// most [`MAX_IDENT_LEN`] bytes.
    pub fn new(name: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!("identifier {name:?} rejected: {why}"),
            ))
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return bad("empty"),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            Some(_) => return bad("must start with a letter or '_'"),
        }
        if name.len() > MAX_IDENT_LEN {
            return bad("longer than 63 bytes");
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("only letters, digits and '_' are allowed");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted for SQL: `"name"`, any `"` doubled.
    pub fn quoted(&self) -> String {
        quote(&self.0)
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A table name, optionally qualified by its schema (`public.documents`;
/// on SQLite the schema is an attached database's name, `main` by default).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema, if qualified.
    pub schema: Option<Ident>,
    /// The table.
    pub name: Ident,
}

impl TableName {
    /// Parse `table` or `schema.table`, each part an [`Ident`].
    pub fn new(text: &str) -> Result<Self> {
        let (schema, name) = match text.split_once('.') {
            Some((schema, name)) => (Some(Ident::new(schema)?), Ident::new(name)?),
            None => (None, Ident::new(text)?),
        };
        Ok(Self { schema, name })
    }

    /// An unqualified table name.
    pub fn unqualified(name: Ident) -> Self {
        Self { schema: None, name }
    }

    /// The name quoted for SQL: `"schema"."table"` or `"table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", schema.quoted(), self.name.quoted()),
            None => self.name.quoted(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// A boolean SQL expression over one table's columns that narrows the rows
/// a source considers (e.g. `deleted_at IS NULL AND kind <> 'draft'`).
///
/// It is SQL the operator wrote, placed only inside `WHERE ( … )` of the
/// statement that selects a source's rows, never in a `SET`, a target list
/// or a statement of its own. [`Condition::new`] refuses what could reach
/// past those parentheses: a `;`, a comment (`--`, `/*`), unbalanced
/// parentheses or quotes, backslashes, `$` (dollar quoting, parameters),
/// `E'…'` strings, backticks and square brackets (other quoting rules whose
/// contents this check would misread). What is left can still call any
/// function the catalog role may call: the role, not this check, is what
/// limits a condition's reach.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Condition(String);

impl Condition {
    /// Validate `text` as above; surrounding whitespace is trimmed.
    pub fn new(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!("condition {text:?} rejected: {why}"),
            ))
        };
        if text.is_empty() {
            return bad("empty");
        }
        if text.len() > MAX_CONDITION_LEN {
            return bad("longer than 4096 bytes");
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != ' ' && c != '\n' && c != '\t')
        {
            return bad("contains a control character");
        }
        if text.contains('\\') {
            return bad("backslashes are not allowed");
        }
        let bytes = text.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'\'' | b'"' => {
                    // A quoted string or name: the quote doubled inside it
                    // stands for itself; nothing inside counts as syntax.
                    let mut j = i + 1;
                    loop {
                        match bytes.get(j) {
                            None => return bad("unterminated quote"),
                            Some(&q) if q == c => {
                                if bytes.get(j + 1) == Some(&c) {
                                    j += 2;
                                } else {
                                    break;
                                }
                            }
                            Some(_) => j += 1,
                        }
                    }
                    if c == b'\''
                        && i > 0
                        && matches!(bytes[i - 1], b'e' | b'E')
                        && !(i > 1
                            && (bytes[i - 2].is_ascii_alphanumeric() || bytes[i - 2] == b'_'))
                    {
                        return bad("E'…' strings are not allowed");
                    }
                    i = j + 1;
                    continue;
                }
                b';' => return bad("';' is not allowed"),
                b'$' => return bad("'$' is not allowed"),
                b'`' | b'[' | b']' => return bad("backticks and square brackets are not allowed"),
                b'-' if bytes.get(i + 1) == Some(&b'-') => return bad("comments are not allowed"),
                b'/' if bytes.get(i + 1) == Some(&b'*') => return bad("comments are not allowed"),
                b'(' => depth += 1,
                b')' => {
                    if depth == 0 {
                        return bad("a ')' closes more than was opened");
                    }
                    depth -= 1;
                }
                _ => {}
            }
            i += 1;
        }
        if depth != 0 {
            return bad("unbalanced parentheses");
        }
        Ok(Self(text.to_owned()))
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The expression in parentheses, ready for `WHERE … AND (…)`.
    pub fn parenthesized(&self) -> String {
        format!("({})", self.0)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_are_quoted() {
        assert_eq!(Ident::new("org_id").unwrap().quoted(), "\"org_id\"");
        assert_eq!(Ident::new("_X9").unwrap().as_str(), "_X9");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        let table = TableName::new("public.documents").unwrap();
        assert_eq!(table.quoted(), "\"public\".\"documents\"");
        assert_eq!(table.to_string(), "public.documents");
        assert_eq!(TableName::new("posts").unwrap().quoted(), "\"posts\"");
        assert!(Ident::new(&"a".repeat(MAX_IDENT_LEN)).is_ok());
    }

    #[test]
    fn injection_attempts_are_refused() {
        for bad in [
            "",
            "id; DROP TABLE x",
            "id\"; DROP TABLE x; --",
            "\"id\"",
            "id--",
            "id/*x*/",
            "1id",
            "id name",
            "ïd",
            "id\0",
            "a.b",
            &"a".repeat(MAX_IDENT_LEN + 1),
        ] {
            let err = Ident::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        for bad in ["a.b.c", ".x", "x.", "public.docs; DROP TABLE x", "s.\"t\""] {
            assert!(TableName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conditions_stay_inside_their_parentheses() {
        for good in [
            "deleted_at IS NULL",
            "kind <> 'it''s; -- fine in a string' AND (a = 1 OR b = 2)",
            "\"Odd Name\" = 'x'",
            "EXISTS (SELECT 1 FROM flags f WHERE f.id = flag_id)",
            "size_bytes > 1024\n  AND mime LIKE 'image/%'",
        ] {
            let c = Condition::new(good).unwrap();
            assert_eq!(c.parenthesized(), format!("({})", good.trim()));
        }
        for bad in [
            "",
            "true; DROP TABLE documents",
            "true) OR (true",
            "(true",
            "true -- AND owner = 'x'",
            "true /* */",
            "x = 'unterminated",
            "x = \"unterminated",
            "x = E'\\''",
            "x = e'a'",
            "x = 'a\\'",
            "x = $1",
            "x = $$a$$",
            "[x] = 1",
            "`x` = 1",
            "a = 1\rAND b = 2",
            &"a".repeat(MAX_CONDITION_LEN + 1),
        ] {
            let err = Condition::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        // A name ending in e before a string is not an E'' string.
        assert!(Condition::new("type = 'a'").is_ok());
    }
}
