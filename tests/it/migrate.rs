//! `migrate` on a live Postgres application database: it keeps coldsweep's
//! bookkeeping out of the API roles' reach, never stalls the application
//! behind a lock it queues for, repairs what an interrupted index build left,
//! and does not print Postgres's notices.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coldsweep::{Catalog, ErrorKind};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::cli::{coldsweep, run};
use crate::harness::pg::{PgTestDb, fresh_database};

/// The application's tables as the seed had them: no coldsweep columns yet.
const APP_SCHEMA: &str = r#"
    CREATE TABLE jobs (
        id text PRIMARY KEY, domain_id int NOT NULL, organisation_id uuid,
        status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz);
    CREATE TABLE tasks (
        id text PRIMARY KEY, job_id text NOT NULL REFERENCES jobs (id),
        html_storage_bucket text, html_storage_path text, html_content_type text,
        html_content_encoding text, html_size_bytes bigint,
        html_compressed_size_bytes bigint, html_sha256 text, html_captured_at timestamptz,
        html_archive_provider text, html_archive_bucket text, html_archive_key text,
        html_archived_at timestamptz);
    INSERT INTO jobs (id, domain_id, status) VALUES ('j1', 1, 'completed');
    INSERT INTO tasks (id, job_id, html_storage_bucket, html_storage_path)
        VALUES ('t1', 'j1', 'hot', 'a'), ('t2', 'j1', 'hot', 'b');
"#;

async fn app_database() -> PgTestDb {
    let db = fresh_database().await;
    db.connection().await.execute(APP_SCHEMA).await.unwrap();
    db
}

