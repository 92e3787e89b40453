//! The `uploads` example (`coldsweep demo --example uploads`): an
//! application of its own, not a crawler. A `documents` table, as a
//! Supabase app keeps it, points at files in a `documents` bucket; the
//! README's first worked example declares it as a source archived after 90
//! days, which [`DECLARATION`] is, on SQLite.
//!
//! The rows are what such tables really hold: a bigint key, file names with
//! spaces, accents in both Unicode normal forms, `+ # % ? &`, CJK and
//! emoji; sizes and digests (SHA-256 of the stored bytes) on most rows but
//! not all; creation times written in the several text formats SQLite
//! applications use; a legal hold that keeps a file hot whatever its age.
//! One file's bytes no longer match its digest, so a sweep shows what it
//! does with such a file (quarantined, left hot).

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest as _, Sha256};

use crate::catalog::{Catalog, SqlValue, Statement};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ObjectKey;
use crate::store::{Location, PutOptions, Store};

/// The hot bucket the documents live in.
pub const HOT_BUCKET: &str = "documents";

/// The source declaration, as `coldsweep.toml` holds it.
pub const DECLARATION: &str = r#"[[sources]]
name = "documents"
table = "documents"
key = "id"
cold_key = "documents/{owner_id}/{id}/{file_name}"
side_table = "coldsweep_documents"

[sources.hot]
bucket = "documents"
path_column = "storage_path"

[sources.columns]
stored_size = "size_bytes"
digest = "sha256"
digest_of = "stored"
content_type = "mime_type"

[sources.cold]
provider_column = "archive_provider"
bucket_column = "archive_bucket"
key_column = "archive_key"
archived_at_column = "archived_at"

[sources.rule]
min_age = "90d"
age_column = "created_at"
condition = "NOT legal_hold"
"#;

/// The application's table, on SQLite.
const SCHEMA: &str = "CREATE TABLE documents (
    id               INTEGER PRIMARY KEY,
    owner_id         TEXT NOT NULL,
    file_name        TEXT NOT NULL,
    storage_path     TEXT,
    size_bytes       INTEGER,
    sha256           TEXT,
    mime_type        TEXT,
    legal_hold       INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    archive_provider TEXT,
    archive_bucket   TEXT,
    archive_key      TEXT,
    archived_at      TEXT
)";

/// The two owners.
const OWNERS: [&str; 2] = [
    "6f1e2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b",
    "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a",
];

/// One document: file name, age in days, whether under legal hold.
const DOCUMENTS: [(&str, i64, bool); 12] = [
    ("Quarterly report Q1.pdf", 400, false),
    ("Résumé final.docx", 320, false), // é as one code point (NFC)
    ("Re\u{301}sume\u{301} draft.docx", 300, false), // é as e + accent (NFD)
    ("a+b #1 100%?&.csv", 250, false),
    ("報告書 2024.pdf", 200, false),
    ("team photo 🎉.jpg", 150, true),
    ("contract signed.pdf", 120, false),
    ("invoice 2024-11.pdf", 95, false),
    ("notes.txt", 60, false),
    ("slides v2.key", 30, false),
    ("draft.md", 3, false),
    ("scan 0001.png", 1, false),
];

/// The document whose stored bytes no longer match its digest.
pub const TAMPERED: &str = "contract signed.pdf";

/// What [`seed`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Rows written (0 when the table was already there).
    pub documents: usize,
    /// Their stored bytes.
    pub bytes: u64,
}

/// Create the `documents` table in `catalog` (a SQLite catalog) and its
/// files in `hot`, unless the table exists already (a second run changes
/// nothing). Times are relative to `now`.
pub async fn seed(catalog: &dyn Catalog, hot: &dyn Store, now: DateTime<Utc>) -> Result<Seeded> {
    let table = crate::catalog::TableName::new("documents")?;
    if catalog.describe_table(&table).await?.is_some() {
        return Ok(Seeded::default());
    }
    if catalog.backend() != "sqlite" {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "the uploads example runs on the embedded SQLite catalog",
        ));
    }
    let mut statements = vec![Statement::new(SCHEMA.to_owned(), Vec::new())];
    let mut seeded = Seeded::default();
    for (n, (name, days, hold)) in DOCUMENTS.iter().enumerate() {
        let owner = OWNERS[n % OWNERS.len()];
        let id = n as i64 + 1;
        let path = format!("{owner}/{id}/{name}");
        let body = format!("{name}\n{}\n", "lorem ipsum ".repeat(20 + n * 7)).into_bytes();
        let digest = hex::encode(Sha256::digest(&body));
        let stored = if *name == TAMPERED {
            let mut changed = body.clone();
            changed[0] ^= 0x20;
            changed
        } else {
            body.clone()
        };
        let location = Location::new(HOT_BUCKET, ObjectKey::new(&path)?);
        hot.put(&location, Bytes::from(stored), &PutOptions::default())
            .await?;
        let created = created_at(now - Duration::days(*days), n);
        // Every fourth file has neither size nor digest, as many tables do:
        // its copy is proven against what the hot store reports.
        let (size, digest) = if n % 4 == 3 {
            (SqlValue::Null, SqlValue::Null)
        } else {
            (SqlValue::Int(body.len() as i64), SqlValue::Text(digest))
        };
        statements.push(Statement::new(
            "INSERT INTO documents (id, owner_id, file_name, storage_path, size_bytes, sha256,
                 mime_type, legal_hold, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                .to_owned(),
            vec![
                SqlValue::Int(id),
                SqlValue::Text(owner.to_owned()),
                SqlValue::Text((*name).to_owned()),
                SqlValue::Text(path),
                size,
                digest,
                SqlValue::Text(mime_type(name).to_owned()),
                SqlValue::Int(i64::from(*hold)),
                SqlValue::Text(created),
            ],
        ));
        seeded.documents += 1;
        seeded.bytes += body.len() as u64;
    }
    catalog.run_statements(&statements).await?;
    Ok(seeded)
}

/// `at` in one of the text formats SQLite applications write (coldsweep
/// compares them all as instants).
fn created_at(at: DateTime<Utc>, n: usize) -> String {
    let plus_two = chrono::FixedOffset::east_opt(2 * 3600);
    match (n % 3, plus_two) {
        (1, _) => at.format("%Y-%m-%d %H:%M:%S").to_string(),
        (2, Some(tz)) => at
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        _ => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

fn mime_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        Some("csv") => "text/csv",
        Some("txt" | "md") => "text/plain",
        _ => "application/octet-stream",
    }
}

/// Each document's key and file name, by key.
pub async fn file_names(catalog: &dyn Catalog) -> Result<Vec<(String, String)>> {
    let rows = catalog
        .run_statements(&[Statement::new(
            "SELECT CAST(id AS TEXT), file_name FROM documents ORDER BY id".to_owned(),
            Vec::new(),
        )])
        .await?;
    Ok(rows
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let mut row = row.into_iter();
            Some((row.next()??, row.next()??))
        })
        .collect())
}
