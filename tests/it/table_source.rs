//! Declared sources moved end to end over the second schema
//! (`uploads_schema`): bigint and uuid keys, a composite group, NULL
//! digests and sizes, a digest of the stored bytes, a side table, awkward
//! file names; on Postgres with S3-protocol stores and on SQLite with
//! folders.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use coldsweep::archiver::CatalogJobMarker;
use coldsweep::catalog::Catalog;
use coldsweep::source::TableSource;
use coldsweep::source::spec::{parse_sources, validate_sources};
use coldsweep::store::{FsStore, PutOptions, S3Store};
use coldsweep::{ArchiveSource, Archiver, Config, Location, ObjectKey, Provider, Store};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Executor};

use crate::harness;
use crate::uploads_schema::{DECLARATIONS, Uploads, pg_uploads, sqlite_uploads};

pub(crate) const COLD: &str = "cold-archive";

/// The uploads schema with stores holding every row's hot copy.
pub(crate) struct Scene {
    pub(crate) db: Uploads,
    pub(crate) hot: Arc<dyn Store>,
    pub(crate) cold: Arc<dyn Store>,
    provider: Provider,
    _keep: Vec<Box<dyn Any + Send + Sync>>,
}

/// Older documents of organisation a, besides the fixture's rows: two
/// move (beyond the newest two of their group), `keep.pdf` is held by
/// the condition.
pub(crate) const MORE_DOCUMENTS: &[(&str, &str, &str)] = &[
    ("old one.pdf", "2023-01-01T00:00:00Z", "old bytes"),
    ("keep.pdf", "2023-02-01T00:00:00Z", "kept bytes"),
    (
        "Ünïcode 名前 🎉 a+b%.txt",
        "2023-03-01T00:00:00Z",
        "unicode bytes",
    ),
];

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
}

impl Scene {
    pub(crate) async fn new(postgres: bool) -> Scene {
        let (db, hot, cold, provider, keep): (_, Arc<dyn Store>, Arc<dyn Store>, _, _) = if postgres
        {
            let db = pg_uploads().await;
            let server = harness::s3::S3Server::start().await;
            for bucket in ["uploads", "uploads-eu", "images", COLD] {
                server.create_bucket(bucket);
            }
            let config = server.config();
            (
                db,
                Arc::new(S3Store::new("minio", &config).unwrap()),
                Arc::new(S3Store::new("minio", &config).unwrap()),
                Provider::Minio,
                vec![Box::new(server) as Box<dyn Any + Send + Sync>],
            )
        } else {
            let db = sqlite_uploads().await;
            let dir = tempfile::tempdir().unwrap();
            for bucket in ["uploads", "uploads-eu", "images"] {
                std::fs::create_dir_all(dir.path().join("hot").join(bucket)).unwrap();
            }
            std::fs::create_dir_all(dir.path().join("cold").join(COLD)).unwrap();
            (
                db,
                Arc::new(FsStore::new(dir.path().join("hot")).unwrap()),
                Arc::new(FsStore::new(dir.path().join("cold")).unwrap()),
                Provider::Fs,
                vec![Box::new(dir) as Box<dyn Any + Send + Sync>],
            )
        };
        let scene = Scene {
            db,
            hot,
            cold,
            provider,
            _keep: keep,
        };
        for (name, created, body) in MORE_DOCUMENTS {
            let digest = hex::encode(Sha256::digest(body.as_bytes()));
            scene
                .exec(&format!(
                    "INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size)
                     VALUES ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', '{name}', 'uploads',
                             'org-a/{name}', '{created}', '{digest}', {})",
                    body.len()
                ))
                .await;
        }
        // Every row's hot copy, with the bytes its row describes.
        for (bucket, path, size) in scene
            .rows("SELECT bucket, path, CAST(size AS TEXT) FROM documents")
            .await
        {
            let (bucket, path) = (bucket.unwrap(), path.unwrap());
            let body = match MORE_DOCUMENTS.iter().find(|(n, _, _)| path.ends_with(n)) {
                Some((_, _, body)) => body.as_bytes().to_vec(),
                None => vec![b'x'; size.map_or(5, |s| s.parse().unwrap())],
            };
            scene.put(&bucket, &path, body).await;
        }
        for (path, size, _) in scene
            .rows("SELECT image_path, CAST(image_bytes AS TEXT), NULL FROM posts WHERE image_path IS NOT NULL")
            .await
        {
            let size: usize = size.unwrap().parse().unwrap();
            scene.put("images", &path.unwrap(), vec![7u8; size]).await;
        }
        scene
    }

    pub(crate) async fn put(&self, bucket: &str, path: &str, body: Vec<u8>) {
        let location = Location::new(bucket, ObjectKey::new(path).unwrap());
        self.hot
            .put(&location, Bytes::from(body), &PutOptions::default())
            .await
            .unwrap();
    }

    pub(crate) async fn exec(&self, sql: &str) {
        match (&self.db.pg_pool, &self.db.sqlite_pool) {
            (Some(pool), _) => {
                pool.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
            }
            (_, Some(pool)) => {
                pool.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
            }
            _ => unreachable!(),
        }
    }

    /// Three text columns of each row `sql` selects.
    pub(crate) async fn rows(
        &self,
        sql: &str,
    ) -> Vec<(Option<String>, Option<String>, Option<String>)> {
        use sqlx::Row;
        match (&self.db.pg_pool, &self.db.sqlite_pool) {
            (Some(pool), _) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            (_, Some(pool)) => sqlx::query(AssertSqlSafe(sql.to_owned()))
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
            _ => unreachable!(),
        }
    }

    pub(crate) async fn sources(&self, declarations: &str) -> Vec<TableSource> {
        let specs = parse_sources(declarations).unwrap();
        validate_sources(&specs, self.db.catalog.as_ref())
            .await
            .unwrap();
        let mut sources = Vec::new();
        for spec in specs {
            let source = TableSource::open(self.db.catalog.clone(), spec)
                .await
                .unwrap();
            source.migrate().await.unwrap();
            sources.push(source);
        }
        sources
    }

    pub(crate) fn archiver(&self, sources: &[TableSource]) -> Archiver {
        let mut config = Config::default();
        config.provider = self.provider;
        config.bucket = COLD.to_owned();
        config.batch_size = 2;
        config.concurrency = 2;
        config.blob_timeout = Duration::from_secs(10);
        let catalog: Arc<dyn Catalog> = self.db.catalog.clone();
        Archiver::new(
            self.cold.clone(),
            self.hot.clone(),
            config,
            Arc::new(CatalogJobMarker(catalog)),
            sources
                .iter()
                .map(|s| Arc::new(s.clone()) as Arc<dyn ArchiveSource>)
                .collect(),
        )
        .with_clock(Arc::new(now))
    }

    pub(crate) async fn cold_bytes(&self, key: &str) -> Option<Bytes> {
        let location = Location::new(COLD, ObjectKey::new(key).unwrap());
        self.cold.get(&location).await.ok()
    }

    pub(crate) async fn hot_exists(&self, bucket: &str, key: &str) -> bool {
        let location = Location::new(bucket, ObjectKey::new(key).unwrap());
        self.hot.get(&location).await.is_ok()
    }
}

