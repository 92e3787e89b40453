//! `coldsweep verify` (the scrub), end to end: blobs archived by a real
//! sweep on both rigs (Postgres + S3 protocol server, SQLite + folders),
//! then damaged on purpose and scrubbed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coldsweep::catalog::TaskRow;
use coldsweep::error::{Error, ErrorKind, Result};
use coldsweep::progress::{Progress, Snapshot};
use coldsweep::scrub::{
    ScrubOptions, ScrubProblemKind, ScrubReport, in_sample, scrub, scrub_with_progress,
};
use coldsweep::store::{Location, ObjectMeta, PutOptions, PutResult, Store, meta};
use coldsweep::{Catalog, ObjectKey};

use crate::cli::{assert_utc_time, coldsweep, json_of, run};
use crate::pipeline::{BACKENDS, Backend, COLD_BUCKET, Rig, gzip};

/// Three jobs beyond retention (j1–j3) with four tasks each are archived by
/// a sweep; j4 (kept by retention) stays hot. Returns the archived rows.
async fn archived_set(rig: &Rig) -> Vec<TaskRow> {
    for (job, minute) in [("j1", 10), ("j2", 20), ("j3", 30), ("j4", 40)] {
        rig.job(job, 1, "completed", minute).await;
        for n in 1..=4 {
            rig.task(job, &format!("{job}-t{n}")).await;
        }
    }
    let report = rig.archiver(1).sweep().await;
    assert!(report.is_clean(), "{:?}: {report:?}", rig.backend);
    assert_eq!(report.archived, 12, "{:?}", rig.backend);
    let rows = all_archived(rig.catalog.as_ref()).await;
    assert_eq!(rows.len(), 12);
    rows
}

async fn all_archived(catalog: &dyn Catalog) -> Vec<TaskRow> {
    catalog
        .archived_tasks_after(None, None, 1000)
        .await
        .unwrap()
}

fn cold_location(row: &TaskRow) -> Location {
    Location::new(
        row.html_archive_bucket.clone().unwrap(),
        ObjectKey::new(row.html_archive_key.clone().unwrap()).unwrap(),
    )
}

fn options(concurrency: usize, page_size: usize) -> ScrubOptions {
    ScrubOptions {
        concurrency,
        page_size,
        ..ScrubOptions::default()
    }
}

fn problems(report: &ScrubReport) -> BTreeMap<String, ScrubProblemKind> {
    report
        .problems
        .iter()
        .map(|p| (p.task_id.clone(), p.kind))
        .collect()
}

/// The task id in a task-HTML key `jobs/{job}/tasks/{task}/…`.
fn task_of(location: &Location) -> String {
    let parts: Vec<&str> = location.key.as_str().split('/').collect();
    let at = parts
        .iter()
        .position(|p| *p == "tasks")
        .expect("a task key");
    parts[at + 1].to_owned()
}

/// What a [`Watched`] store saw, and the faults it injects.
#[derive(Debug, Default)]
struct Watch {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Task ids whose `get` started, in order.
    fetched: Mutex<Vec<String>>,
    /// Task ids whose check finished (the `head` after a good read).
    finished: Mutex<BTreeSet<String>>,
    /// Per task id: `get` waits until this many checks have finished, so
    /// objects finish out of order without depending on timing.
    hold: Mutex<BTreeMap<String, usize>>,
    /// Per task id: `get` fails with this kind.
    fail: Mutex<BTreeMap<String, ErrorKind>>,
}

/// A store wrapper that counts concurrent reads and injects per-object
/// delays and errors (a test double of our own trait, for faults on command).
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn Store>,
    watch: Arc<Watch>,
}

impl Watched {
    fn wrap(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Arc<Watch>) {
        let watch = Arc::new(Watch::default());
        let store = Arc::new(Watched {
            inner,
            watch: watch.clone(),
        });
        (store, watch)
    }
}

#[async_trait]
impl Store for Watched {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    async fn ping(&self, bucket: &str) -> Result<()> {
        self.inner.ping(bucket).await
    }

    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        self.inner.put(location, body, options).await
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        let task = task_of(location);
        self.watch.fetched.lock().unwrap().push(task.clone());
        let now = self.watch.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.watch.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let hold = self.watch.hold.lock().unwrap().get(&task).copied();
        if let Some(until) = hold {
            while self.watch.finished.lock().unwrap().len() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let fail = self.watch.fail.lock().unwrap().get(&task).copied();
        let result = match fail {
            Some(kind) => Err(Error::new(kind, format!("injected {kind} for {task}"))),
            None => self.inner.get(location).await,
        };
        self.watch.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        let meta = self.inner.head(location).await;
        self.watch
            .finished
            .lock()
            .unwrap()
            .insert(task_of(location));
        meta
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        self.inner.delete(location).await
    }

    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        self.inner.delete_many(locations).await
    }
}

