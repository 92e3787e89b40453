//! `migrate` on a live Postgres application database: it keeps coldsweep's
//! bookkeeping out of the API roles' reach.

use coldsweep::Catalog;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Executor};

use crate::harness::pg::fresh_database;

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

    let still: i64 = sqlx::query_scalar(applied)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(still, recorded);
    catalog.check_migrations().await.expect("check_migrations");
    catalog.migrate().await.expect("migrate again");
}
