//! Source declarations checked against a live catalog: the uploads schema
//! (`uploads_schema`) and the shipped one, on Postgres and SQLite. A good
//! declaration passes; each mistake is refused with its kind, naming the
//! source, the column and the config line.

use coldsweep::ErrorKind;
use coldsweep::rules::Rules;
use coldsweep::source::spec::{
    Note, SpecErrors, SpecProblemKind, parse_sources, task_html, validate_sources,
};

use crate::uploads_schema::{DECLARATIONS, Uploads, pg_uploads, sqlite_uploads};

/// `DECLARATIONS` with its first line equal to `old` replaced by `new`.
fn with(old: &str, new: &str) -> String {
    assert!(
        DECLARATIONS.lines().any(|l| l == old),
        "no line {old:?} in the declarations"
    );
    let mut done = false;
    DECLARATIONS
        .lines()
        .map(|l| {
            if l == old && !done {
                done = true;
                new
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 1-based line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|l| l == needle)
        .map(|n| n as u32 + 1)
        .unwrap_or_else(|| panic!("no line {needle:?}"))
}

async fn validate(db: &Uploads, text: &str) -> coldsweep::Result<Vec<Note>> {
    let specs = parse_sources(text).unwrap_or_else(|e| panic!("parse: {e}"));
    validate_sources(&specs, db.catalog.as_ref()).await
}

async fn declarations_pass(db: Uploads) {
    let notes = validate(&db, DECLARATIONS)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let sqlite = db.catalog.backend() == "sqlite";
    // SQLite keeps times as text: accepted, and said so once per column.
    let columns: Vec<(&str, &str)> = notes
        .iter()
        .map(|n| (n.source.as_str(), n.column.as_str()))
        .collect();
    if sqlite {
        assert_eq!(
            columns,
            [
                ("documents", "archived_at"),
                ("documents", "created_at"),
                ("post-images", "created_at")
            ],
            "{notes:?}"
        );
        assert!(notes[0].message.contains("compared as instants"));
    } else {
        assert!(notes.is_empty(), "{notes:?}");
    }
    // The built-in crawler source, on the shipped schema, with and without a quota.
    for rules in [
        Rules::retention(3),
        Rules {
            retention_jobs: 1,
            hot_quota: Some(1),
            min_age: Some(std::time::Duration::from_secs(3600)),
        },
    ] {
        validate_sources(&[task_html(&rules)], db.catalog.as_ref())
            .await
            .unwrap_or_else(|e| panic!("built-in: {}", e.chain()));
    }
}

/// One mistake: the line replaced, what is expected of the problem.
struct Mistake {
    old: &'static str,
    new: &'static str,
    kind: SpecProblemKind,
    source: &'static str,
    column: Option<&'static str>,
    postgres_only: bool,
}

const fn mistake(
    old: &'static str,
    new: &'static str,
    kind: SpecProblemKind,
    source: &'static str,
    column: Option<&'static str>,
) -> Mistake {
    Mistake {
        old,
        new,
        kind,
        source,
        column,
        postgres_only: false,
    }
}

async fn each_mistake_is_named(db: Uploads) {
    use SpecProblemKind as K;
    let sqlite = db.catalog.backend() == "sqlite";
    let mistakes = [
        mistake(
            "table = \"documents\"",
            "table = \"document\"",
            K::MissingTable,
            "documents",
            Some("document"),
        ),
        mistake(
            "path_column = \"path\"",
            "path_column = \"file_path\"",
            K::MissingColumn,
            "documents",
            Some("file_path"),
        ),
        mistake(
            "stored_size = \"size\"",
            "stored_size = \"filename\"",
            K::WrongType,
            "documents",
            Some("filename"),
        ),
        mistake(
            "digest = \"digest\"",
            "digest = \"size\"",
            K::WrongType,
            "documents",
            Some("size"),
        ),
        mistake(
            "age_column = \"created_at\"",
            "age_column = \"size\"",
            K::WrongType,
            "documents",
            Some("size"),
        ),
        mistake(
            "cold_key = \"uploads/{org_id}/{id}/{filename}\"",
            "cold_key = \"uploads/{org}/{id}/{filename}\"",
            K::MissingColumn,
            "documents",
            Some("org"),
        ),
        mistake(
            "key = \"id\"",
            "key = \"org_id\"",
            K::WrongType,
            "documents",
            Some("org_id"),
        ),
        mistake(
            "side_table = \"coldsweep_documents\"",
            "side_table = \"jobs\"",
            K::SideTableCollision,
            "documents",
            Some("jobs"),
        ),
        mistake(
            "group_by = [\"org_id\", \"bucket\"]",
            "group_by = [\"org_id\", \"owner\"]",
            K::MissingColumn,
            "documents",
            Some("owner"),
        ),
        mistake(
            "condition = \"filename <> 'keep.pdf'\"",
            "condition = \"no_such_column = 1\"",
            K::BadCondition,
            "documents",
            None,
        ),
        Mistake {
            postgres_only: true,
            ..mistake(
                "condition = \"filename <> 'keep.pdf'\"",
                "condition = \"size + 1\"",
                K::BadCondition,
                "documents",
                None,
            )
        },
        Mistake {
            // SQLite takes text as a time (compared as an instant).
            postgres_only: true,
            ..mistake(
                "order_by = \"created_at\"",
                "order_by = \"title\"",
                K::WrongType,
                "post-images",
                Some("title"),
            )
        },
        mistake(
            "stored_size = \"image_bytes\"",
            "stored_size = \"title\"",
            K::WrongType,
            "post-images",
            Some("title"),
        ),
        mistake(
            "table = \"posts\"",
            "table = \"nope.posts\"",
            K::MissingTable,
            "post-images",
            Some("nope.posts"),
        ),
    ];
    for m in mistakes.iter().filter(|m| !(sqlite && m.postgres_only)) {
        let text = with(m.old, m.new);
        let err = validate(&db, &text)
            .await
            .expect_err(&format!("{} should be refused", m.new));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.chain());
        let problems = SpecErrors::of(&err)
            .unwrap_or_else(|| panic!("no problems attached: {}", err.chain()))
            .problems();
        assert_eq!(problems.len(), 1, "{}: {problems:#?}", m.new);
        let p = &problems[0];
        assert_eq!(
            (p.kind, p.source.as_deref(), p.column.as_deref(), p.line),
            (
                m.kind,
                Some(m.source),
                m.column,
                Some(line_of(&text, m.new))
            ),
            "{p}"
        );
        // What the operator reads names them too.
        let shown = err.chain().to_string();
        assert!(shown.contains(&format!("source {:?}", m.source)), "{shown}");
        assert!(
            shown.contains(&format!("(line {})", line_of(&text, m.new))),
            "{shown}"
        );
        if let Some(column) = m.column {
            assert!(shown.contains(column), "{shown}");
        }
    }

    // Every problem is reported at once, not the first alone.
    let text = with("path_column = \"path\"", "path_column = \"file_path\"")
        .replace("stored_size = \"image_bytes\"", "stored_size = \"title\"");
    let err = validate(&db, &text).await.unwrap_err();
    let kinds: Vec<SpecProblemKind> = SpecErrors::of(&err)
        .unwrap()
        .problems()
        .iter()
        .map(|p| p.kind)
        .collect();
    assert_eq!(kinds, [K::MissingColumn, K::WrongType]);
}

/// A side table coldsweep created earlier is its own, not a collision.
async fn an_existing_side_table_of_coldsweeps_passes(db: Uploads) {
    let sqlite = db.catalog.backend() == "sqlite";
    let (key, text, time) = if sqlite {
        ("INTEGER", "TEXT", "TEXT")
    } else {
        ("bigint", "text", "timestamptz")
    };
    let ddl = format!(
        "CREATE TABLE coldsweep_documents (row_key {key} PRIMARY KEY, cold_provider {text},
         cold_bucket {text}, cold_key {text}, archived_at {time}, hot_bucket {text},
         hot_path {text}, restored_at {time}, hot_deleted_at {time},
         stored_size_bytes bigint, stored_sha256 {text}, state {text}, error {text},
         attempts integer NOT NULL DEFAULT 0, claims integer NOT NULL DEFAULT 0,
         lease_owner {text}, lease_expires_at {time}, missing_since {time})"
    );
    execute(&db, &ddl).await;
    validate(&db, DECLARATIONS)
        .await
        .unwrap_or_else(|e| panic!("{}", e.chain()));

    // Keyed in another type than the source's key: refused.
    execute(&db, "DROP TABLE coldsweep_documents").await;
    execute(&db, &ddl.replace(&format!("row_key {key}"), "row_key uuid")).await;
    if !sqlite {
        let err = validate(&db, DECLARATIONS).await.unwrap_err();
        let p = &SpecErrors::of(&err).unwrap().problems()[0];
        assert_eq!(
            (p.kind, p.column.as_deref()),
            (SpecProblemKind::WrongType, Some("row_key"))
        );
    }
}