/// Catches: a scrub that trusts the catalog without reading (no missing),
/// that only checks existence (no corrupt), that confuses the two, or that
/// writes to the catalog.
#[tokio::test]
async fn scrub_reports_exactly_the_missing_and_the_corrupt_blob() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let rows = archived_set(&rig).await;
        let gone = &rows[2];
        let damaged = &rows[7];
        rig.cold.delete(&cold_location(gone)).await.unwrap();
        // Other bytes that are still valid gzip of other HTML.
        rig.cold
            .put(
                &cold_location(damaged),
                gzip(b"<html>someone else's page</html>"),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let status_before = rig.catalog.status(chrono::Utc::now()).await.unwrap();

        let report = scrub(rig.catalog.as_ref(), rig.cold.as_ref(), &options(3, 5))
            .await
            .unwrap();
        assert!(
            report.aborted.is_none(),
            "{backend:?}: {:?}",
            report.aborted
        );
        assert_eq!(
            (
                report.checked,
                report.ok,
                report.missing,
                report.corrupt,
                report.unreadable
            ),
            (12, 10, 1, 1, 0),
            "{backend:?}: {report:?}"
        );
        assert_eq!(
            problems(&report),
            BTreeMap::from([
                (gone.id.clone(), ScrubProblemKind::Missing),
                (damaged.id.clone(), ScrubProblemKind::Corrupt),
            ]),
            "{backend:?}"
        );
        let corrupt = report
            .problems
            .iter()
            .find(|p| p.kind == ScrubProblemKind::Corrupt)
            .unwrap();
        assert_eq!(corrupt.key, damaged.html_archive_key.clone().unwrap());
        assert!(corrupt.reason.contains("mismatch"), "{}", corrupt.reason);
        assert!(!report.is_clean());
        assert_eq!(report.last_checked.as_deref(), Some(rows[11].id.as_str()));
        // Every ok object was read in full (the corrupt one was read too).
        let ok_bytes: i64 = rows
            .iter()
            .filter(|r| r.id != gone.id && r.id != damaged.id)
            .map(|r| r.html_compressed_size_bytes.unwrap())
            .sum();
        assert!(report.bytes_read > ok_bytes as u64, "{backend:?}");

        // Read-only: the catalog says exactly what it said before.
        assert_eq!(
            all_archived(rig.catalog.as_ref()).await,
            rows,
            "{backend:?}"
        );
        assert_eq!(
            rig.catalog.status(chrono::Utc::now()).await.unwrap(),
            status_before
        );

        // Bytes that match the catalog but not the digest recorded at upload
        // (a stored-sha256 the store keeps): corrupt too. Copies made by
        // earlier versions carry it as `stored_sha256`, which is still read.
        let relabelled = [
            (&rows[9], meta::STORED_SHA256),
            (&rows[8], meta::LEGACY_STORED_SHA256),
        ];
        for (row, key) in relabelled {
            let location = cold_location(row);
            let bytes = rig.cold.get(&location).await.unwrap();
            let mut put = PutOptions::default();
            put.metadata.insert(key.to_owned(), "00".repeat(32));
            rig.cold.put(&location, bytes, &put).await.unwrap();
            let kept = rig.cold.head(&location).await.unwrap();
            assert!(
                kept.metadata.contains_key(key),
                "{backend:?}: the store drops user metadata"
            );
        }
        let report = scrub(rig.catalog.as_ref(), rig.cold.as_ref(), &options(3, 5))
            .await
            .unwrap();
        for (row, key) in relabelled {
            assert_eq!(
                problems(&report).get(&row.id),
                Some(&ScrubProblemKind::Corrupt),
                "{backend:?} {key}: {report:?}"
            );
        }
        assert_eq!(report.corrupt, 3);
    }
}