async fn documents_move_by_retention_and_condition(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let sources = scene.sources(DECLARATIONS).await;
    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 2, "{report:?}");

    let rows = scene
        .rows(
            "SELECT filename, archive_key, path FROM documents
             WHERE archive_key IS NOT NULL ORDER BY created_at",
        )
        .await;
    let moved: Vec<&str> = rows.iter().map(|r| r.0.as_deref().unwrap()).collect();
    assert_eq!(moved, ["old one.pdf", "Ünïcode 名前 🎉 a+b%.txt"]);
    for (name, key, path) in &rows {
        let name = name.as_deref().unwrap();
        let key = key.as_deref().unwrap();
        assert_eq!(
            path, &None,
            "{name}: the path is cleared once the hot copy is gone"
        );
        assert!(
            key.starts_with("uploads/0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a/") && key.ends_with(name),
            "{key}"
        );
        let body = MORE_DOCUMENTS.iter().find(|d| d.0 == name).unwrap().2;
        assert_eq!(
            scene.cold_bytes(key).await.as_deref(),
            Some(body.as_bytes())
        );
        assert!(!scene.hot_exists("uploads", &format!("org-a/{name}")).await);
    }
    // The condition held keep.pdf; the newest two of the group stay hot.
    assert!(scene.hot_exists("uploads", "org-a/keep.pdf").await);
    assert!(scene.hot_exists("uploads", "org-a/Résumé final.pdf").await);

    // A second sweep finds nothing more to do.
    let again = scene.archiver(&sources).sweep().await;
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(again.archived, 0, "{again:?}");
}

#[tokio::test]
async fn documents_move_by_retention_and_condition_on_postgres() {
    documents_move_by_retention_and_condition(true).await;
}

#[tokio::test]
async fn documents_move_by_retention_and_condition_on_sqlite() {
    documents_move_by_retention_and_condition(false).await;
}

