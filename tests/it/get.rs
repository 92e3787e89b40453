//! `coldsweep get` and the library's `PageReader`, on Postgres and the S3
//! test server: a page read from hot and from cold is the page that was
//! stored, and every page the catalog says cannot be served (or whose bytes
//! disagree with it) is refused with the reason, writing nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use chrono::TimeZone;
use coldsweep::catalog::TaskRow;
use coldsweep::get::{Form, GetOptions, PageReader, Tier, Unservable, unservable};
use coldsweep::{ErrorKind, task_html_object_path};

use crate::cli::{files_under, gunzip};
use crate::pipeline::{Backend, COLD_BUCKET, HOT_BUCKET, Rig, cold_location, gzip, sha256_hex};

/// What a finished command left: exit code, stdout as bytes, stderr.
struct Output {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Output {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ({} bytes)\n{}\n--- stderr\n{}",
            self.code,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

fn output(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run coldsweep get");
    Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A Postgres/S3 rig with jobs `old` (moved by a sweep with retention 1)
/// and `new` (kept hot), a page in each; returns the stored bytes of both.
async fn rig_with_pages() -> (Rig, Bytes, Bytes) {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    let old = rig.task("old", "page").await;
    let new = rig.task("new", "kept").await;
    (rig, old, new)
}

fn sweep(rig: &Rig) {
    let ran = output(
        rig.command(&["sweep", "--once"])
            .env("ARCHIVE_RETENTION_JOBS", "1"),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.show());
}

/// No file but `names` in `dir` (no temporary file left behind).
fn only_files(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = files_under(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names, "files in {}", dir.display());
}

#[tokio::test]
async fn get_serves_the_stored_and_decoded_page_from_hot_then_from_cold() {
    let (rig, stored, kept) = rig_with_pages().await;
    let html = gunzip(&stored);
    let dir = tempfile::tempdir().unwrap();

    // Hot: the row has a hot path.
    let ran = output(&mut rig.command(&["get", "page"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(ran.stdout, stored, "stored bytes from hot");
    let ran = output(&mut rig.command(&["get", "page", "--decoded"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(ran.stdout, html, "decoded page from hot");

    sweep(&rig);
    let row = rig.row("page").await;
    assert!(
        row.html_storage_path.is_none() && row.html_archive_key.is_some(),
        "the sweep did not archive the page: {row:?}"
    );

    // Cold: the same bytes, to stdout and to files.
    let ran = output(&mut rig.command(&["get", "page"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(ran.stdout, stored, "stored bytes from cold");
    let file = dir.path().join("page.html.gz");
    let ran = output(&mut rig.command(&["get", "page", "-o", file.to_str().unwrap()]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(std::fs::read(&file).unwrap(), stored);
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(said.contains("from cold"), "{}", ran.show());
    let file = dir.path().join("page.html");
    let ran = output(&mut rig.command(&[
        "get",
        "page",
        "--decoded",
        "--output",
        file.to_str().unwrap(),
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(std::fs::read(&file).unwrap(), html);
    only_files(dir.path(), &["page.html", "page.html.gz"]);

    // The newer job's page stayed hot and is served from there.
    let ran = output(&mut rig.command(&["get", "kept", "-o", "-"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(ran.stdout, kept);
}

#[tokio::test]
async fn get_refuses_a_corrupted_cold_copy_and_writes_nothing() {
    let (rig, stored, _) = rig_with_pages().await;
    sweep(&rig);
    // Same length, other bytes: only the digest can tell.
    let object = rig
        .s3_server()
        .unwrap()
        .root()
        .join(COLD_BUCKET)
        .join(cold_location("old", "page").key.as_str());
    let mut corrupted = stored.to_vec();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(&object, &corrupted).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(dir.path().join("other"), b"untouched").unwrap();
    for args in [
        vec!["get", "page", "-o", file.to_str().unwrap()],
        vec!["get", "page", "--decoded", "-o", file.to_str().unwrap()],
    ] {
        let ran = output(&mut rig.command(&args));
        assert_eq!(ran.code, Some(1), "{args:?}\n{}", ran.show());
        assert!(
            ran.stderr.contains("disagree with the catalog"),
            "{}",
            ran.show()
        );
        assert!(ran.stderr.contains("cold"), "{}", ran.show());
        assert!(!file.exists(), "a refused page was written");
        only_files(dir.path(), &["other"]);
    }
    // Nothing on stdout either.
    let ran = output(&mut rig.command(&["get", "page"]));
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(ran.stdout.is_empty(), "{}", ran.show());
}

/// A row in `state` with `reason`, first found missing at a fixed time.
async fn insert_state_row(rig: &Rig, task: &str, state: &str, reason: &str, hot: bool) {
    let stored = gzip(b"<html>never seen</html>");
    let since = chrono::Utc.with_ymd_and_hms(2026, 2, 3, 4, 5, 6).unwrap();
    rig.catalog
        .insert_task(&TaskRow {
            id: task.to_owned(),
            job_id: "old".to_owned(),
            html_storage_bucket: hot.then(|| HOT_BUCKET.to_owned()),
            html_storage_path: hot.then(|| task_html_object_path("old", task)),
            html_content_encoding: Some("gzip".to_owned()),
            html_compressed_size_bytes: Some(stored.len() as i64),
            html_sha256: Some(sha256_hex(b"<html>never seen</html>")),
            html_archive_state: Some(state.to_owned()),
            html_archive_error: Some(reason.to_owned()),
            html_missing_since: (state != "quarantined").then_some(since),
            ..TaskRow::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn get_refuses_lost_missing_quarantined_and_unknown_tasks_with_the_reason() {
    let (rig, _, _) = rig_with_pages().await;
    insert_state_row(&rig, "gone", "lost", "in neither store on two looks", false).await;
    insert_state_row(
        &rig,
        "unsure",
        "missing",
        "no object in either store",
        false,
    )
    .await;
    insert_state_row(&rig, "bad", "quarantined", "content digest mismatch", true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    for (task, expected) in [
        (
            "gone",
            &[
                "lost",
                "since 2026-02-03T04:05:06",
                "in neither store on two looks",
            ][..],
        ),
        (
            "unsure",
            &[
                "missing",
                "since 2026-02-03T04:05:06",
                "no object in either store",
            ][..],
        ),
        ("bad", &["quarantined", "content digest mismatch"][..]),
        ("no-such-task", &["no-such-task", "no such task"][..]),
    ] {
        let ran = output(&mut rig.command(&["get", task, "-o", file.to_str().unwrap()]));
        assert_eq!(ran.code, Some(1), "{task}\n{}", ran.show());
        for text in expected {
            assert!(
                ran.stderr.contains(text),
                "{task}: {text:?}\n{}",
                ran.show()
            );
        }
        assert!(!file.exists(), "{task}: something was written");
    }

    // Bad arguments are exit 2, before anything is read.
    let ran = output(&mut rig.command(&["get"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    let ran = output(&mut rig.command(&["get", "page", "-o", dir.path().to_str().unwrap()]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    let ran = output(
        rig.command(&["get", "page"])
            .env("ARCHIVE_BATCH_SIZE", "many"),
    );
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("ARCHIVE_BATCH_SIZE"), "{}", ran.show());
}

fn reader(rig: &Rig) -> PageReader {
    PageReader::new(
        rig.catalog.clone(),
        rig.hot.clone(),
        rig.cold.clone(),
        COLD_BUCKET,
    )
}

/// A row switched to cold whose hot reference is still set (a sweep between
/// its switch and its clear), with the hot copy already deleted: the read
/// finds nothing hot and serves the cold copy.
#[tokio::test]
async fn a_hot_copy_already_deleted_is_read_from_cold() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    let html = b"<html>switched, hot copy deleted</html>";
    let stored = gzip(html);
    let cold = cold_location("old", "switched");
    rig.cold
        .put(&cold, stored.clone(), &Default::default())
        .await
        .unwrap();
    rig.catalog
        .insert_task(&TaskRow {
            id: "switched".to_owned(),
            job_id: "old".to_owned(),
            html_storage_bucket: Some(HOT_BUCKET.to_owned()),
            html_storage_path: Some(task_html_object_path("old", "switched")),
            html_content_encoding: Some("gzip".to_owned()),
            html_compressed_size_bytes: Some(stored.len() as i64),
            html_size_bytes: Some(html.len() as i64),
            html_sha256: Some(sha256_hex(html)),
            html_archive_provider: Some("minio".to_owned()),
            html_archive_bucket: Some(COLD_BUCKET.to_owned()),
            html_archive_key: Some(cold.key.as_str().to_owned()),
            html_archived_at: Some(chrono::Utc::now()),
            ..TaskRow::default()
        })
        .await
        .unwrap();

    let page = reader(&rig)
        .get("switched", &GetOptions::default())
        .await
        .unwrap();
    assert_eq!((page.tier, &page.bytes), (Tier::Cold, &stored));
    assert_eq!(page.content_encoding.as_deref(), Some("gzip"));
    let options = GetOptions {
        form: Form::Decoded,
        ..GetOptions::default()
    };
    let page = reader(&rig).get("switched", &options).await.unwrap();
    assert_eq!(&page.bytes[..], html);
    assert_eq!(page.content_encoding, None);

    // A page over the limit is refused, whatever it holds.
    let small = GetOptions {
        max_bytes: 10,
        ..GetOptions::default()
    };
    let err = reader(&rig).get("switched", &small).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.chain());
    assert!(
        matches!(unservable(&err), Some(Unservable::TooLarge { .. })),
        "{}",
        err.chain()
    );
}

/// A cold copy recorded on another provider or bucket than the configured
/// cold store is not looked for in the configured one: the error names both.
#[tokio::test]
async fn a_cold_copy_elsewhere_is_named_not_guessed() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    let stored = gzip(b"<html>elsewhere</html>");
    // The configured store holds the same key: reading it would be a guess.
    let cold = cold_location("old", "moved");
    rig.cold
        .put(&cold, stored.clone(), &Default::default())
        .await
        .unwrap();
    for (provider, bucket) in [("r2", COLD_BUCKET), ("minio", "older-archive")] {
        let task = format!("moved-{provider}");
        rig.catalog
            .insert_task(&TaskRow {
                id: task.clone(),
                job_id: "old".to_owned(),
                html_content_encoding: Some("gzip".to_owned()),
                html_compressed_size_bytes: Some(stored.len() as i64),
                html_sha256: Some(sha256_hex(b"<html>elsewhere</html>")),
                html_archive_provider: Some(provider.to_owned()),
                html_archive_bucket: Some(bucket.to_owned()),
                html_archive_key: Some(cold.key.as_str().to_owned()),
                ..TaskRow::default()
            })
            .await
            .unwrap();
        let err = reader(&rig)
            .get(&task, &GetOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}", err.chain());
        let text = err.chain().to_string();
        assert!(
            text.contains(&format!("{provider}:{bucket}"))
                && text.contains(&format!("minio:{COLD_BUCKET}")),
            "{text}"
        );
    }

    // And the reader never serves unverified bytes from hot either.
    let hot_stored = rig.task("old", "hot-page").await;
    let hot_object = rig
        .s3_server()
        .unwrap()
        .root()
        .join(HOT_BUCKET)
        .join(task_html_object_path("old", "hot-page"));
    let mut tampered = hot_stored.to_vec();
    let last = tampered.len() - 9;
    tampered[last] ^= 1;
    std::fs::write(hot_object, tampered).unwrap();
    let err = reader(&rig)
        .get("hot-page", &GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.chain());
    assert!(
        matches!(unservable(&err), Some(Unservable::Mismatch { .. })),
        "{}",
        err.chain()
    );
}

/// `coldsweep get ARGS` with a terminal as stdout (util-linux `script`
/// gives it a pseudo-terminal): exit code and what the terminal showed.
fn on_a_terminal(rig: &Rig, args: &str) -> (Option<i32>, String) {
    let configured = rig.command(&[]);
    let mut cmd = Command::new("script");
    cmd.env_clear()
        .args(["-q", "-e", "-c"])
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_coldsweep")))
        .arg("/dev/null");
    for (name, value) in configured.get_envs() {
        if let Some(value) = value {
            cmd.env(name, value);
        }
    }
    let ran = cmd.stdin(Stdio::null()).output().expect(
        "run util-linux `script`, which gives the terminal test its terminal \
         (apt-get install util-linux)",
    );
    (
        ran.status.code(),
        String::from_utf8_lossy(&ran.stdout).into_owned(),
    )
}

#[tokio::test]
async fn gzip_is_not_written_to_a_terminal_but_the_html_is() {
    let (rig, stored, _) = rig_with_pages().await;
    let (code, shown) = on_a_terminal(&rig, "get page");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("not writing the stored (gzip) bytes"),
        "{shown}"
    );
    assert!(shown.contains("--decoded"), "{shown}");
    let (code, shown) = on_a_terminal(&rig, "get page --decoded");
    assert_eq!(code, Some(0), "{shown}");
    let html = String::from_utf8(gunzip(&stored)).unwrap();
    // The terminal shows line ends as CR LF.
    assert!(shown.replace("\r\n", "\n").contains(&html), "{shown}");
}

/// A task with no HTML, and a page the catalog records nothing to check
/// against, are refused too: the second has bytes, but they cannot be
/// vouched for.
#[tokio::test]
async fn no_html_and_nothing_to_check_against_are_refused() {
    let rig = Rig::new(Backend::PostgresS3).await;
    rig.old_and_new_jobs().await;
    rig.catalog
        .insert_task(&TaskRow {
            id: "empty".to_owned(),
            job_id: "old".to_owned(),
            ..TaskRow::default()
        })
        .await
        .unwrap();
    rig.task("old", "unchecked").await;
    rig.catalog
        .insert_task(&TaskRow {
            id: "unchecked-copy".to_owned(),
            job_id: "old".to_owned(),
            html_storage_bucket: Some(HOT_BUCKET.to_owned()),
            // The same object as `unchecked`, which exists, without digest or size.
            html_storage_path: Some(task_html_object_path("old", "unchecked")),
            html_content_encoding: Some("gzip".to_owned()),
            ..TaskRow::default()
        })
        .await
        .unwrap();
    let err = reader(&rig)
        .get("empty", &GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.chain());
    assert_eq!(unservable(&err), Some(&Unservable::NoHtml));
    let err = reader(&rig)
        .get("unchecked-copy", &GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.chain());
    assert_eq!(unservable(&err), Some(&Unservable::Unverifiable));
    // The same object under the row that records its digest is served.
    assert!(
        reader(&rig)
            .get("unchecked", &GetOptions::default())
            .await
            .is_ok()
    );
}