/// Catches: errors other than not-found counted as missing or corrupt (a
/// permission problem or a flaky network is not data loss), or kinds merged.
#[tokio::test]
async fn unreadable_objects_are_kept_apart_by_kind() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let rows = archived_set(&rig).await;
        let (cold, watch) = Watched::wrap(rig.cold.clone());
        watch.fail.lock().unwrap().extend([
            (rows[0].id.clone(), ErrorKind::PermissionDenied),
            (rows[5].id.clone(), ErrorKind::Transient),
            (rows[6].id.clone(), ErrorKind::NotFound),
        ]);
        let report = scrub(rig.catalog.as_ref(), cold.as_ref(), &options(4, 100))
            .await
            .unwrap();
        assert_eq!(
            problems(&report),
            BTreeMap::from([
                (
                    rows[0].id.clone(),
                    ScrubProblemKind::Unreadable(ErrorKind::PermissionDenied)
                ),
                (
                    rows[5].id.clone(),
                    ScrubProblemKind::Unreadable(ErrorKind::Transient)
                ),
                (rows[6].id.clone(), ScrubProblemKind::Missing),
            ]),
            "{backend:?}"
        );
        assert_eq!((report.ok, report.missing, report.unreadable), (9, 1, 2));
        assert_eq!(
            report.unreadable_by_kind,
            BTreeMap::from([("permission_denied", 1), ("transient", 1)])
        );
    }
}

/// Catches: `--job` ignored or leaking other jobs' rows; a sample that is
/// random per run, not a subset, or ignored.
#[tokio::test]
async fn job_and_sample_select_stable_subsets() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let rows = archived_set(&rig).await;

        let (cold, watch) = Watched::wrap(rig.cold.clone());
        let one_job = ScrubOptions {
            job: Some("j2".to_owned()),
            ..options(2, 3)
        };
        let report = scrub(rig.catalog.as_ref(), cold.as_ref(), &one_job)
            .await
            .unwrap();
        assert_eq!((report.checked, report.ok), (4, 4), "{backend:?}");
        let fetched: BTreeSet<String> = watch.fetched.lock().unwrap().iter().cloned().collect();
        assert_eq!(
            fetched,
            (1..=4).map(|n| format!("j2-t{n}")).collect::<BTreeSet<_>>()
        );

        let percent = 40.0;
        let expected: BTreeSet<String> = rows
            .iter()
            .map(|r| r.id.clone())
            .filter(|id| in_sample(id, percent))
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < rows.len(),
            "pick a percentage that splits these ids: {expected:?}"
        );
        let mut runs = Vec::new();
        for _ in 0..2 {
            let (cold, watch) = Watched::wrap(rig.cold.clone());
            let sampled = ScrubOptions {
                sample_percent: Some(percent),
                ..options(3, 5)
            };
            let report = scrub(rig.catalog.as_ref(), cold.as_ref(), &sampled)
                .await
                .unwrap();
            assert_eq!(report.checked as usize, expected.len());
            assert_eq!(report.checked + report.skipped, 12);
            // Passed-over rows still count as done for resuming.
            assert_eq!(report.last_checked.as_deref(), Some(rows[11].id.as_str()));
            let fetched: BTreeSet<String> = watch.fetched.lock().unwrap().iter().cloned().collect();
            runs.push(fetched);
        }
        assert_eq!(runs[0], expected, "{backend:?}");
        assert_eq!(
            runs[1], expected,
            "{backend:?}: the sample changed between runs"
        );
    }
}

