//! `restore` and `reset` of declared sources over the uploads schema, on
//! Postgres with S3-protocol stores and on SQLite with folders: a
//! bigint-keyed document (cold columns on the table, path cleared) and a
//! uuid-keyed post image (side table only, path kept) come back to their
//! hot paths with the same bytes, the rows point at them again, and the
//! next sweeps move them only by their rules.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Duration;
use coldsweep::catalog::ResetState;
use coldsweep::progress::Progress;
use coldsweep::restore::{FailureKind, TableRestoreOptions, TableRestoreRequest, TableRestorer};
use coldsweep::source::{TableResetFilter, TableSource};
use coldsweep::store::PutOptions;
use coldsweep::{ArchiveSource, Location, ObjectKey};

use crate::table_source::{COLD, MORE_DOCUMENTS, Scene, now};
use crate::uploads_schema::DECLARATIONS;

const UNICODE: &str = "Ünïcode 名前 🎉 a+b%.txt";
const POST: &str = "1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c";
const POST_PATH: &str = "p/1/cafe\u{301}.jpg";

fn body(name: &str) -> &'static str {
    MORE_DOCUMENTS.iter().find(|d| d.0 == name).unwrap().2
}

/// The declarations with the post images over a 1000-byte quota (their
/// one image, 2048 bytes, moves).
fn over_quota() -> String {
    DECLARATIONS.replace("hot_quota = \"1GB\"", "hot_quota = \"1000\"")
}

fn source<'a>(sources: &'a [TableSource], name: &str) -> &'a TableSource {
    sources.iter().find(|s| s.name() == name).unwrap()
}

fn restorer(scene: &Scene, source: &TableSource, delete_cold: bool) -> TableRestorer {
    TableRestorer::new(
        source.clone(),
        scene.cold.clone(),
        scene.hot.clone(),
        TableRestoreOptions {
            delete_cold,
            ..TableRestoreOptions::default()
        },
    )
    .with_clock(Arc::new(now))
}

async fn document_id(scene: &Scene, name: &str) -> String {
    let rows = scene
        .rows(&format!(
            "SELECT CAST(id AS TEXT), NULL, NULL FROM documents WHERE filename = '{name}'"
        ))
        .await;
    rows[0].0.clone().unwrap()
}

/// The document's path and cold key on the table.
async fn document(scene: &Scene, id: &str) -> (Option<String>, Option<String>) {
    let rows = scene
        .rows(&format!(
            "SELECT path, archive_key, NULL FROM documents WHERE id = {id}"
        ))
        .await;
    (rows[0].0.clone(), rows[0].1.clone())
}

/// The side row's cold key, hot-deleted time and restored time.
async fn side(scene: &Scene, table: &str, key: &str) -> (Option<String>, bool, bool) {
    let rows = scene
        .rows(&format!(
            "SELECT cold_key, CAST(hot_deleted_at AS TEXT), CAST(restored_at AS TEXT)
             FROM {table} WHERE CAST(row_key AS TEXT) = '{key}'"
        ))
        .await;
    (rows[0].0.clone(), rows[0].1.is_some(), rows[0].2.is_some())
}

async fn hot_bytes(scene: &Scene, bucket: &str, path: &str) -> Option<Bytes> {
    let location = Location::new(bucket, ObjectKey::new(path).unwrap());
    scene.hot.get(&location).await.ok()
}