/// Supabase's API roles. Roles belong to the whole cluster and tests run in
/// parallel: create them if absent (a racing twin's CREATE may fail either
/// way), never drop them.
async fn ensure_api_roles(conn: &mut PgConnection) {
    for role in ["anon", "authenticated", "service_role"] {
        conn.execute(AssertSqlSafe(format!(
            "DO $$ BEGIN CREATE ROLE {role} NOLOGIN;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )))
        .await
        .unwrap_or_else(|e| panic!("create role {role}: {e}"));
    }
}

/// Ok(what) or a refusal for lack of privilege (42501); anything else fails.
fn allowed<T>(result: Result<T, sqlx::Error>, what: &str) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

#[tokio::test]
async fn api_roles_can_neither_read_nor_delete_the_migrations_table() {
    let db = fresh_database().await;
    let mut conn = db.connection().await;
    ensure_api_roles(&mut conn).await;
    // What Supabase sets up in `public` for tables created later.
    conn.execute(
        "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
         ALTER DEFAULT PRIVILEGES IN SCHEMA public
             GRANT ALL ON TABLES TO anon, authenticated, service_role;",
    )
    .await
    .unwrap();
    let catalog = db.catalog().await;
    catalog.migrate().await.expect("migrate");
    let applied = "SELECT count(*) FROM _coldsweep_migrations";
    let recorded: i64 = sqlx::query_scalar(applied)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(recorded > 0);

    for role in ["anon", "authenticated"] {
        conn.execute(AssertSqlSafe(format!("SET ROLE {role}")))
            .await
            .unwrap();
        // The default grants are in force: the role reads the tables
        // coldsweep created for the application.
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tasks")
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{role} reads tasks: {e}"));
        let seen = allowed(
            sqlx::query_scalar::<_, i64>(applied)
                .fetch_one(&mut conn)
                .await,
            "read",
        );
        assert!(matches!(seen, None | Some(0)), "{role} saw {seen:?} rows");
        let deleted = allowed(
            sqlx::query("DELETE FROM _coldsweep_migrations")
                .execute(&mut conn)
                .await,
            "delete",
        );
        assert!(
            deleted.is_none_or(|done| done.rows_affected() == 0),
            "{role} deleted rows"
        );
        conn.execute("RESET ROLE").await.unwrap();
    }

    // A role granted everything (as a sweep under another role than the
    // migrating one would be) reads every record but cannot delete one.
    conn.execute("SET ROLE service_role").await.unwrap();
    let seen: i64 = sqlx::query_scalar(applied)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seen, recorded);
    let deleted = sqlx::query("DELETE FROM _coldsweep_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 0);
    conn.execute("RESET ROLE").await.unwrap();

    let still: i64 = sqlx::query_scalar(applied)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, recorded);
    catalog.check_migrations().await.expect("check_migrations");
    catalog.migrate().await.expect("migrate again");
}

/// Whether the `coldsweep migrate` session is waiting for a lock now; if so,
/// when its current statement started (one value per attempt).
async fn migrate_waiting_since(watcher: &mut PgConnection) -> Option<String> {
    sqlx::query_scalar(
        "SELECT query_start::text FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'coldsweep migrate'
           AND wait_event_type = 'Lock'",
    )
    .fetch_optional(watcher)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_long_transaction_makes_migrate_wait_without_stalling_reads() {
    let db = app_database().await;
    // The application's long transaction: it has read `tasks`.
    let mut holder = db.connection().await;
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM tasks")
        .execute(&mut *tx)
        .await
        .unwrap();

    let catalog = db.catalog().await;
    let check = catalog.clone();
    let migrating = tokio::spawn(async move { catalog.migrate().await });

    // Meanwhile the application keeps reading. Stop once migrate has been
    // seen waiting in two separate attempts (it gave up and came back); a
    // watcher looks often, as each wait is short.
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let mut watcher = db.connection().await;
    let watching = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                if let Some(attempt) = migrate_waiting_since(&mut watcher).await {
                    seen.lock().unwrap().insert(attempt);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut reader = db.connection().await;
    reader
        .execute("SET statement_timeout = '5s'")
        .await
        .unwrap();
    let mut reads = 0;
    while seen.lock().unwrap().len() < 2 {
        assert!(reads < 1000, "migrate was never seen waiting twice");
        assert!(
            !migrating.is_finished(),
            "migrate ended while a transaction held tasks: {:?}",
            migrating.await
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&mut reader)
            .await
            .unwrap_or_else(|e| panic!("read {reads} while migrate waits: {e}"));
        assert_eq!(rows, 2);
        reads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.abort();

    tx.commit().await.unwrap();
    migrating
        .await
        .unwrap()
        .expect("migrate once the holder is done");
    check.check_migrations().await.expect("check_migrations");
    let state: Option<String> =
        sqlx::query_scalar("SELECT html_archive_state FROM tasks WHERE id = 't1'")
            .fetch_one(&mut reader)
            .await
            .unwrap();
    assert_eq!(state, None);
}

#[tokio::test]
async fn migrate_gives_up_as_transient_while_the_lock_stays_busy() {
    let db = app_database().await;
    let mut holder = db.connection().await;
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM tasks")
        .execute(&mut *tx)
        .await
        .unwrap();

    let catalog = db.catalog().await.with_lock_wait_limit(Duration::ZERO);
    let err = catalog.migrate().await.expect_err("migrate behind a lock");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.to_string().contains("coldsweep migrate"), "{err}");
    // Rolled back: nothing recorded, no column added.
    let added: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
         WHERE table_name = 'tasks' AND column_name = 'html_archive_state'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(added, 0);
    tx.commit().await.unwrap();
    assert_eq!(
        catalog.check_migrations().await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    catalog
        .migrate()
        .await
        .expect("migrate once the lock is free");
    catalog.check_migrations().await.expect("check_migrations");
}

/// `(valid, definition)` of an index.
async fn index(conn: &mut PgConnection, name: &str) -> (bool, String) {
    sqlx::query_as(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i
         WHERE i.indexrelid = to_regclass($1)",
    )
    .bind(name)
    .fetch_one(conn)
    .await
    .unwrap_or_else(|e| panic!("index {name}: {e}"))
}

#[tokio::test]
async fn an_index_build_left_invalid_is_built_again() {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    let name = "coldsweep_tasks_hot_html_idx";
    let mut conn = db.connection().await;
    let (valid, wanted) = index(&mut conn, name).await;
    assert!(valid);

    // As if the build of migration 2 had been interrupted: not recorded, and
    // an INVALID index of that name (a unique build that failed on duplicates).
    conn.execute(
        "DROP INDEX coldsweep_tasks_hot_html_idx;
         DELETE FROM _coldsweep_migrations WHERE version = 2;
         INSERT INTO jobs (id, domain_id, status) VALUES ('j1', 1, 'completed');
         INSERT INTO tasks (id, job_id) VALUES ('t1', 'j1'), ('t2', 'j1');",
    )
    .await
    .unwrap();
    let failed = conn
        .execute("CREATE UNIQUE INDEX CONCURRENTLY coldsweep_tasks_hot_html_idx ON tasks (job_id)")
        .await;
    assert!(failed.is_err(), "the unique build should fail");
    assert!(!index(&mut conn, name).await.0, "left INVALID");

    catalog.migrate().await.expect("migrate again");
    assert_eq!(index(&mut conn, name).await, (true, wanted));
    catalog.check_migrations().await.unwrap();
}

#[tokio::test]
async fn migrate_prints_no_notices() {
    let db = app_database().await;
    for round in ["first", "second"] {
        let ran = run(coldsweep()
            .arg("migrate")
            .env("DATABASE_URL", db.url())
            .env("RUST_LOG", "debug"));
        assert_eq!(ran.code, Some(0), "{round}: {}", ran.show());
        assert!(
            !ran.stderr.contains("already exists, skipping"),
            "{round}: {}",
            ran.show()
        );
    }
}
