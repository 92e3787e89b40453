//! `get` and `verify` over declared sources (the uploads schema: bigint
//! `documents`, uuid `posts`), after a sweep: rows read by their key in the
//! key's own type, hot and cold, checked before a byte is handed out;
//! archived rows scrubbed in the key's real order, resumable with
//! `--after`; on Postgres with S3-protocol stores and on SQLite with
//! folders, through the library and the binary.

use bytes::Bytes;
use coldsweep::get::{GetOptions, PageReader, Proof, Tier, Unservable, unservable};
use coldsweep::progress::Progress;
use coldsweep::scrub::{ScrubOptions, ScrubProblemKind, ScrubReport, scrub_source_with_progress};
use coldsweep::source::TableSource;
use coldsweep::store::PutOptions;
use coldsweep::{ArchiveSource as _, ErrorKind, Location, ObjectKey};
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Executor};

use crate::table_source::{COLD, Scene};
use crate::uploads_schema::DECLARATIONS;

/// Documents of organisation a added to the fixture's six (ids 7 to 12):
/// all old enough to move. The first two differ only in the normal form
/// of their accent.
const EXTRA: &[(&str, &str)] = &[
    ("caf\u{e9}.txt", "NFC bytes"),
    ("cafe\u{301}.txt", "NFD bytes!"),
    ("one.txt", "1"),
    ("two.txt", "22"),
    ("three.txt", "333"),
    ("four.txt", "4444"),
];

/// Bodies of every document that moves, by file name.
const MOVED: &[(&str, &str)] = &[
    ("old one.pdf", "old bytes"),
    ("Ünïcode 名前 🎉 a+b%.txt", "unicode bytes"),
];

/// The sources with the posts' quota low enough that the image moves.
fn declarations() -> String {
    DECLARATIONS.replace("hot_quota = \"1GB\"", "hot_quota = \"1000\"")
}

const POST: &str = "1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c";

fn insert_sql(n: usize, name: &str, body: &str) -> String {
    format!(
        "INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size)
         VALUES ('0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', '{name}', 'uploads', 'org-a/{name}',
                 '2023-04-{:02}T00:00:00Z', '{}', {})",
        n + 1,
        hex::encode(Sha256::digest(body.as_bytes())),
        body.len()
    )
}

fn source(sources: &[TableSource], name: &str) -> TableSource {
    sources.iter().find(|s| s.name() == name).unwrap().clone()
}

async fn scrub(source: &TableSource, scene: &Scene, after: Option<&str>) -> ScrubReport {
    let options = ScrubOptions {
        after: after.map(str::to_owned),
        page_size: 2,
        ..ScrubOptions::default()
    };
    scrub_source_with_progress(
        source,
        scene.cold.as_ref(),
        &options,
        &Progress::new(),
        |_| {},
    )
    .await
    .unwrap()
}

