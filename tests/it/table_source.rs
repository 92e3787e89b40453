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
    pub(crate) provider: Provider,
    /// One clock for every sweep of the scene.
    pub(crate) clock: coldsweep::archiver::Clock,
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

/// A clock from [`now`] on, a second later at each reading: each sweep
/// starts at its own instant, as it does in production.
fn ticking() -> coldsweep::archiver::Clock {
    let ticks = Arc::new(std::sync::atomic::AtomicI64::new(0));
    Arc::new(move || {
        now() + chrono::Duration::seconds(ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    })
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
            clock: ticking(),
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
        .with_clock(self.clock.clone())
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

    // The application replaces an archived file: the row's path is set
    // again, to a new hot file, which moves in its turn.
    let new_body = b"the second version";
    scene
        .put("uploads", "org-a/old one v2.pdf", new_body.to_vec())
        .await;
    scene
        .exec(&format!(
            "UPDATE documents SET path = 'org-a/old one v2.pdf', size = {}, digest = '{}'
             WHERE filename = 'old one.pdf'",
            new_body.len(),
            hex::encode(Sha256::digest(new_body))
        ))
        .await;
    let third = scene.archiver(&sources).sweep().await;
    assert!(third.is_clean(), "{third:?}");
    assert_eq!(third.archived, 1, "{third:?}");
    let row = scene
        .rows("SELECT archive_key, path, NULL FROM documents WHERE filename = 'old one.pdf'")
        .await;
    assert_eq!(row[0].1, None);
    let key = row[0].0.as_deref().unwrap();
    assert_eq!(scene.cold_bytes(key).await.as_deref(), Some(&new_body[..]));
    assert!(!scene.hot_exists("uploads", "org-a/old one v2.pdf").await);
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

/// `coldsweep demo --example uploads`: the README's first worked example on
/// the embedded default, then the same config file driving `sweep`.
#[test]
fn the_uploads_demo_archives_old_documents_and_converges() {
    use crate::cli::{coldsweep, json_of, run};

    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let ran = run(coldsweep()
        .args(["demo", "--example", "uploads", "--dir"])
        .arg(&demo));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("moved 6 blobs") && ran.stdout.contains("1 quarantined"),
        "{}",
        ran.show()
    );
    let files = |root: &std::path::Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    found.push(
                        entry
                            .path()
                            .strip_prefix(root)
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        found.sort();
        found
    };
    let cold = files(&demo.join("cold/cold-archive"));
    assert_eq!(cold.len(), 6, "{cold:?}");
    // Both Unicode forms of "Résumé" and the reserved URL characters survive as names.
    assert!(
        cold.iter().any(|f| f.ends_with("/2/Résumé final.docx")),
        "{cold:?}"
    );
    assert!(
        cold.iter()
            .any(|f| f.ends_with("/3/Re\u{301}sume\u{301} draft.docx")),
        "{cold:?}"
    );
    assert!(
        cold.iter().any(|f| f.ends_with("/4/a+b #1 100%?&.csv")),
        "{cold:?}"
    );
    let hot = files(&demo.join("hot/documents"));
    // Legal hold, the tampered file and the four younger than 90 days stay.
    assert_eq!(hot.len(), 6, "{hot:?}");
    assert!(
        hot.iter().any(|f| f.ends_with("team photo 🎉.jpg")),
        "{hot:?}"
    );
    assert!(
        hot.iter().any(|f| f.ends_with("contract signed.pdf")),
        "{hot:?}"
    );

    // Again: nothing seeded, nothing moved; the config file it wrote drives the CLI.
    let ran = run(coldsweep()
        .args(["demo", "--example", "uploads", "--dir"])
        .arg(&demo));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stdout.contains("nothing seeded"), "{}", ran.show());
    let ran = run(coldsweep()
        .arg("--config")
        .arg(demo.join("coldsweep.toml"))
        .args(["sweep", "--once", "--json"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(json_of(&ran)["archived"], 0, "{}", ran.show());
    assert_eq!(files(&demo.join("cold/cold-archive")).len(), 6);
}

/// The fenced blocks of `lang` in `text`.
fn fenced_blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&open) {
        let body = &rest[at + open.len()..];
        let end = body.find("```").expect("a closed block");
        blocks.push(body[..end].to_owned());
        rest = &body[end..];
    }
    blocks
}

/// The README's worked examples are what a user copies: their tables are
/// created on a real Postgres, their declarations validate against them,
/// their side tables are created, and the view the second example offers
/// the application runs over its side table.
#[tokio::test]
async fn the_readme_examples_declare_sources_that_fit_their_tables() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Your own tables: declaring sources")
        .unwrap();
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").unwrap() + 3];
    let declarations: Vec<String> = fenced_blocks(section, "toml")
        .into_iter()
        .filter(|b| b.contains("[[sources]]"))
        .collect();
    assert_eq!(declarations.len(), 3, "two examples and the reference");
    for declaration in &declarations {
        parse_sources(declaration).unwrap_or_else(|e| panic!("{e}\n{declaration}"));
    }
    let sql = fenced_blocks(section, "sql");
    assert_eq!(sql.len(), 3, "two tables and a view");

    let db = harness::pg::fresh_database().await;
    let mut conn = db.connection().await;
    for ddl in &sql[..2] {
        conn.execute(AssertSqlSafe(ddl.clone())).await.unwrap();
    }
    let catalog: Arc<dyn Catalog> = Arc::new(db.catalog().await);
    let specs: Vec<_> = declarations[..2]
        .iter()
        .flat_map(|d| parse_sources(d).unwrap())
        .collect();
    let (sources, _) = coldsweep::source::open_declared(catalog, specs)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    for source in &sources {
        source.migrate().await.unwrap();
    }
    conn.execute(AssertSqlSafe(sql[2].clone())).await.unwrap();
}