async fn post_images_move_by_quota_through_the_side_table(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = DECLARATIONS.replace("hot_quota = \"1GB\"", "hot_quota = \"1000\"");
    let sources = scene.sources(&declarations).await;
    let posts = sources.iter().find(|s| s.name() == "post-images").unwrap();
    let report = scene.archiver(std::slice::from_ref(posts)).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 1, "{report:?}");

    // The application's column is untouched; the side table says where
    // the image went and that the hot copy is gone.
    let path = "p/1/cafe\u{301}.jpg";
    let posts_rows = scene
        .rows("SELECT image_path, NULL, NULL FROM posts WHERE image_path IS NOT NULL")
        .await;
    assert_eq!(posts_rows[0].0.as_deref(), Some(path));
    let side = scene
        .rows(
            "SELECT CAST(row_key AS TEXT), cold_key, CAST(hot_deleted_at AS TEXT)
             FROM coldsweep_posts",
        )
        .await;
    assert_eq!(side.len(), 1, "{side:?}");
    assert_eq!(
        side[0].0.as_deref(),
        Some("1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c")
    );
    let key = side[0].1.as_deref().unwrap();
    assert_eq!(
        key,
        format!("posts/1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c/{path}")
    );
    assert!(side[0].2.is_some());
    assert_eq!(
        scene.cold_bytes(key).await.as_deref(),
        Some(&vec![7u8; 2048][..])
    );
    assert!(!scene.hot_exists("images", path).await);

    // The row keeps its path, but the side table holds it: never claimed again.
    let again = scene.archiver(std::slice::from_ref(posts)).sweep().await;
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(
        again.archived + again.failed + again.quarantined,
        0,
        "{again:?}"
    );
}

#[tokio::test]
async fn post_images_move_by_quota_through_the_side_table_on_postgres() {
    post_images_move_by_quota_through_the_side_table(true).await;
}

#[tokio::test]
async fn post_images_move_by_quota_through_the_side_table_on_sqlite() {
    post_images_move_by_quota_through_the_side_table(false).await;
}

/// A config file with `[[sources]]`, the way an operator runs it: the
/// binary creates only the side tables, sweeps the declared sources, and
/// refuses a declaration that does not fit the schema, naming the file,
/// the source, the setting and the line.
#[tokio::test]
async fn the_binary_migrates_and_sweeps_declared_sources() {
    use crate::cli::{coldsweep, json_of, run};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("sqlite:{}", db.display());
    {
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        pool.execute(AssertSqlSafe(crate::uploads_schema::SQLITE))
            .await
            .unwrap();
        pool.close().await;
    }
    let hot = dir.path().join("hot");
    std::fs::create_dir_all(hot.join("images/p/1")).unwrap();
    std::fs::write(hot.join("images/p/1/cafe\u{301}.jpg"), vec![7u8; 2048]).unwrap();
    let cold = dir.path().join("cold");
    std::fs::create_dir_all(cold.join(COLD)).unwrap();
    let settings = format!(
        "[settings]\n\
         database_url = \"{url}\"\n\
         archive_provider = \"fs\"\n\
         archive_bucket = \"{COLD}\"\n\
         archive_fs_root = \"{}\"\n\
         hot_store = \"fs\"\n\
         hot_fs_root = \"{}\"\n\n",
        cold.display(),
        hot.display()
    );
    let path = dir.path().join("coldsweep.toml");
    std::fs::write(
        &path,
        settings.clone() + &DECLARATIONS.replace("hot_quota = \"1GB\"", "hot_quota = \"1000\""),
    )
    .unwrap();
    let with_file = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.arg("--config").arg(&path).args(args);
        cmd
    };

    // Before `migrate`, the side tables are missing: a clear refusal.
    let ran = run(&mut with_file(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains(
            "its side table coldsweep_documents does not exist yet; run `coldsweep migrate`"
        ),
        "{}",
        ran.show()
    );

    let ran = run(&mut with_file(&["migrate"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout
            .contains("Source post-images: created side table coldsweep_posts."),
        "{}",
        ran.show()
    );
    // Only the side tables: no crawler schema in the application's database.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        tables,
        [
            "coldsweep_documents",
            "coldsweep_posts",
            "documents",
            "posts"
        ]
    );

    let ran = run(&mut with_file(&["sweep", "--once", "--json"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(json_of(&ran)["archived"], 1, "{}", ran.show());
    assert!(
        cold.join(COLD)
            .join("posts/1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c/p/1/cafe\u{301}.jpg")
            .is_file()
    );
    assert!(!hot.join("images/p/1/cafe\u{301}.jpg").exists());

    // A declaration naming a column the table lacks.
    std::fs::write(
        &path,
        settings + &DECLARATIONS.replace("stored_size = \"size\"", "stored_size = \"bytes\""),
    )
    .unwrap();
    let ran = run(&mut with_file(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains(&format!(
            "{}: 1 problem in the source declarations:\n  - source \"documents\", \
             columns.stored_size (line 21): table documents has no column bytes \
             (expected an integer column)",
            path.display()
        )),
        "{}",
        ran.show()
    );
}