async fn rows_come_back_and_age_from_their_restore(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let sources = scene.sources(&over_quota()).await;
    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 3, "{report:?}");

    // A bigint-keyed document: cold columns on the table, path cleared.
    let documents = source(&sources, "documents");
    let id = document_id(&scene, UNICODE).await;
    let (path, cold_key) = document(&scene, &id).await;
    assert_eq!(path, None);
    let cold_key = cold_key.unwrap();
    let request = TableRestoreRequest {
        keys: vec![id.clone()],
        parents: Vec::new(),
    };
    let docs = restorer(&scene, documents, false);
    let plan = docs.plan(&request).await.unwrap();
    assert_eq!(plan.rows.len(), 1, "{plan:?}");
    let hot_path = format!("org-a/{UNICODE}");
    assert_eq!(plan.rows[0].hot.key.as_str(), hot_path);
    // The dry run changed nothing.
    assert_eq!(document(&scene, &id).await.0, None);
    assert!(!scene.hot_exists("uploads", &hot_path).await);

    let done = docs.run(&request, &Progress::new()).await.unwrap();
    assert!(done.is_clean(), "{done:?}");
    assert_eq!(done.restored.len(), 1, "{done:?}");
    assert_eq!(
        hot_bytes(&scene, "uploads", &hot_path).await.as_deref(),
        Some(body(UNICODE).as_bytes())
    );
    assert_eq!(document(&scene, &id).await, (Some(hot_path.clone()), None));
    assert_eq!(
        side(&scene, "coldsweep_documents", &id).await,
        (None, false, true)
    );
    // The cold copy is kept without --delete-cold.
    assert!(scene.cold_bytes(&cold_key).await.is_some());

    // A uuid-keyed post image: the side table only, the path kept.
    let posts = source(&sources, "post-images");
    let request = TableRestoreRequest {
        keys: vec![POST.to_owned()],
        parents: Vec::new(),
    };
    let done = restorer(&scene, posts, false)
        .run(&request, &Progress::new())
        .await
        .unwrap();
    assert!(done.is_clean(), "{done:?}");
    assert_eq!(done.restored.len(), 1, "{done:?}");
    assert_eq!(
        hot_bytes(&scene, "images", POST_PATH).await.as_deref(),
        Some(&vec![7u8; 2048][..])
    );
    assert_eq!(
        side(&scene, "coldsweep_posts", POST).await,
        (None, false, true)
    );

    // Restoring again: both are hot, nothing to do.
    let again = restorer(&scene, posts, false).plan(&request).await.unwrap();
    assert!(again.rows.is_empty(), "{again:?}");
    assert_eq!(again.skipped[0].reason.as_str(), "still_hot");

    // The document is younger than its rule's 90 days since its restore;
    // under a 1 GB quota the post image stays too.
    let roomy = scene.sources(DECLARATIONS).await;
    let next = scene.archiver(&roomy).sweep().await;
    assert!(next.is_clean(), "{next:?}");
    assert_eq!(next.archived, 0, "{next:?}");
    assert!(scene.hot_exists("uploads", &hot_path).await);
    assert!(scene.hot_exists("images", POST_PATH).await);
    // 91 days after its restore, the document moves again by its rule.
    let later = scene
        .archiver(std::slice::from_ref(source(&roomy, "documents")))
        .with_clock(Arc::new(|| now() + Duration::days(91)))
        .sweep()
        .await;
    assert!(later.is_clean(), "{later:?}");
    assert_eq!(later.archived, 1, "{later:?}");
    assert_eq!(document(&scene, &id).await.0, None);
    // Over its quota, the post image moves again at once. (Fresh sources:
    // a source remembers the sweep at its start time, and this clock stands still.)
    let fresh = scene.sources(&over_quota()).await;
    let quota = scene
        .archiver(std::slice::from_ref(source(&fresh, "post-images")))
        .sweep()
        .await;
    assert_eq!(quota.archived, 1, "{quota:?}");
    assert!(!scene.hot_exists("images", POST_PATH).await);
}

#[tokio::test]
async fn rows_come_back_and_age_from_their_restore_on_postgres() {
    rows_come_back_and_age_from_their_restore(true).await;
}

#[tokio::test]
async fn rows_come_back_and_age_from_their_restore_on_sqlite() {
    rows_come_back_and_age_from_their_restore(false).await;
}