/// File names as applications hold them (spaces, both Unicode forms of an
/// accent, `+ # % ? &`, CJK, emoji) travel percent-encoded in request paths
/// and never in a header, from Supabase Storage through the sweep to S3.
/// Storage itself takes only a few characters besides ASCII letters and
/// digits in a key, so, as Supabase apps do, the hot path is a safe name
/// and the file's own name, in its own column, makes the cold key.
#[tokio::test]
async fn awkward_names_never_reach_a_header_on_the_wire() {
    use coldsweep::store::SupabaseStore;

    let db = pg_uploads().await;
    let supabase = harness::supabase::SupabaseServer::start().await;
    for bucket in ["uploads", "uploads-eu"] {
        supabase.create_bucket(bucket);
    }
    let hot: Arc<dyn Store> = Arc::new(SupabaseStore::new(&supabase.config()).unwrap());
    let s3 = harness::s3::S3Server::start().await;
    s3.create_bucket(COLD);
    let relay = harness::capture::RecordingRelay::start(&s3.endpoint).await;
    let cold_config = coldsweep::config::S3Config {
        endpoint: Some(relay.endpoint.clone()),
        ..s3.config()
    };
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &cold_config).unwrap());

    let names = [
        "Re\u{301}sume\u{301} 2023.pdf",
        "Résumé 2022.pdf",
        "a+b #1 100%?&=x.txt",
        "報告 🎉 final.docx",
    ];
    let pool = db.pg_pool.clone().unwrap();
    let hot_path = |n: usize| format!("org-c/{n} a+b &$@=;:,?(x)!'*.bin");
    for (n, name) in names.iter().enumerate() {
        let body = format!("bytes of {name}");
        sqlx::query(
            "INSERT INTO documents (org_id, filename, bucket, path, created_at, size)
             VALUES ('0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c', $1, 'uploads', $2, $3, $4)",
        )
        .bind(*name)
        .bind(hot_path(n))
        .bind(
            Utc.with_ymd_and_hms(2022, 1, 1 + n as u32, 0, 0, 0)
                .unwrap(),
        )
        .bind(body.len() as i64)
        .execute(&pool)
        .await
        .unwrap();
        let location = Location::new("uploads", ObjectKey::new(hot_path(n)).unwrap());
        hot.put(&location, Bytes::from(body), &PutOptions::default())
            .await
            .unwrap();
    }
    // The fixture's other rows have no hot copy here: only org c's move.
    let specs = parse_sources(&DECLARATIONS.replace(
        "condition = \"filename <> 'keep.pdf'\"",
        "condition = \"org_id = '0c0c0c0c-0c0c-4c0c-8c0c-0c0c0c0c0c0c'\"",
    ))
    .unwrap();
    let documents = specs
        .into_iter()
        .find(|s| s.name.value == "documents")
        .unwrap();
    let (sources, _) = coldsweep::source::open_declared(db.catalog.clone(), vec![documents])
        .await
        .unwrap();
    sources[0].migrate().await.unwrap();
    let mut config = Config::default();
    config.provider = Provider::Minio;
    config.bucket = COLD.to_owned();
    let report = Archiver::declared(config, sources, hot.clone(), cold.clone())
        .with_clock(Arc::new(now))
        .sweep()
        .await;
    assert!(report.is_clean(), "{report:?}");
    // keep_newest = 2 per (org, bucket): the two oldest move.
    assert_eq!(report.archived, 2, "{report:?}");

    let visible = |v: &str| v.bytes().all(|b| (0x20..0x7f).contains(&b));
    for r in supabase.requests() {
        assert!(r.path.is_ascii(), "{r:?}");
        for (name, value) in &r.headers {
            assert!(
                visible(value.to_str().unwrap_or("\u{0}")),
                "{name}: {value:?} in {r:?}"
            );
        }
    }
    let puts: Vec<String> = relay
        .requests()
        .iter()
        .inspect(|r| {
            assert!(r.target.is_ascii(), "{r:?}");
            for (name, value) in &r.headers {
                assert!(visible(value), "{name}: {value:?} in {r:?}");
            }
        })
        .filter(|r| r.method == "PUT")
        .map(|r| {
            percent_encoding::percent_decode_str(r.path())
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    for (n, name) in names.iter().enumerate() {
        let moved = n < 2;
        assert_eq!(
            puts.iter().any(|p| p.ends_with(&format!("/{name}"))),
            moved,
            "{name:?} uploaded under its own name: {puts:?}"
        );
        assert_eq!(supabase.object("uploads", &hot_path(n)).is_none(), moved);
    }
    let keys = scene_keys(&pool).await;
    for key in keys {
        let location = Location::new(COLD, ObjectKey::new(&key).unwrap());
        let bytes = cold.get(&location).await.unwrap();
        assert!(
            String::from_utf8_lossy(&bytes).starts_with("bytes of "),
            "{key}"
        );
    }
}

/// The cold keys recorded on `documents`.
async fn scene_keys(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT archive_key FROM documents WHERE archive_key IS NOT NULL")
        .fetch_all(pool)
        .await
        .unwrap()
}
