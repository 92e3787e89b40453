//! A second application schema, shaped unlike the crawler's: user uploads
//! in `documents` (a bigint identity key, a uuid organisation, NULL digests
//! and sizes, the cold location written on the table) and post images in
//! `posts` (a uuid key, one fixed hot bucket, a side table for everything
//! coldsweep records), on Postgres and, as close as SQLite allows (uuids
//! and timestamps as text), on SQLite. The shipped schema is migrated
//! beside it, so the built-in source and application tables such as `jobs`
//! exist too.
//!
//! [`DECLARATIONS`] declares both as sources; each table has a few rows
//! with the file names real applications hold.

use std::sync::Arc;

use coldsweep::Catalog;
use sqlx::{AssertSqlSafe, Executor};

use crate::harness::pg::{fresh_database, sqlite_database};

/// The two sources over this schema, as a config file declares them.
/// Line numbers are asserted by tests.
pub(crate) const DECLARATIONS: &str = r#"[[sources]]
name = "documents"
table = "documents"
key = "id"
cold_key = "uploads/{org_id}/{id}/{filename}"
side_table = "coldsweep_documents"

[sources.hot]
bucket_column = "bucket"
path_column = "path"

[sources.columns]
stored_size = "size"
digest = "digest"
digest_algorithm = "sha256"
digest_of = "stored"

[sources.cold]
provider_column = "archive_provider"
bucket_column = "archive_bucket"
key_column = "archive_key"
archived_at_column = "archived_at"

[sources.rule]
min_age = "90d"
age_column = "created_at"
keep_newest = 2
group_by = ["org_id", "bucket"]
condition = "filename <> 'keep.pdf'"

[[sources]]
name = "post-images"
table = "posts"
key = "id"
cold_key = "posts/{id}/{image_path}"
side_table = "coldsweep_posts"

[sources.hot]
bucket = "images"
path_column = "image_path"

[sources.columns]
stored_size = "image_bytes"

[sources.rule]
hot_quota = "1GB"
order_by = "created_at"
"#;

const POSTGRES: &str = r#"
CREATE TABLE documents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           uuid NOT NULL,
    filename         text NOT NULL,
    bucket           text NOT NULL,
    path             text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    digest           text NULL,
    size             bigint NULL,
    archive_provider text,
    archive_bucket   text,
    archive_key      text,
    archived_at      timestamptz
);
CREATE TABLE posts (
    id          uuid PRIMARY KEY,
    author_id   uuid NOT NULL,
    title       text NOT NULL,
    image_path  text,
    image_bytes integer,
    created_at  timestamptz NOT NULL
);
INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size) VALUES
    ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'Résumé final.pdf', 'uploads',
     'org-a/Résumé final.pdf', '2024-01-01T10:00:00Z', NULL, NULL),
    ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'a+b #1 100%?&.txt', 'uploads',
     'org-a/a+b #1 100%?&.txt', '2024-02-01T10:00:00+02:00',
     'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 0),
    ('0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b', '報告 🎉.docx', 'uploads-eu',
     'org-b/報告 🎉.docx', '2024-03-01T10:00:00Z', NULL, 12);
INSERT INTO posts (id, author_id, title, image_path, image_bytes, created_at) VALUES
    ('1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c', '0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a',
     'hello', U&'p/1/cafe\0301.jpg', 2048, '2024-01-05T00:00:00Z'),
    ('2d2d2d2d-2d2d-4d2d-8d2d-2d2d2d2d2d2d', '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b',
     'no image', NULL, NULL, '2024-01-06T00:00:00Z');
"#;

pub(crate) const SQLITE: &str = r#"
CREATE TABLE documents (
    id               INTEGER PRIMARY KEY,
    org_id           TEXT NOT NULL,
    filename         TEXT NOT NULL,
    bucket           TEXT NOT NULL,
    path             TEXT,
    created_at       TEXT NOT NULL,
    digest           TEXT,
    size             INTEGER,
    archive_provider TEXT,
    archive_bucket   TEXT,
    archive_key      TEXT,
    archived_at      TEXT
);
CREATE TABLE posts (
    id          TEXT PRIMARY KEY NOT NULL,
    author_id   TEXT NOT NULL,
    title       TEXT NOT NULL,
    image_path  TEXT,
    image_bytes INTEGER,
    created_at  TEXT NOT NULL
);
INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size) VALUES
    ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'Résumé final.pdf', 'uploads',
     'org-a/Résumé final.pdf', '2024-01-01T10:00:00Z', NULL, NULL),
    ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'a+b #1 100%?&.txt', 'uploads',
     'org-a/a+b #1 100%?&.txt', '2024-02-01 10:00:00+02:00',
     'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 0),
    ('0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b', '報告 🎉.docx', 'uploads-eu',
     'org-b/報告 🎉.docx', '2024-03-01T10:00:00.000Z', NULL, 12);
INSERT INTO posts (id, author_id, title, image_path, image_bytes, created_at) VALUES
    ('1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c', '0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a',
     'hello', 'p/1/cafe' || char(769) || '.jpg', 2048, '2024-01-05T00:00:00Z'),
    ('2d2d2d2d-2d2d-4d2d-8d2d-2d2d2d2d2d2d', '0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b',
     'no image', NULL, NULL, '2024-01-06 00:00:00');
"#;

/// A catalog holding the shipped schema and this one, and whatever keeps
/// its database alive.
pub(crate) struct Uploads {
    pub(crate) catalog: Arc<dyn Catalog>,
    /// The Postgres catalog's pool, for statements of a test's own.
    pub(crate) pg_pool: Option<sqlx::PgPool>,
    /// The SQLite catalog's pool, likewise.
    pub(crate) sqlite_pool: Option<sqlx::SqlitePool>,
    /// The catalog's URL, for the binary.
    pub(crate) url: String,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

/// The uploads schema on a fresh Postgres database.
pub(crate) async fn pg_uploads() -> Uploads {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog
        .migrate()
        .await
        .expect("migrate the Postgres catalog");
    db.connection()
        .await
        .execute(AssertSqlSafe(POSTGRES))
        .await
        .expect("create the uploads schema on Postgres");
    Uploads {
        pg_pool: Some(catalog.pool().clone()),
        sqlite_pool: None,
        url: db.url().to_owned(),
        catalog: Arc::new(catalog),
        _keep: Box::new(db),
    }
}

/// The uploads schema in a fresh SQLite file.
pub(crate) async fn sqlite_uploads() -> Uploads {
    let db = sqlite_database();
    let catalog = db.catalog().await;
    catalog.migrate().await.expect("migrate the SQLite catalog");
    catalog
        .pool()
        .execute(AssertSqlSafe(SQLITE))
        .await
        .expect("create the uploads schema on SQLite");
    Uploads {
        pg_pool: None,
        sqlite_pool: Some(catalog.pool().clone()),
        url: db.url().to_owned(),
        catalog: Arc::new(catalog),
        _keep: Box::new(db),
    }
}