/// The parent marker's columns are checked too: a foreign key of another
/// type than the parent's key, a status column the parent lacks, a rule
/// ranking parents by a column they lack.
async fn parent_mistakes_are_named(db: Uploads) {
    use coldsweep::catalog::Ident;
    let ident = |name: &str| coldsweep::source::spec::At::built_in(Ident::new(name).unwrap());
    let mut spec = task_html(&Rules::retention(3));
    let parent = spec.parent.as_mut().unwrap();
    parent.foreign_key = ident("html_archive_attempts");
    parent.status_column = ident("state");
    spec.rule.group_by[1] = ident("org_id");
    let err = validate_sources(&[spec], db.catalog.as_ref())
        .await
        .unwrap_err();
    let found: Vec<(SpecProblemKind, &str, Option<&str>)> = SpecErrors::of(&err)
        .unwrap()
        .problems()
        .iter()
        .map(|p| (p.kind, p.setting.as_str(), p.column.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (
                SpecProblemKind::WrongType,
                "parent.foreign_key",
                Some("html_archive_attempts")
            ),
            (
                SpecProblemKind::MissingColumn,
                "parent.status_column",
                Some("state")
            ),
            (
                SpecProblemKind::MissingColumn,
                "rule.group_by",
                Some("org_id")
            ),
        ],
        "{}",
        err.chain()
    );
    // A user source may not take the built-in's name.
    let mut twin = task_html(&Rules::retention(3));
    twin.name.line = Some(1);
    let err = validate_sources(
        &[task_html(&Rules::retention(3)), twin],
        db.catalog.as_ref(),
    )
    .await
    .unwrap_err();
    let p = &SpecErrors::of(&err).unwrap().problems()[0];
    assert_eq!((p.kind, p.line), (SpecProblemKind::DuplicateName, Some(1)));
}

async fn execute(db: &Uploads, sql: &str) {
    use sqlx::{AssertSqlSafe, Executor};
    match db.catalog.backend() {
        "sqlite" => {
            let pool = db.sqlite_pool.as_ref().unwrap();
            pool.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
        }
        _ => {
            let pool = db.pg_pool.as_ref().unwrap();
            pool.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
        }
    }
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::pg_uploads().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::sqlite_uploads().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    declarations_pass,
    each_mistake_is_named,
    an_existing_side_table_of_coldsweeps_passes,
    parent_mistakes_are_named,
);