/// Catches: a resume id past an object still in flight (objects finish out
/// of order: the held first object of each page is overtaken by the rest),
/// and `--after` that skips or repeats rows. The scrub is split in two at the
/// resume id it reported mid-way; together the halves check every row once.
#[tokio::test]
async fn after_resumes_exactly_where_the_report_says() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let rows = archived_set(&rig).await;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let page_size = 5;

        let (cold, watch) = Watched::wrap(rig.cold.clone());
        // The first object of each page (4 read at once) is held until the
        // three after it have finished: ids[0] until 3 are done, ids[5]
        // until 8, ids[10] until 11.
        watch.hold.lock().unwrap().extend([
            (ids[0].clone(), 3),
            (ids[5].clone(), 8),
            (ids[10].clone(), 11),
        ]);
        // Snapshot the resume id after 3 objects of the first page (the
        // held first one still in flight) and after 8.
        let mut snapshots: Vec<(Option<String>, BTreeSet<String>)> = Vec::new();
        let report = scrub_with_progress(
            rig.catalog.as_ref(),
            cold.as_ref(),
            &options(4, page_size),
            &Progress::new(),
            |report| {
                if report.checked == 3 || report.checked == 8 {
                    let finished = watch.finished.lock().unwrap().clone();
                    snapshots.push((report.last_checked.clone(), finished));
                }
            },
        )
        .await
        .unwrap();
        assert_eq!((report.checked, report.ok), (12, 12), "{backend:?}");
        assert_eq!(snapshots.len(), 2);
        // The first page's held first object was still running at 3.
        assert!(!snapshots[0].1.contains(&ids[0]), "{backend:?}: not held");
        assert_eq!(
            snapshots[0].0, None,
            "{backend:?}: resume id past a running object"
        );
        for (resume, finished) in &snapshots {
            if let Some(resume) = resume {
                for id in ids.iter().filter(|id| *id <= resume) {
                    assert!(
                        finished.contains(id),
                        "{backend:?}: resume id {resume} but {id} was not checked yet"
                    );
                }
            }
        }

        // Split at the resume id reported after 8: the second half checks
        // exactly the rows after it, so none is missed or checked twice.
        let resume = snapshots[1].0.clone().expect("a resume id after 8 objects");
        let (cold, watch) = Watched::wrap(rig.cold.clone());
        let second = ScrubOptions {
            after: Some(resume.clone()),
            ..options(4, page_size)
        };
        let report = scrub(rig.catalog.as_ref(), cold.as_ref(), &second)
            .await
            .unwrap();
        let mut fetched = watch.fetched.lock().unwrap().clone();
        fetched.sort();
        let first_half: Vec<String> = ids.iter().filter(|id| **id <= resume).cloned().collect();
        let mut both = first_half.clone();
        both.extend(fetched.iter().cloned());
        assert_eq!(both, ids, "{backend:?}: halves split at {resume}");
        assert_eq!(report.checked as usize, ids.len() - first_half.len());
        assert_eq!(report.last_checked.as_deref(), Some(ids[11].as_str()));
    }
}

/// Catches: unbounded fan-out (every object of a page fetched at once) and a
/// concurrency setting that is ignored in the other direction (serial reads).
#[tokio::test]
async fn reads_never_exceed_the_concurrency() {
    let rig = Rig::new(Backend::SqliteFs).await;
    archived_set(&rig).await;
    for concurrency in [1, 3] {
        let (cold, watch) = Watched::wrap(rig.cold.clone());
        let report = scrub(
            rig.catalog.as_ref(),
            cold.as_ref(),
            &options(concurrency, 12),
        )
        .await
        .unwrap();
        assert_eq!(report.ok, 12);
        assert_eq!(
            watch.max_in_flight.load(Ordering::SeqCst),
            concurrency,
            "concurrency {concurrency}"
        );
    }
}

/// Catches: `coldsweep verify` exiting 0 with a blob missing (cron would
/// never hear of it), or 1 when all is well; a summary without the problem.
#[tokio::test]
async fn verify_command_exits_zero_when_clean_and_one_with_a_missing_blob() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let rows = archived_set(&rig).await;
    let dir = rig.temp_dir().expect("the SQLite rig's folder");
    let verify = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.arg("verify")
            .args(args)
            .env(
                "DATABASE_URL",
                format!("sqlite:{}", dir.join("catalog.db").display()),
            )
            .env("ARCHIVE_PROVIDER", "fs")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_FS_ROOT", dir.join("cold"))
            .env("ARCHIVE_CONCURRENCY", "2");
        run(&mut cmd)
    };

    let ran = verify(&[]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("Checked 12 archived blobs in")
            && ran
                .stdout
                .contains("12 ok, 0 missing, 0 corrupt, 0 unreadable"),
        "{}",
        ran.show()
    );
    let last = &rows[11].id;
    assert!(
        ran.stdout.contains(&format!("resume with --after {last}")),
        "{}",
        ran.show()
    );

    let gone = &rows[4];
    rig.cold.delete(&cold_location(gone)).await.unwrap();
    let ran = verify(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    assert!(
        ran.stdout
            .contains("11 ok, 1 missing, 0 corrupt, 0 unreadable"),
        "{}",
        ran.show()
    );
    let key = gone.html_archive_key.as_deref().unwrap();
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.contains(&gone.id) && l.contains("missing") && l.contains(key)),
        "{}",
        ran.show()
    );

    // Another job's rows only: clean again.
    let ran = verify(&["--job", "j3"]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        ran.stdout.contains("Checked 4 archived blobs"),
        "{}",
        ran.show()
    );

    // Bad settings are 2, before anything is read.
    let ran = verify(&["--sample", "0"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stderr.contains("--sample"), "{}", ran.show());

    let ran = run(coldsweep().args(["verify", "--help"]));
    assert!(ran.stdout.contains("read-only"), "{}", ran.show());
}

