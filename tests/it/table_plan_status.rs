//! `coldsweep plan`, `status` and `check` over declared sources (the
//! uploads schema), on Postgres and SQLite: the plan names exactly what the
//! next sweep moves, status counts and lists what a sweep left, check
//! validates each declaration and its side table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{Ran, coldsweep, json_of, run};
use crate::table_source::{COLD, Scene, now};
use crate::uploads_schema::DECLARATIONS;

/// Both sources; post-images over a quota its one image exceeds.
fn declarations() -> String {
    DECLARATIONS.replace("hot_quota = \"1GB\"", "hot_quota = \"1000\"")
}

/// A config file naming the scene's catalog and declaring `declarations`.
fn config_file(dir: &Path, url: &str, declarations: &str) -> PathBuf {
    let path = dir.join("coldsweep.toml");
    std::fs::write(
        &path,
        format!("[settings]\ndatabase_url = \"{url}\"\n\n{declarations}"),
    )
    .unwrap();
    path
}

fn coldsweep_with(path: &Path, args: &[&str]) -> Ran {
    run(coldsweep().arg("--config").arg(path).args(args))
}

/// The source called `name` in a `sources` array.
fn source<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {json}"))
}

fn moving_keys(plan: &Value, name: &str) -> BTreeSet<String> {
    source(plan, name)["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["decision"] == "moves")
        .map(|u| u["key"].as_str().unwrap().to_owned())
        .collect()
}

async fn keys(scene: &Scene, sql: &str) -> BTreeSet<String> {
    scene
        .rows(sql)
        .await
        .into_iter()
        .map(|r| r.0.unwrap())
        .collect()
}

async fn plan_names_what_the_sweep_moves(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = declarations();
    let sources = scene.sources(&declarations).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &scene.db.url, &declarations);

    let ran = coldsweep_with(&path, &["plan", "--json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let plan = json_of(&ran);
    let documents = source(&plan, "documents");
    assert_eq!(documents["scope"], "row");
    assert_eq!(documents["rules"]["keep_newest"], 2);
    assert_eq!(
        documents["units_moving"],
        serde_json::json!({"retention": 2})
    );
    // keep.pdf is excluded by the condition; the newest two of org a's
    // uploads and org b's one document stay.
    assert_eq!(
        documents["units_staying"],
        serde_json::json!({"among_newest": 3, "excluded_by_condition": 1})
    );
    let posts = source(&plan, "post-images");
    assert_eq!(posts["units_moving"], serde_json::json!({"quota": 1}));
    assert_eq!(posts["hot_bytes_before"], 2048);
    assert_eq!(posts["hot_bytes_after"], 0);
    assert_eq!(posts["quota"]["met"], true);

    // The library's decisions, as a sweep takes them, agree.
    for source in &sources {
        let decisions = source.decisions(now()).await.unwrap();
        let ids: BTreeSet<String> = decisions.moving_ids().into_iter().collect();
        assert_eq!(ids, moving_keys(&plan, &source.spec().name.value));
    }

    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    let planned_blobs: u64 = plan["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["moving"]["blobs"].as_u64().unwrap())
        .sum();
    assert_eq!(report.archived, planned_blobs, "{report:?}");
    let moved_documents = keys(
        &scene,
        "SELECT CAST(id AS TEXT), NULL, NULL FROM documents WHERE archive_key IS NOT NULL",
    )
    .await;
    assert_eq!(moved_documents.len(), 2);
    assert_eq!(moved_documents, moving_keys(&plan, "documents"));
    let moved_posts = keys(
        &scene,
        "SELECT CAST(row_key AS TEXT), NULL, NULL FROM coldsweep_posts
         WHERE hot_deleted_at IS NOT NULL",
    )
    .await;
    assert_eq!(moved_posts, moving_keys(&plan, "post-images"));

    // Nothing is left to move; the text says why each row stays.
    let ran = coldsweep_with(&path, &["plan", "--json"]);
    let after = json_of(&ran);
    for name in ["documents", "post-images"] {
        assert_eq!(source(&after, name)["moving"]["blobs"], 0, "{}", ran.show());
    }
    let ran = coldsweep_with(&path, &["plan", "--source", "documents"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("Source documents: table documents"),
        "{}",
        ran.show()
    );
    assert!(!ran.stdout.contains("post-images"), "{}", ran.show());
    assert!(
        ran.stdout.contains("kept hot: excluded by the condition"),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout.contains("The next sweep would move nothing."),
        "{}",
        ran.show()
    );
}

#[tokio::test]
async fn plan_names_what_the_sweep_moves_on_postgres() {
    plan_names_what_the_sweep_moves(true).await;
}

#[tokio::test]
async fn plan_names_what_the_sweep_moves_on_sqlite() {
    plan_names_what_the_sweep_moves(false).await;
}

/// A sweep that archives one document, quarantines one (its digest is
/// wrong) and fails one (its cold key's last segment is longer than any
/// file name the cold store can write), and moves the post image.
async fn status_counts_and_lists_rows(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = declarations().replace("keep_newest = 2", "keep_newest = 1");
    let sources = scene.sources(&declarations).await;
    scene
        .exec(&format!(
            "UPDATE documents SET digest = '{}' WHERE filename = 'old one.pdf'",
            "0".repeat(64)
        ))
        .await;
    scene
        .exec(&format!(
            "UPDATE documents SET filename = '{}' WHERE filename LIKE 'Ünïcode%'",
            "x".repeat(300)
        ))
        .await;
    let id = |filename: &str| {
        format!("SELECT CAST(id AS TEXT), NULL, NULL FROM documents WHERE {filename}")
    };
    let first = |keys: BTreeSet<String>| keys.into_iter().next().unwrap();
    let quarantined = first(keys(&scene, &id("filename = 'old one.pdf'")).await);
    let failing = first(keys(&scene, &id("length(filename) = 300")).await);

    let report = scene.archiver(&sources).sweep().await;
    assert_eq!(
        (report.archived, report.quarantined, report.failed),
        (2, 1, 1),
        "{report:?}"
    );

    // At the sweep's clock the failing row waits for its retry.
    let documents = sources
        .iter()
        .find(|s| s.spec().name.value == "documents")
        .unwrap();
    let status = documents.status(now()).await.unwrap();
    assert_eq!(status.waiting, 1, "{status:?}");
    assert_eq!(status.failing_rows[0].key, failing);
    assert!(status.failing_rows[0].retry_at > Some(now()), "{status:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &scene.db.url, &declarations);
    let ran = coldsweep_with(&path, &["status", "--json"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let json = json_of(&ran);
    let documents = source(&json, "documents");
    let counts = &documents["counts"];
    assert_eq!(counts["archived"], 1, "{}", ran.show());
    assert_eq!(counts["quarantined"], 1, "{}", ran.show());
    assert_eq!(counts["failing"], 1, "{}", ran.show());
    assert_eq!(counts["lost"], 0, "{}", ran.show());
    assert_eq!(counts["missing"], 0, "{}", ran.show());
    assert_eq!(counts["claimed"], 0, "{}", ran.show());
    // Hot: a+b, keep.pdf, the quarantined and the failing rows, org b's.
    assert_eq!(counts["hot"], 5, "{}", ran.show());
    let listed = &documents["quarantined"][0];
    assert_eq!(listed["key"], quarantined.as_str());
    assert!(
        listed["reason"].as_str().unwrap().contains("digest"),
        "{}",
        ran.show()
    );
    let listed = &documents["failing"][0];
    assert_eq!(listed["key"], failing.as_str());
    assert_eq!(listed["attempts"], 1);
    assert!(listed["reason"].as_str().is_some(), "{}", ran.show());
    let hot: Vec<(&str, u64)> = documents["hot_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["bucket"].as_str().unwrap(), b["blobs"].as_u64().unwrap()))
        .collect();
    assert_eq!(hot, [("uploads", 4), ("uploads-eu", 1)], "{}", ran.show());
    let cold = &documents["cold_buckets"][0];
    assert_eq!(cold["provider"], scene.provider.as_str());
    assert_eq!(cold["bucket"], COLD);
    assert_eq!(cold["blobs"], 1);

    let posts = source(&json, "post-images");
    assert_eq!(posts["counts"]["hot"], 0, "{}", ran.show());
    assert_eq!(posts["counts"]["archived"], 1, "{}", ran.show());
    assert_eq!(posts["hot_buckets"], serde_json::json!([]));
    assert_eq!(posts["cold_bytes"], 2048);

    let ran = coldsweep_with(&path, &["status"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains(&format!("row {quarantined}")),
        "{}",
        ran.show()
    );
    assert!(ran.stdout.contains("Source post-images"), "{}", ran.show());

    // An unknown source: exit 2, naming the declared ones.
    for command in ["status", "plan"] {
        let ran = coldsweep_with(&path, &[command, "--source", "nope"]);
        assert_eq!(ran.code, Some(2), "{}", ran.show());
        assert!(
            ran.stderr.contains("\"nope\"") && ran.stderr.contains("documents, post-images"),
            "{}",
            ran.show()
        );
    }
}

#[tokio::test]
async fn status_counts_and_lists_rows_on_postgres() {
    status_counts_and_lists_rows(true).await;
}

#[tokio::test]
async fn status_counts_and_lists_rows_on_sqlite() {
    status_counts_and_lists_rows(false).await;
}

/// `check` with `[[sources]]`: each declaration against the schema, each
/// side table (missing until `migrate`), each source's hot bucket looked
/// up in the hot store.
#[tokio::test]
async fn check_validates_declarations_and_side_tables() {
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
    pool.close().await;
    let hot = dir.path().join("hot");
    for (bucket, path) in [
        ("uploads", "org-a/Résumé final.pdf"),
        ("uploads", "org-a/a+b #1 100%?&.txt"),
        ("uploads-eu", "org-b/報告 🎉.docx"),
        ("images", "p/1/cafe\u{301}.jpg"),
    ] {
        let file = hot.join(bucket).join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"bytes").unwrap();
    }
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
    std::fs::write(&path, settings.clone() + DECLARATIONS).unwrap();

    let ran = coldsweep_with(&path, &["check"]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stdout
            .contains("✓ source documents: declaration fits the schema"),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout.contains(
            "✗ source post-images: side table in place: coldsweep_posts does not exist: run \
             `coldsweep migrate`"
        ),
        "{}",
        ran.show()
    );
    // The crawler's schema is not asked for.
    assert!(!ran.stdout.contains("migrations applied"), "{}", ran.show());

    let ran = coldsweep_with(&path, &["migrate"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let ran = coldsweep_with(&path, &["check"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains(
            "✓ source documents: rows readable: hot blobs in 2 buckets uploads, uploads-eu"
        ),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout
            .contains("✓ source post-images: rows readable: hot blobs in 1 bucket images"),
        "{}",
        ran.show()
    );
    assert!(ran.stdout.contains("images: "), "{}", ran.show());

    // A declaration that no longer fits the schema: its problem listed,
    // its rows not read; the other source still checked.
    std::fs::write(
        &path,
        settings + &DECLARATIONS.replace("stored_size = \"size\"", "stored_size = \"bytes\""),
    )
    .unwrap();
    let ran = coldsweep_with(&path, &["check"]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stdout.contains(
            "✗ source documents: declaration fits the schema: 1 problem\n      \
             - source \"documents\", columns.stored_size (line 21): table documents has no \
             column bytes (expected an integer column)\n"
        ),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout
            .contains("- source documents: rows readable: not tried"),
        "{}",
        ran.show()
    );
    assert!(
        ran.stdout.contains("✓ source post-images: rows readable"),
        "{}",
        ran.show()
    );
}

/// An incomplete declaration: `plan` exits 2 with every problem, one a line.
#[tokio::test]
async fn an_incomplete_declaration_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("app.db").display());
    let path = config_file(
        dir.path(),
        &url,
        "[[sources]]\n\
         name = \"broken\"\n\
         table = \"documents\"\n\
         key = \"id\"\n\
         cold_key = \"uploads/{id}/../{filename}\"\n\
         side_table = \"coldsweep_broken\"\n\
         \n\
         [sources.hot]\n\
         path_column = \"path\"\n\
         \n\
         [sources.rule]\n\
         age_column = \"created_at\"\n",
    );
    let ran = coldsweep_with(&path, &["plan"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    let expected = format!(
        "{}: 3 problems in the source declarations:\n  \
         - source \"broken\", hot.bucket_column (line 11): expected hot.bucket_column (the \
         column holding each row's bucket) or hot.bucket (one bucket for every row), got \
         neither\n  \
         - source \"broken\", cold_key (line 8): cold key template \
         \"uploads/{{id}}/../{{filename}}\" rejected: object key \"uploads/x/../x\" rejected: \
         '.' or '..' segment\n  \
         - source \"broken\", rule (line 14): expected at least one of rule.min_age, \
         rule.keep_newest, rule.hot_quota (without one, every row would move at once)\n",
        path.display()
    );
    assert!(ran.stderr.contains(&expected), "{}", ran.show());
    assert!(ran.stdout.is_empty(), "{}", ran.show());
}