async fn get_and_verify_read_rows_by_their_own_keys(postgres: bool) {
    let scene = Scene::new(postgres).await;
    for (n, (name, body)) in EXTRA.iter().enumerate() {
        scene.exec(&insert_sql(n, name, body)).await;
        scene
            .put(
                "uploads",
                &format!("org-a/{name}"),
                body.as_bytes().to_vec(),
            )
            .await;
    }
    let sources = scene.sources(&declarations()).await;
    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 9, "{report:?}");

    let ids = scene
        .rows("SELECT CAST(id AS TEXT), filename, archive_key FROM documents ORDER BY id")
        .await;
    let id_of = |name: &str| {
        ids.iter()
            .find(|r| r.1.as_deref() == Some(name))
            .and_then(|r| r.0.clone())
            .unwrap()
    };
    let extra_ids: Vec<String> = EXTRA.iter().map(|(name, _)| id_of(name)).collect();
    assert_eq!(extra_ids, ["7", "8", "9", "10", "11", "12"]);

    let documents = source(&sources, "documents");
    let reader = PageReader::for_source(
        documents.clone(),
        scene.hot.clone(),
        scene.cold.clone(),
        COLD,
    );
    let options = GetOptions::default();
    // Cold: every moved document, NFC and NFD names apart, checked
    // against the digest the table records.
    for (name, body) in MOVED.iter().chain(EXTRA) {
        let page = reader.get(&id_of(name), &options).await.unwrap();
        assert_eq!(page.bytes, body.as_bytes(), "{name}");
        assert_eq!(
            (page.tier, page.proof),
            (Tier::Cold, Proof::Catalog),
            "{name}"
        );
        assert!(
            page.location.key.as_str().ends_with(name),
            "{}",
            page.location
        );
    }
    // Hot: the rows that stay, with a digest, a size only, or neither.
    let hot: &[(&str, Vec<u8>, Proof)] = &[
        ("keep.pdf", b"kept bytes".to_vec(), Proof::Catalog),
        ("a+b #1 100%?&.txt", Vec::new(), Proof::Catalog),
        ("報告 🎉.docx", vec![b'x'; 12], Proof::Catalog),
        ("Résumé final.pdf", vec![b'x'; 5], Proof::Unchecked),
    ];
    for (name, body, proof) in hot {
        let page = reader.get(&id_of(name), &options).await.unwrap();
        assert_eq!(&page.bytes[..], &body[..], "{name}");
        assert_eq!((page.tier, page.proof), (Tier::Hot, *proof), "{name}");
    }

    // A uuid key: the image moved through the side table; its row keeps
    // its path, and the read follows the side table to cold.
    let posts = source(&sources, "post-images");
    let post_reader =
        PageReader::for_source(posts.clone(), scene.hot.clone(), scene.cold.clone(), COLD);
    let page = post_reader.get(POST, &options).await.unwrap();
    assert_eq!((page.tier, &page.bytes[..]), (Tier::Cold, &[7u8; 2048][..]));
    assert_eq!(page.proof, Proof::UploadDigest);
    if postgres {
        // A uuid in another spelling is the same key.
        let upper = POST.to_uppercase();
        let page = post_reader.get(&upper, &options).await.unwrap();
        assert_eq!(page.bytes.len(), 2048);
        let err = post_reader.get("not-a-uuid", &options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.chain());
    }
    let err = post_reader
        .get("2d2d2d2d-2d2d-4d2d-8d2d-2d2d2d2d2d2d", &options)
        .await
        .unwrap_err();
    assert_eq!(
        unservable(&err),
        Some(&Unservable::NoBlob),
        "{}",
        err.chain()
    );

    // Unknown and malformed keys.
    let err = reader.get("999", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.chain());
    assert_eq!(unservable(&err), Some(&Unservable::NoSuchRow));
    for bad in ["abc", "12abc", "1.5", ""] {
        let err = reader.get(bad, &options).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidInput,
            "{bad}: {}",
            err.chain()
        );
        assert!(
            err.chain().to_string().contains("not an integer"),
            "{}",
            err.chain()
        );
    }

    // Verify: every archived document, in bigint order, two rows a page.
    let all = scrub(&documents, &scene, None).await;
    assert!(all.is_clean(), "{all:?}");
    assert_eq!((all.checked, all.last_checked.as_deref()), (8, Some("12")));
    // After 9 come 10, 11 and 12 (in text order nothing comes after "9").
    let resumed = scrub(&documents, &scene, Some("9")).await;
    assert_eq!(
        (resumed.checked, resumed.last_checked.as_deref()),
        (3, Some("12"))
    );
    let resumed = scrub(&documents, &scene, Some("10")).await;
    assert_eq!(resumed.checked, 2);
    let images = scrub(&posts, &scene, None).await;
    assert_eq!(
        (images.checked, images.last_checked.as_deref()),
        (1, Some(POST))
    );

    // A cold copy corrupted in the cold store, same size: not served,
    // reported corrupt with its row key.
    let ten = ids.iter().find(|r| r.0.as_deref() == Some("10")).unwrap();
    let key = ten.2.clone().unwrap();
    let location = Location::new(COLD, ObjectKey::new(key.as_str()).unwrap());
    scene
        .cold
        .put(
            &location,
            Bytes::from_static(b"3X3"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    let err = reader.get("10", &options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.chain());
    assert!(
        matches!(unservable(&err), Some(Unservable::Mismatch { .. })),
        "{}",
        err.chain()
    );
    let report = scrub(&documents, &scene, Some("9")).await;
    assert_eq!((report.checked, report.corrupt), (3, 1), "{report:?}");
    assert_eq!(report.problems[0].task_id, "10");
    assert_eq!(report.problems[0].kind, ScrubProblemKind::Corrupt);
    assert_eq!(report.problems[0].key, key);

    // A malformed resume point is refused before any row is read.
    let options = ScrubOptions {
        after: Some("ten".into()),
        ..ScrubOptions::default()
    };
    let err = scrub_source_with_progress(
        &documents,
        scene.cold.as_ref(),
        &options,
        &Progress::new(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.chain());
}

#[tokio::test]
async fn get_and_verify_read_rows_by_their_own_keys_on_postgres() {
    get_and_verify_read_rows_by_their_own_keys(true).await;
}

#[tokio::test]
async fn get_and_verify_read_rows_by_their_own_keys_on_sqlite() {
    get_and_verify_read_rows_by_their_own_keys(false).await;
}

/// The binary with a config file declaring both sources, on SQLite and
/// folders: `get` by key, `--source` rules, exit codes; `verify --after`
/// in bigint order; a corrupted cold file refused and reported.
#[tokio::test]
async fn the_binary_gets_and_verifies_declared_rows() {
    use crate::cli::{coldsweep, json_of, run};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("sqlite:{}", db.display());
    let hot = dir.path().join("hot");
    std::fs::create_dir_all(hot.join("uploads/org-a")).unwrap();
    std::fs::create_dir_all(hot.join("images/p/1")).unwrap();
    std::fs::create_dir_all(hot.join("uploads-eu")).unwrap();
    {
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        pool.execute(AssertSqlSafe(crate::uploads_schema::SQLITE))
            .await
            .unwrap();
        // Ids 4 to 12, all old enough to move.
        let mut more = vec![("old one.pdf", "old bytes"), ("two words.txt", "two words")];
        more.extend([
            ("caf\u{e9}.txt", "NFC"),
            ("cafe\u{301}.txt", "NFD!"),
            ("a+b #2 50%?&.txt", "odd"),
            ("名前 🎉.txt", "emoji"),
            ("10.txt", "ten"),
            ("11.txt", "eleven"),
            ("12.txt", "twelve"),
        ]);
        for (n, (name, body)) in more.iter().enumerate() {
            pool.execute(AssertSqlSafe(insert_sql(n, name, body)))
                .await
                .unwrap();
            std::fs::write(hot.join("uploads/org-a").join(name), body).unwrap();
        }
        pool.close().await;
    }
    std::fs::write(hot.join("uploads/org-a/Résumé final.pdf"), b"resume").unwrap();
    std::fs::write(hot.join("images/p/1/cafe\u{301}.jpg"), vec![7u8; 2048]).unwrap();
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
            declarations()
        ),
    )
    .unwrap();
    let with_file = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.arg("--config").arg(&path).args(args);
        cmd
    };
    let ran = run(&mut with_file(&["migrate"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let ran = run(&mut with_file(&["sweep", "--once", "--json"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    // Ids 4 to 12 and the image; the fixture's three documents stay.
    assert_eq!(json_of(&ran)["archived"], 10, "{}", ran.show());

    let out = dir.path().join("out");
    let get = |args: &[&str]| {
        let mut all = vec!["get", "-o", out.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&mut with_file(&all))
    };
    // Two sources: --source is needed, and the names are listed.
    let ran = get(&["4"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains("documents, post-images"),
        "{}",
        ran.show()
    );
    let ran = get(&["--source", "nope", "4"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());

    for (id, body) in [
        ("4", "old bytes"),
        ("5", "two words"),
        ("6", "NFC"),
        ("7", "NFD!"),
        ("8", "odd"),
        ("9", "emoji"),
        ("10", "ten"),
    ] {
        let ran = get(&["--source", "documents", id]);
        assert_eq!(ran.code, Some(0), "{id}: {}", ran.show());
        assert_eq!(std::fs::read(&out).unwrap(), body.as_bytes(), "{id}");
        assert!(ran.stdout.contains("from cold"), "{}", ran.show());
    }
    // A hot row recording neither digest nor size: served, with a note.
    let ran = get(&["--source", "documents", "1"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(std::fs::read(&out).unwrap(), b"resume");
    assert!(ran.stderr.contains("were not checked"), "{}", ran.show());
    // The uuid key.
    let ran = get(&["--source", "post-images", POST]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 2048]);

    let ran = get(&["--source", "documents", "999"]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stderr.contains("no such row"), "{}", ran.show());
    let ran = get(&["--source", "documents", "ten"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("not an integer"), "{}", ran.show());

    // verify: after 9 come 10, 11, 12.
    let verify = |args: &[&str]| {
        let mut all = vec!["verify", "--source", "documents", "--json"];
        all.extend_from_slice(args);
        run(&mut with_file(&all))
    };
    let ran = verify(&["--after", "9"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let json = json_of(&ran);
    assert_eq!(
        (json["checked"].as_u64(), json["after"].as_str()),
        (Some(3), Some("12"))
    );
    assert_eq!(json["source"], "documents", "{}", ran.show());
    let ran = verify(&["--after", "nine"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());

    // Corrupt id 10's cold file on disk: get refuses it, verify reports it.
    let key: String = {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT archive_key FROM documents WHERE id = 10")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    std::fs::write(cold.join(COLD).join(&key), b"TEN").unwrap();
    let ran = get(&["--source", "documents", "10"]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stderr.contains("disagree"), "{}", ran.show());
    let ran = verify(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    let json = json_of(&ran);
    assert_eq!(json["checked"], 9, "{}", ran.show());
    assert_eq!(json["corrupt"], 1, "{}", ran.show());
    assert_eq!(json["problems"][0]["task_id"], "10", "{}", ran.show());
    assert_eq!(json["problems"][0]["kind"], "corrupt", "{}", ran.show());
}