async fn cold_copies_are_deleted_after_the_switch_and_checked_first(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let sources = scene.sources(DECLARATIONS).await;
    let report = scene.archiver(&sources).sweep().await;
    assert_eq!(report.archived, 2, "{report:?}");
    let documents = source(&sources, "documents");

    // --delete-cold: the row switched, then the cold copy deleted.
    let old = document_id(&scene, "old one.pdf").await;
    let old_key = document(&scene, &old).await.1.unwrap();
    let done = restorer(&scene, documents, true)
        .run(
            &TableRestoreRequest {
                keys: vec![old.clone()],
                parents: Vec::new(),
            },
            &Progress::new(),
        )
        .await
        .unwrap();
    assert!(done.is_clean(), "{done:?}");
    assert_eq!(done.cold_deleted, 1, "{done:?}");
    assert!(scene.cold_bytes(&old_key).await.is_none());
    assert_eq!(
        document(&scene, &old).await,
        (Some("org-a/old one.pdf".to_owned()), None)
    );
    assert_eq!(
        hot_bytes(&scene, "uploads", "org-a/old one.pdf")
            .await
            .as_deref(),
        Some(body("old one.pdf").as_bytes())
    );

    // A cold copy of the right size that disagrees with the table's digest.
    let id = document_id(&scene, UNICODE).await;
    let key = document(&scene, &id).await.1.unwrap();
    let mut wrong = body(UNICODE).as_bytes().to_vec();
    wrong[0] ^= 1;
    scene
        .cold
        .put(
            &Location::new(COLD, ObjectKey::new(key.as_str()).unwrap()),
            Bytes::from(wrong),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let done = restorer(&scene, documents, true)
        .run(
            &TableRestoreRequest {
                keys: vec![id.clone()],
                parents: Vec::new(),
            },
            &Progress::new(),
        )
        .await
        .unwrap();
    assert!(!done.is_clean(), "{done:?}");
    assert_eq!(done.failed.len(), 1, "{done:?}");
    assert_eq!(done.failed[0].kind, FailureKind::Corrupt, "{done:?}");
    assert_eq!(done.cold_deleted, 0, "{done:?}");
    // Still archived, nothing written hot, the cold copy kept.
    assert_eq!(document(&scene, &id).await, (None, Some(key.clone())));
    assert!(
        !scene
            .hot_exists("uploads", &format!("org-a/{UNICODE}"))
            .await
    );
    assert!(scene.cold_bytes(&key).await.is_some());
    let (cold_key, hot_deleted, _) = side(&scene, "coldsweep_documents", &id).await;
    assert_eq!((cold_key, hot_deleted), (Some(key), true));
}

#[tokio::test]
async fn cold_copies_are_deleted_after_the_switch_and_checked_first_on_postgres() {
    cold_copies_are_deleted_after_the_switch_and_checked_first(true).await;
}

#[tokio::test]
async fn cold_copies_are_deleted_after_the_switch_and_checked_first_on_sqlite() {
    cold_copies_are_deleted_after_the_switch_and_checked_first(false).await;
}

async fn a_reset_puts_a_quarantined_row_back_into_play(postgres: bool) {
    let scene = Scene::new(postgres).await;
    // The hot copy disagrees with the table's digest: quarantined.
    let good = body("old one.pdf").as_bytes().to_vec();
    let mut bad = good.clone();
    bad[0] ^= 1;
    scene.put("uploads", "org-a/old one.pdf", bad).await;
    let sources = scene.sources(DECLARATIONS).await;
    let documents = source(&sources, "documents");
    let report = scene.archiver(&sources).sweep().await;
    assert_eq!(report.quarantined, 1, "{report:?}");
    let id = document_id(&scene, "old one.pdf").await;

    let filter = TableResetFilter {
        states: vec![ResetState::Quarantined],
        keys: vec![id.clone()],
        parents: Vec::new(),
    };
    // The dry run lists it and changes nothing.
    let (count, rows) = documents.reset_preview(&filter, now(), 20).await.unwrap();
    assert_eq!(count, 1);
    assert_eq!(rows[0].key, id);
    assert_eq!(rows[0].state, "quarantined");
    let again = scene
        .archiver(&scene.sources(DECLARATIONS).await)
        .sweep()
        .await;
    assert_eq!(again.archived + again.quarantined, 0, "{again:?}");

    // The cause fixed and the row reset, the next sweep moves it.
    scene
        .put("uploads", "org-a/old one.pdf", good.clone())
        .await;
    assert_eq!(documents.reset(&filter, now()).await.unwrap(), 1);
    let rows = scene
        .rows(&format!(
            "SELECT state, error, CAST(attempts AS TEXT) FROM coldsweep_documents
             WHERE CAST(row_key AS TEXT) = '{id}'"
        ))
        .await;
    assert_eq!(rows[0], (None, None, Some("0".to_owned())));
    // Fresh sources: a source remembers the sweep at its start time.
    let moved = scene
        .archiver(&scene.sources(DECLARATIONS).await)
        .sweep()
        .await;
    assert!(moved.is_clean(), "{moved:?}");
    assert_eq!(moved.archived, 1, "{moved:?}");
    let key = document(&scene, &id).await.1.unwrap();
    assert_eq!(scene.cold_bytes(&key).await.as_deref(), Some(&good[..]));

    // A key not of the key's type is refused before any statement.
    let wrong = TableResetFilter {
        keys: vec!["not-a-number".to_owned()],
        ..TableResetFilter::default()
    };
    let err = documents.reset(&wrong, now()).await.unwrap_err();
    assert_eq!(err.kind(), coldsweep::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn a_reset_puts_a_quarantined_row_back_into_play_on_postgres() {
    a_reset_puts_a_quarantined_row_back_into_play(true).await;
}

#[tokio::test]
async fn a_reset_puts_a_quarantined_row_back_into_play_on_sqlite() {
    a_reset_puts_a_quarantined_row_back_into_play(false).await;
}

/// The binary with a config file declaring the sources: `restore` and
/// `reset` take `--source` and `--key`, a corrupt cold copy is refused with
/// exit code 1, and a key of the wrong type is a bad argument.
#[tokio::test]
async fn the_binary_restores_and_resets_declared_sources() {
    use crate::cli::{coldsweep, json_of, run};
    use sqlx::{AssertSqlSafe, Executor};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("sqlite:{}", db.display());
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    pool.execute(AssertSqlSafe(crate::uploads_schema::SQLITE))
        .await
        .unwrap();
    let hot = dir.path().join("hot");
    let image = hot.join("images").join(POST_PATH);
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, vec![7u8; 2048]).unwrap();
    let cold = dir.path().join("cold");
    std::fs::create_dir_all(cold.join(COLD)).unwrap();
    let path = dir.path().join("coldsweep.toml");
    std::fs::write(
        &path,
        format!(
            "[settings]\n\
             database_url = \"{url}\"\n\
             archive_provider = \"fs\"\n\
             archive_bucket = \"{COLD}\"\n\
             archive_fs_root = \"{}\"\n\
             hot_store = \"fs\"\n\
             hot_fs_root = \"{}\"\n\n{}",
            cold.display(),
            hot.display(),
            over_quota()
        ),
    )
    .unwrap();
    let with_file = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.arg("--config").arg(&path).args(args);
        cmd
    };
    for args in [&["migrate"][..], &["sweep", "--once"]] {
        let ran = run(&mut with_file(args));
        assert_eq!(ran.code, Some(0), "{}", ran.show());
    }
    assert!(!image.exists());
    let cold_copy = cold.join(COLD).join(format!("posts/{POST}/{POST_PATH}"));
    assert!(cold_copy.is_file());

    // A dry run lists the row and where it goes; nothing changes.
    let ran = run(&mut with_file(&[
        "restore",
        "--source",
        "post-images",
        "--key",
        POST,
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout
            .contains("Would restore 1 row of source post-images"),
        "{}",
        ran.show()
    );
    assert!(!image.exists());
    // Two sources: which one? A key not an integer: a bad argument.
    let ran = run(&mut with_file(&["restore", "--key", POST]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("--source"), "{}", ran.show());
    let ran = run(&mut with_file(&[
        "restore",
        "--source",
        "documents",
        "--key",
        "abc",
    ]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("expected an integer"), "{}", ran.show());

    let ran = run(&mut with_file(&[
        "restore",
        "--source",
        "post-images",
        "--key",
        POST,
        "--yes",
        "--json",
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let json = json_of(&ran);
    assert_eq!(json["restored"][0]["key"], POST, "{}", ran.show());
    assert_eq!(json["restored"][0]["hot_key"], POST_PATH, "{}", ran.show());
    assert_eq!(std::fs::read(&image).unwrap(), vec![7u8; 2048]);

    // Over its quota the image moves again; a cold copy short of the
    // table's size is refused, and the row stays archived.
    let ran = run(&mut with_file(&["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(!image.exists());
    std::fs::write(&cold_copy, vec![7u8; 2047]).unwrap();
    let ran = run(&mut with_file(&[
        "restore",
        "--source",
        "post-images",
        "--key",
        POST,
        "--yes",
    ]));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stdout.contains("corrupt"), "{}", ran.show());
    assert!(!image.exists());

    // Reset by key: a dry run, then the change.
    pool.execute("UPDATE coldsweep_posts SET state = 'quarantined', error = 'checked by hand'")
        .await
        .unwrap();
    let state = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT state FROM coldsweep_posts")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let ran = run(&mut with_file(&[
        "reset",
        "--source",
        "post-images",
        "--key",
        POST,
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains(&format!("quarantined row {POST}")),
        "{}",
        ran.show()
    );
    assert_eq!(state().await.as_deref(), Some("quarantined"));
    let ran = run(&mut with_file(&["reset", "--task", "t-1", "--yes"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    let ran = run(&mut with_file(&[
        "reset",
        "--source",
        "post-images",
        "--key",
        POST,
        "--yes",
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(ran.stdout.contains("Reset 1 row"), "{}", ran.show());
    assert_eq!(state().await, None);
}

/// Documents with their organisation as the parent marker: once every
/// document of an organisation has moved, it is marked; restoring one of
/// them gives it back the status it had.
async fn a_restore_gives_a_marked_parent_its_status_back(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let key_type = if postgres { "uuid" } else { "TEXT" };
    scene
        .exec(&format!(
            "CREATE TABLE orgs (id {key_type} PRIMARY KEY, status text NOT NULL, status_before text)"
        ))
        .await;
    scene
        .exec(
            "INSERT INTO orgs (id, status) VALUES
                 ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'done'),
                 ('0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b', 'done')",
        )
        .await;
    // The documents alone, every old one moving, with the parent marker.
    let rule_start = DECLARATIONS.find("[sources.rule]\nmin_age").unwrap();
    let declarations = format!(
        "{}[sources.rule]\nmin_age = \"90d\"\nage_column = \"created_at\"\n\n\
         [sources.parent]\ntable = \"orgs\"\nkey = \"id\"\nforeign_key = \"org_id\"\n\
         status_column = \"status\"\nfinished = [\"done\"]\nset = \"archived\"\n\
         previous_status_column = \"status_before\"\n",
        &DECLARATIONS[..rule_start]
    );
    let sources = scene.sources(&declarations).await;
    let documents = source(&sources, "documents");
    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(documents.mark_parents().await.unwrap(), 2);
    let org_b = "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b";
    let status = |org: &'static str| {
        let scene = &scene;
        async move {
            scene
                .rows(&format!(
                    "SELECT status, status_before, NULL FROM orgs WHERE CAST(id AS TEXT) = '{org}'"
                ))
                .await[0]
                .clone()
        }
    };
    assert_eq!(
        status(org_b).await,
        (Some("archived".into()), Some("done".into()), None)
    );

    // Its one document, selected by parent.
    let done = restorer(&scene, documents, false)
        .run(
            &TableRestoreRequest {
                keys: Vec::new(),
                parents: vec![org_b.to_owned()],
            },
            &Progress::new(),
        )
        .await
        .unwrap();
    assert!(done.is_clean(), "{done:?}");
    assert_eq!(done.restored.len(), 1, "{done:?}");
    assert_eq!(done.jobs_reopened, [org_b], "{done:?}");
    assert_eq!(status(org_b).await.0.as_deref(), Some("done"));
    assert!(scene.hot_exists("uploads-eu", "org-b/報告 🎉.docx").await);
    // The other organisation is still archived.
    assert_eq!(
        status("0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a")
            .await
            .0
            .as_deref(),
        Some("archived")
    );
}

#[tokio::test]
async fn a_restore_gives_a_marked_parent_its_status_back_on_postgres() {
    a_restore_gives_a_marked_parent_its_status_back(true).await;
}

#[tokio::test]
async fn a_restore_gives_a_marked_parent_its_status_back_on_sqlite() {
    a_restore_gives_a_marked_parent_its_status_back(false).await;
}