/// Catches: a JSON report whose counts, problem or resume point differ from
/// what the scrub found, anything but that object on stdout, and a progress
/// bar drawn into a pipe.
#[tokio::test]
async fn verify_json_reports_each_problem_and_where_to_resume() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let rows = archived_set(&rig).await;
    let dir = rig.temp_dir().expect("the SQLite rig's folder");
    let verify = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.arg("verify")
            .arg("--json")
            .args(args)
            .env(
                "DATABASE_URL",
                format!("sqlite:{}", dir.join("catalog.db").display()),
            )
            .env("ARCHIVE_PROVIDER", "fs")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_FS_ROOT", dir.join("cold"));
        run(&mut cmd)
    };
    let gone = &rows[4];
    rig.cold.delete(&cold_location(gone)).await.unwrap();
    let stored = |row: &TaskRow| row.html_compressed_size_bytes.unwrap();

    let ran = verify(&[]);
    assert_eq!(ran.code, Some(1), "{}", ran.show());
    let json = json_of(&ran);
    assert!(
        !ran.stderr.contains('\r') && !ran.stderr.contains('\x1b'),
        "{}",
        ran.show()
    );
    assert_eq!(json["target"], "fs:cold-archive", "{json}");
    assert_eq!(json["checked"], 12, "{json}");
    assert_eq!(json["ok"], 11, "{json}");
    assert_eq!(json["missing"], 1, "{json}");
    assert_eq!(json["corrupt"], 0, "{json}");
    assert_eq!(json["unreadable"], 0, "{json}");
    assert_eq!(json["unreadable_by_kind"], serde_json::json!({}), "{json}");
    assert_eq!(json["skipped"], 0, "{json}");
    let read: i64 = rows.iter().filter(|r| r.id != gone.id).map(stored).sum();
    assert_eq!(json["bytes_read"], read, "{json}");
    assert_eq!(json["after"], rows[11].id.as_str(), "{json}");
    assert_eq!(json["aborted"], serde_json::Value::Null, "{json}");
    for asked in ["job", "sample_percent", "started_after"] {
        assert_eq!(json[asked], serde_json::Value::Null, "{asked}: {json}");
    }
    assert_utc_time(&json["started_at"]);
    assert_utc_time(&json["finished_at"]);
    assert_eq!(
        json["problems"],
        serde_json::json!([{
            "task_id": gone.id,
            "job_id": gone.job_id,
            "bucket": COLD_BUCKET,
            "key": gone.html_archive_key,
            "kind": "missing",
            "error_kind": null,
            "reason": "no object at this key in the cold store",
        }]),
        "{json}"
    );

    // Resumed after the problem, within one job: clean, exit 0.
    let ran = verify(&["--job", "j3", "--after", &rows[8].id]);
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let json = json_of(&ran);
    assert_eq!(json["job"], "j3", "{json}");
    assert_eq!(json["started_after"], rows[8].id.as_str(), "{json}");
    assert_eq!(
        (json["checked"].as_u64(), json["ok"].as_u64()),
        (Some(3), Some(3)),
        "{json}"
    );
    assert_eq!(json["problems"], serde_json::json!([]), "{json}");

    // A bad setting is still exit 2 with text on stderr, and nothing on stdout.
    let ran = verify(&["--sample", "0"]);
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(ran.stdout.is_empty(), "{}", ran.show());
    assert!(ran.stderr.contains("--sample"), "{}", ran.show());
}

/// Catches: progress counters that miss objects, count bytes never read,
/// or count a missing blob as fine.
#[tokio::test]
async fn scrub_counts_every_object_in_its_progress() {
    let rig = Rig::new(Backend::SqliteFs).await;
    let rows = archived_set(&rig).await;
    let gone = &rows[2];
    rig.cold.delete(&cold_location(gone)).await.unwrap();
    let progress = Progress::new();
    let report = scrub_with_progress(
        rig.catalog.as_ref(),
        rig.cold.as_ref(),
        &options(3, 5),
        &progress,
        |_| {},
    )
    .await
    .unwrap();
    let read: u64 = rows
        .iter()
        .filter(|r| r.id != gone.id)
        .map(|r| r.html_compressed_size_bytes.unwrap() as u64)
        .sum();
    assert_eq!(
        progress.snapshot(),
        Snapshot {
            total: None,
            objects: 12,
            bytes: read,
            problems: 1
        }
    );
    assert_eq!(report.bytes_read, read);
}
