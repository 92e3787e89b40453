//! The catalog conformance suite.
//!
//! Each check is a `pub async fn` over a `&dyn Fixtures` (a catalog that
//! can also be seeded with rows), run against both
//! backends by one line each at the bottom, so a new backend is proven by
//! adding lines. Time is injected through [`Lease::now`] and `retry_at`;
//! nothing sleeps. Postgres-only checks cover what SQLite cannot do:
//! concurrent claimers and migrating an application's existing schema.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{
    BlobState, BucketBytes, Catalog, CatalogStatus, Column, Condition, Fence, JobRow, Lease,
    ResetFilter, ResetState, TableName, TableSchema, TaskRow, TypeFamily, Verdict,
};
use coldsweep::rules::{self, Decision, MoveRule, Rules, Scope, StayReason};
use coldsweep::source::{ArchiveCandidate, ArchiveSource, ArchivedAt, TaskHtmlSource};
use coldsweep::{Error, ErrorKind};
use sqlx::{Connection, Executor, Row};
use uuid::Uuid;

use crate::harness::pg::{fresh_database, pg_catalog, sqlite_catalog, sqlite_database};

const ORG_A: Uuid = Uuid::from_u128(0x0a0a_0a0a_0a0a_4a0a_8a0a_0a0a_0a0a_0a0a);
const ORG_B: Uuid = Uuid::from_u128(0x0b0b_0b0b_0b0b_4b0b_8b0b_0b0b_0b0b_0b0b);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn minutes(m: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(m)
}

/// A "now" far after every fixture time; `n` days further for each round.
fn later(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(1000 + n)
}

fn lease(owner: &str, now: DateTime<Utc>) -> Lease {
    Lease {
        owner: owner.to_owned(),
        free_before: now,
        until: now + Duration::minutes(10),
    }
}

/// The fence of `owner`'s writes at `now`.
fn fence(owner: &str, now: DateTime<Utc>) -> Fence<'_> {
    Fence { owner, now }
}

fn job(
    id: &str,
    domain_id: i32,
    organisation_id: Option<Uuid>,
    status: &str,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
) -> JobRow {
    JobRow {
        id: id.to_owned(),
        domain_id,
        organisation_id,
        status: status.to_owned(),
        created_at,
        completed_at,
    }
}

/// A task whose HTML is hot; every column distinct per task so a mixed-up
/// column shows.
fn hot_task(job_id: &str, id: &str) -> TaskRow {
    TaskRow {
        id: id.to_owned(),
        job_id: job_id.to_owned(),
        html_storage_bucket: Some("hot-bucket".to_owned()),
        html_storage_path: Some(format!("jobs/{job_id}/tasks/{id}/page-content.html.gz")),
        html_content_type: Some("text/html; charset=utf-8".to_owned()),
        html_content_encoding: Some("gzip".to_owned()),
        html_size_bytes: Some(4000 + id.len() as i64),
        html_compressed_size_bytes: Some(1000 + id.len() as i64),
        html_sha256: Some(format!("{:0>64}", hex::encode(id))),
        html_captured_at: Some(minutes(1)),
        ..TaskRow::default()
    }
}

/// `task` switched to cold and its hot copy gone.
fn archived(mut task: TaskRow) -> TaskRow {
    task = pending(task);
    task.html_storage_bucket = None;
    task.html_storage_path = None;
    task
}

/// `task` switched to cold, hot copy not yet deleted.
fn pending(mut task: TaskRow) -> TaskRow {
    task.html_archive_provider = Some("r2".to_owned());
    task.html_archive_bucket = Some("cold-bucket".to_owned());
    task.html_archive_key = Some(format!("cold/{}", task.id));
    task.html_archived_at = Some(minutes(2));
    task
}

fn no_html(job_id: &str, id: &str) -> TaskRow {
    TaskRow {
        id: id.to_owned(),
        job_id: job_id.to_owned(),
        ..TaskRow::default()
    }
}

/// The jobs a sweep at `now` moves under retention `n` alone, in its order.
async fn retention_moves(db: &dyn Catalog, n: u32, now: DateTime<Utc>) -> Vec<String> {
    let rules = Rules::retention(n);
    let standings = db.job_standings(rules.scope(), now).await.unwrap();
    rules::decide(&standings, &rules, now).moving_ids()
}

fn ids(candidates: &[ArchiveCandidate]) -> Vec<String> {
    candidates.iter().map(|c| c.task_id.clone()).collect()
}

fn id_set(candidates: &[ArchiveCandidate]) -> BTreeSet<String> {
    candidates.iter().map(|c| c.task_id.clone()).collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn assert_kind<T: std::fmt::Debug>(result: Result<T, Error>, kind: ErrorKind, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected a {kind} error, got {v:?}"),
    }
}

/// Jobs of the retention fixture, newest first within each group:
///
/// | group      | job | status    | created | completed   | rank |
/// |------------|-----|-----------|---------|-------------|------|
/// | d1 / A     | z1  | archived  | 0       | 3000        | –    |
/// |            | a7  | completed | 0       | 300         | 1    |
/// |            | a5  | completed | 210     | 240         | 2    |
/// |            | a4  | completed | 210     | 240         | 3    |
/// |            | a3  | cancelled | 180     | –           | 4    |
/// |            | a2  | failed    | 60      | 120         | 5    |
/// |            | a0  | completed | 0       | 30 + 1 µs   | 6    |
/// |            | a1  | completed | 0       | 30          | 7    |
/// |            | a6  | running   | -600    | –           | –    |
/// | d1 / B     | b2, b1: completed at 120, 60                 |
/// | d1 / NULL  | n3 (failed), n2, n1: at 180, 120, 60         |
/// | d2 / A     | c1: completed at 60                          |
///
/// Times in minutes. a4/a5 tie on time (id breaks it); a3 has no
/// completed_at (created_at counts); a7 was created first but completed
/// last; a0/a1 differ by a microsecond.
async fn retention_fixture(db: &dyn Fixtures) {
    let us = Duration::microseconds(1);
    let jobs = [
        job(
            "a1",
            1,
            Some(ORG_A),
            "completed",
            minutes(0),
            Some(minutes(30)),
        ),
        job(
            "a0",
            1,
            Some(ORG_A),
            "completed",
            minutes(0),
            Some(minutes(30) + us),
        ),
        job(
            "a2",
            1,
            Some(ORG_A),
            "failed",
            minutes(60),
            Some(minutes(120)),
        ),
        job("a3", 1, Some(ORG_A), "cancelled", minutes(180), None),
        job(
            "a4",
            1,
            Some(ORG_A),
            "completed",
            minutes(210),
            Some(minutes(240)),
        ),
        job(
            "a5",
            1,
            Some(ORG_A),
            "completed",
            minutes(210),
            Some(minutes(240)),
        ),
        job(
            "a7",
            1,
            Some(ORG_A),
            "completed",
            minutes(0),
            Some(minutes(300)),
        ),
        job("a6", 1, Some(ORG_A), "running", minutes(-600), None),
        job(
            "z1",
            1,
            Some(ORG_A),
            "archived",
            minutes(0),
            Some(minutes(3000)),
        ),
        job(
            "b1",
            1,
            Some(ORG_B),
            "completed",
            minutes(0),
            Some(minutes(60)),
        ),
        job(
            "b2",
            1,
            Some(ORG_B),
            "completed",
            minutes(0),
            Some(minutes(120)),
        ),
        job("n1", 1, None, "completed", minutes(0), Some(minutes(60))),
        job("n2", 1, None, "completed", minutes(0), Some(minutes(120))),
        job("n3", 1, None, "failed", minutes(0), Some(minutes(180))),
        job(
            "c1",
            2,
            Some(ORG_A),
            "completed",
            minutes(0),
            Some(minutes(60)),
        ),
    ];
    for job in &jobs {
        db.insert_job(job).await.expect("insert job");
        for n in 1..=2 {
            let task = hot_task(&job.id, &format!("{}-t{n}", job.id));
            db.insert_task(&task).await.expect("insert task");
        }
    }
    // a1, the oldest job, also holds one task of every other kind.
    let mut no_bucket = hot_task("a1", "a1-nobucket");
    no_bucket.html_storage_bucket = None;
    let mut quarantined = hot_task("a1", "a1-quar");
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut lost = hot_task("a1", "a1-lost");
    lost.html_archive_state = Some("lost".to_owned());
    for task in [
        no_html("a1", "a1-nohtml"),
        no_bucket,
        quarantined,
        lost,
        archived(hot_task("a1", "a1-done")),
        pending(hot_task("a1", "a1-pending")),
    ] {
        db.insert_task(&task).await.expect("insert task");
    }
}

/// Jobs whose HTML may move, per `retention_jobs`, in the fixture above.
const ELIGIBLE: [(u32, &[&str]); 7] = [
    (
        0,
        &[
            "a1", "a0", "a2", "a3", "a4", "a5", "a7", "b1", "b2", "n1", "n2", "n3", "c1",
        ],
    ),
    (1, &["a1", "a0", "a2", "a3", "a4", "a5", "b1", "n1", "n2"]),
    (2, &["a1", "a0", "a2", "a3", "a4", "n1"]),
    (3, &["a1", "a0", "a2", "a3"]),
    (6, &["a1"]),
    (7, &[]),
    (100, &[]),
];

/// The claimable tasks of `jobs`.
fn eligible_tasks(jobs: &[&str]) -> BTreeSet<String> {
    let mut tasks: BTreeSet<String> = jobs
        .iter()
        .flat_map(|job| [format!("{job}-t1"), format!("{job}-t2")])
        .collect();
    if jobs.contains(&"a1") {
        tasks.insert("a1-pending".to_owned());
    }
    tasks
}

/// Before `migrate`, `check_migrations` says to run it; `migrate` twice is
/// fine and keeps data. Takes an unmigrated catalog.
pub(crate) async fn migrations_are_checked_and_idempotent(db: &dyn Fixtures) {
    let err = db
        .check_migrations()
        .await
        .expect_err("check_migrations on an empty database");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("coldsweep migrate"), "{err}");

    db.migrate().await.expect("first migrate");
    db.check_migrations().await.expect("check after migrate");
    db.insert_job(&job("j", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    db.insert_task(&hot_task("j", "j-t1")).await.unwrap();
    db.migrate().await.expect("second migrate");
    db.check_migrations()
        .await
        .expect("check after the second migrate");
    assert_eq!(db.job_retention().await.unwrap().len(), 1);
    assert_eq!(db.task("j-t1").await.unwrap(), Some(hot_task("j", "j-t1")));
}

/// Every column of a task and a job reads back as written.
pub(crate) async fn rows_round_trip(db: &dyn Fixtures) {
    let full_job = job(
        "j1",
        7,
        Some(ORG_B),
        "completed",
        minutes(5) + Duration::microseconds(123_456),
        Some(minutes(9) + Duration::microseconds(654_321)),
    );
    let bare_job = job("j2", -3, None, "running", minutes(-5), None);
    db.insert_job(&full_job).await.unwrap();
    db.insert_job(&bare_job).await.unwrap();

    let full = TaskRow {
        id: "t-full".to_owned(),
        job_id: "j1".to_owned(),
        html_storage_bucket: Some("b".to_owned()),
        html_storage_path: Some("p".to_owned()),
        html_content_type: Some("ct".to_owned()),
        html_content_encoding: Some("ce".to_owned()),
        html_size_bytes: Some(1 << 40),
        html_compressed_size_bytes: Some(12),
        html_sha256: Some("s".to_owned()),
        html_captured_at: Some(minutes(3) + Duration::microseconds(7)),
        html_archive_provider: Some("ap".to_owned()),
        html_archive_bucket: Some("ab".to_owned()),
        html_archive_key: Some("ak".to_owned()),
        html_archived_at: Some(minutes(4)),
        html_archive_state: Some("quarantined".to_owned()),
        html_archive_error: Some("ae".to_owned()),
        html_archive_attempts: 7,
        html_missing_since: Some(minutes(5)),
        html_lease_expires_at: Some(minutes(6)),
    };
    let bare = no_html("j2", "t-bare");
    db.insert_task(&full).await.unwrap();
    db.insert_task(&bare).await.unwrap();
    assert_eq!(db.task("t-full").await.unwrap(), Some(full));
    assert_eq!(db.task("t-bare").await.unwrap(), Some(bare));
    assert_eq!(db.task("t-missing").await.unwrap(), None);

    let jobs: BTreeMap<String, JobRow> = db
        .job_retention()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.job.id.clone(), r.job))
        .collect();
    assert_eq!(jobs["j1"], full_job);
    assert_eq!(jobs["j2"], bare_job);

    // A task must belong to a job.
    assert!(db.insert_task(&no_html("nope", "t-orphan")).await.is_err());
}

/// Ranks, `eligible()` and the claimed task set follow the retention rule.
pub(crate) async fn retention_rule(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let retention = db.job_retention().await.unwrap();

    let ranks: BTreeMap<&str, Option<i64>> = retention
        .iter()
        .map(|r| (r.job.id.as_str(), r.rank))
        .collect();
    let expected: BTreeMap<&str, Option<i64>> = [
        ("a7", Some(1)),
        ("a5", Some(2)),
        ("a4", Some(3)),
        ("a3", Some(4)),
        ("a2", Some(5)),
        ("a0", Some(6)),
        ("a1", Some(7)),
        ("a6", None),
        ("z1", None),
        ("b2", Some(1)),
        ("b1", Some(2)),
        ("n3", Some(1)),
        ("n2", Some(2)),
        ("n1", Some(3)),
        ("c1", Some(1)),
    ]
    .into_iter()
    .collect();
    assert_eq!(ranks, expected, "{}", db.backend());

    // Newest first within a group.
    let group_a: Vec<&str> = retention
        .iter()
        .filter(|r| r.job.domain_id == 1 && r.job.organisation_id == Some(ORG_A))
        .filter(|r| r.rank.is_some())
        .map(|r| r.job.id.as_str())
        .collect();
    assert_eq!(group_a, ["a7", "a5", "a4", "a3", "a2", "a0", "a1"]);

    // Task counts of the job holding one task of every kind.
    let a1 = retention.iter().find(|r| r.job.id == "a1").unwrap();
    // t1, t2, nobucket, pending and the quarantined one still have hot HTML.
    assert_eq!(
        (
            a1.hot_tasks,
            a1.archived_tasks,
            a1.quarantined_tasks,
            a1.lost_tasks
        ),
        (5, 1, 1, 1),
        "{}",
        db.backend()
    );
    // Bytes a sweep may move: hot rows, not the quarantined or lost ones.
    let movable: i64 = ["a1-t1", "a1-t2", "a1-nobucket", "a1-pending"]
        .iter()
        .map(|id| hot_task("a1", id).html_compressed_size_bytes.unwrap())
        .sum();
    assert_eq!(a1.hot_bytes, movable, "{}", db.backend());

    for (round, (retention_jobs, jobs)) in ELIGIBLE.iter().enumerate() {
        let eligible_jobs: BTreeSet<String> = retention
            .iter()
            .filter(|r| r.eligible(*retention_jobs))
            .map(|r| r.job.id.clone())
            .collect();
        assert_eq!(
            eligible_jobs,
            strings(jobs),
            "eligible() at {retention_jobs}"
        );

        // Each round starts after the previous round's leases ran out.
        let now = later(round as i64);
        let claimed = db
            .claim_task_html(*retention_jobs, 1000, &lease("w", now))
            .await
            .unwrap();
        assert_eq!(
            id_set(&claimed),
            eligible_tasks(jobs),
            "claimed with retention {retention_jobs} on {}",
            db.backend()
        );
    }

    // A claimed candidate carries its row as stored.
    let claimed = db
        .claim_task_html(6, 10, &lease("w", later(50)))
        .await
        .unwrap();
    let t1 = hot_task("a1", "a1-t1");
    let expected_t1 = ArchiveCandidate {
        task_id: t1.id.clone(),
        job_id: t1.job_id.clone(),
        storage_bucket: t1.html_storage_bucket.clone().unwrap(),
        storage_path: t1.html_storage_path.clone().unwrap(),
        sha256: t1.html_sha256.clone(),
        compressed_size_bytes: t1.html_compressed_size_bytes,
        size_bytes: t1.html_size_bytes,
        content_type: t1.html_content_type.clone(),
        content_encoding: t1.html_content_encoding.clone(),
        archived_at: None,
        attempts: 0,
        // Claimed by each retention round above, and now.
        claims: 6,
        missing_since: None,
        digest: None,
        cold_name: None,
    };
    assert!(claimed.contains(&expected_t1), "{claimed:#?}");
    // A row already switched to cold comes back with where it went.
    let pending_row = claimed.iter().find(|c| c.task_id == "a1-pending").unwrap();
    assert_eq!(
        pending_row.archived_at,
        Some(ArchivedAt {
            provider: "r2".to_owned(),
            bucket: "cold-bucket".to_owned(),
            key: "cold/a1-pending".to_owned(),
        })
    );
}

/// Claims come oldest job first; a lease hides rows until it ends.
pub(crate) async fn claims_lease_rows(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let all = eligible_tasks(ELIGIBLE[0].1);

    let first = db.claim_task_html(0, 2, &lease("w1", now)).await.unwrap();
    assert_eq!(ids(&first), ["a1-pending", "a1-t1"], "{}", db.backend());
    let second = db.claim_task_html(0, 1, &lease("w1", now)).await.unwrap();
    assert_eq!(ids(&second), ["a1-t2"]);
    // a1 has rows left, none claimable: it must not hold the next claim up.
    let third = db.claim_task_html(0, 1, &lease("w1", now)).await.unwrap();
    assert_eq!(ids(&third), ["a0-t1"], "{}", db.backend());

    let rest = db
        .claim_task_html(0, 1000, &lease("w2", now))
        .await
        .unwrap();
    let mut expected_rest = all.clone();
    for taken in ["a1-pending", "a1-t1", "a1-t2", "a0-t1"] {
        expected_rest.remove(taken);
    }
    assert_eq!(id_set(&rest), expected_rest);
    assert_eq!(rest.len(), expected_rest.len(), "a row claimed twice");
    let mut job_order: Vec<&str> = rest.iter().map(|c| c.job_id.as_str()).collect();
    job_order.dedup();
    assert_eq!(
        job_order,
        [
            "a0", "b1", "c1", "n1", "a2", "b2", "n2", "a3", "n3", "a4", "a5", "a7"
        ],
        "oldest job first on {}",
        db.backend()
    );

    assert!(
        db.claim_task_html(0, 1000, &lease("w3", now))
            .await
            .unwrap()
            .is_empty()
    );
    let until = now + Duration::minutes(10);
    assert!(
        db.claim_task_html(0, 1000, &lease("w3", until))
            .await
            .unwrap()
            .is_empty(),
        "a lease holds up to its end"
    );
    let status = db.status(now).await.unwrap();
    assert_eq!(status.leased, all.len() as i64);
    assert_eq!(
        db.status(until + Duration::seconds(1))
            .await
            .unwrap()
            .leased,
        0
    );

    let again = db
        .claim_task_html(0, 1000, &lease("w3", until + Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(id_set(&again), all, "expired leases free their rows");
    assert!(
        db.claim_task_html(0, 0, &lease("w4", later(9)))
            .await
            .unwrap()
            .is_empty()
    );
}

/// `release` counts the attempt, keeps the error and hides the row until `retry_at`.
pub(crate) async fn release_backs_off(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let all = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();

    db.release(
        "a1-t1",
        fence("w", now),
        "upload failed: 503",
        now + Duration::minutes(1),
    )
    .await
    .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.html_archive_attempts, 1);
    assert_eq!(
        row.html_archive_error.as_deref(),
        Some("upload failed: 503")
    );
    assert_eq!(row.state(), BlobState::Hot);

    let early = now + Duration::seconds(30);
    assert!(
        db.claim_task_html(0, 1000, &lease("w", early))
            .await
            .unwrap()
            .is_empty()
    );
    let after = now + Duration::minutes(2);
    let retried = db
        .claim_task_html(0, 1000, &lease("w", after))
        .await
        .unwrap();
    assert_eq!(
        ids(&retried),
        ["a1-t1"],
        "only the released row, once its back-off ends"
    );

    db.release(
        "a1-t1",
        fence("w", after),
        "again",
        now + Duration::minutes(3),
    )
    .await
    .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.html_archive_attempts, 2);
    assert_eq!(row.html_archive_error.as_deref(), Some("again"));

    let status = db.status(after).await.unwrap();
    assert_eq!(status.failing, 1);
    assert_eq!(
        status.leased,
        all.len() as i64 - 1,
        "a back-off is not a lease"
    );
}

/// `record_archived` then `clear_hot` leave an archived row; a row switched
/// to cold but still hot is claimed with its cold location.
pub(crate) async fn archive_then_clear_hot(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let all = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();
    let key = "prefix/jobs/a1/tasks/a1-t1/page-content.html.gz";

    db.record_archived("a1-t1", fence("w", now), "s3", "cold", key)
        .await
        .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.state(), BlobState::Hot, "the hot reference stays");
    assert_eq!(
        row.html_storage_path,
        hot_task("a1", "a1-t1").html_storage_path
    );
    assert_eq!(
        (
            row.html_archive_provider.as_deref(),
            row.html_archive_bucket.as_deref(),
            row.html_archive_key.as_deref(),
            row.html_archived_at
        ),
        (Some("s3"), Some("cold"), Some(key), Some(now))
    );
    assert_eq!(db.status(now).await.unwrap().pending_hot_delete, 2);

    // The hot delete failed: the next claim knows the cold copy exists.
    db.release("a1-t1", fence("w", now), "hot delete failed", now)
        .await
        .unwrap();
    let resumed = now + Duration::seconds(1);
    let retried = db
        .claim_task_html(0, 1000, &lease("w", resumed))
        .await
        .unwrap();
    assert_eq!(ids(&retried), ["a1-t1"]);
    assert_eq!(
        retried[0].archived_at,
        Some(ArchivedAt {
            provider: "s3".to_owned(),
            bucket: "cold".to_owned(),
            key: key.to_owned(),
        })
    );

    // A resumed move records the same location again: the first switch time stays.
    db.record_archived("a1-t1", fence("w", resumed), "s3", "cold", key)
        .await
        .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.html_archived_at, Some(now), "{}", db.backend());
    db.clear_hot("a1-t1", fence("w", resumed)).await.unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.state(), BlobState::Archived);
    assert_eq!(
        (row.html_storage_bucket, row.html_storage_path),
        (None, None)
    );
    assert_eq!(row.html_archive_error, None, "clear_hot clears the error");
    assert_eq!(row.html_archive_key.as_deref(), Some(key));
    let status = db.status(now).await.unwrap();
    assert_eq!(
        status.leased,
        all.len() as i64 - 1,
        "clear_hot ends the lease"
    );
    let later_claim = db
        .claim_task_html(0, 1000, &lease("w", later(1)))
        .await
        .unwrap();
    assert!(!id_set(&later_claim).contains("a1-t1"));

    // Clearing a row never switched to cold would leave it pointing nowhere.
    assert_kind(
        db.clear_hot("a1-t2", fence("w", now)).await,
        ErrorKind::Integrity,
        "clear_hot before record_archived",
    );
    assert_eq!(
        db.task("a1-t2").await.unwrap().unwrap().state(),
        BlobState::Hot
    );

    let at = minutes(1);
    assert_kind(
        db.record_archived("nope", fence("w", at), "s3", "b", "k")
            .await,
        ErrorKind::NotFound,
        "record_archived",
    );
    assert_kind(
        db.clear_hot("nope", fence("w", at)).await,
        ErrorKind::NotFound,
        "clear_hot",
    );
    assert_kind(
        db.release("nope", fence("w", at), "e", at).await,
        ErrorKind::NotFound,
        "release",
    );
    assert_kind(
        db.mark_state("nope", fence("w", at), Verdict::Lost, "r")
            .await,
        ErrorKind::NotFound,
        "mark_state",
    );
}

/// Lost and quarantined rows are recorded with a reason and never claimed.
pub(crate) async fn lost_and_quarantined(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let all = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();

    db.mark_state("a1-t1", fence("w", now), Verdict::Lost, "in neither store")
        .await
        .unwrap();
    db.mark_state(
        "a1-t2",
        fence("w", now),
        Verdict::Quarantined,
        "sha256 mismatch",
    )
    .await
    .unwrap();
    let lost = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(lost.state(), BlobState::Lost);
    assert_eq!(lost.html_archive_error.as_deref(), Some("in neither store"));
    let quarantined = db.task("a1-t2").await.unwrap().unwrap();
    assert_eq!(quarantined.state(), BlobState::Quarantined);
    assert_eq!(
        quarantined.html_archive_error.as_deref(),
        Some("sha256 mismatch")
    );
    assert!(
        quarantined.html_storage_path.is_some(),
        "quarantine keeps the blob hot"
    );
    assert_eq!(
        db.status(now).await.unwrap().leased,
        all.len() as i64 - 2,
        "mark_state ends the lease"
    );

    let claimed = db
        .claim_task_html(0, 1000, &lease("w", later(1)))
        .await
        .unwrap();
    let mut expected = eligible_tasks(ELIGIBLE[0].1);
    expected.remove("a1-t1");
    expected.remove("a1-t2");
    assert_eq!(id_set(&claimed), expected);

    let mut unchanged = db.task("a0-t1").await.unwrap().unwrap();
    assert!(unchanged.html_lease_expires_at.is_some(), "claimed above");
    unchanged.html_lease_expires_at = None;
    assert_eq!(unchanged, hot_task("a0", "a0-t1"));

    let in_state = |rows: Vec<TaskRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        in_state(db.tasks_in_state(BlobState::Lost, 10).await.unwrap()),
        ["a1-lost", "a1-t1"]
    );
    assert_eq!(
        in_state(db.tasks_in_state(BlobState::Quarantined, 10).await.unwrap()),
        ["a1-quar", "a1-t2"]
    );
    assert_eq!(
        in_state(db.tasks_in_state(BlobState::None, 10).await.unwrap()),
        ["a1-nohtml"]
    );
    assert_eq!(
        in_state(db.tasks_in_state(BlobState::Archived, 10).await.unwrap()),
        ["a1-done"]
    );
    assert_eq!(
        in_state(db.tasks_in_state(BlobState::Hot, 3).await.unwrap()),
        ["a0-t1", "a0-t2", "a1-nobucket"]
    );
    let hot = db.tasks_in_state(BlobState::Hot, 1000).await.unwrap();
    assert!(hot.iter().all(|r| r.state() == BlobState::Hot));
    // 15 jobs × 2, less a1-t1/t2, plus a1-nobucket and a1-pending.
    assert_eq!(hot.len(), 30);
}

/// The job marker archives exactly the terminal jobs with no HTML left hot,
/// none lost or quarantined, and at least one task archived.
pub(crate) async fn job_marker(db: &dyn Fixtures) {
    let cases: [(&str, &str, Vec<TaskRow>, bool); 10] = [
        ("m-all", "completed", vec![], true),
        ("m-failed", "failed", vec![], true),
        (
            "m-nohtml",
            "cancelled",
            vec![no_html("m-nohtml", "m-nohtml-x")],
            true,
        ),
        (
            "m-hot",
            "completed",
            vec![hot_task("m-hot", "m-hot-x")],
            false,
        ),
        (
            "m-pending",
            "completed",
            vec![pending(hot_task("m-pending", "m-pending-x"))],
            false,
        ),
        ("m-quar", "completed", vec![], false),
        ("m-lost", "completed", vec![], false),
        ("m-running", "running", vec![], false),
        ("m-none", "completed", vec![], false),
        ("m-empty", "completed", vec![], false),
    ];
    for (id, status, extra, _) in &cases {
        db.insert_job(&job(id, 9, None, status, minutes(0), Some(minutes(1))))
            .await
            .unwrap();
        // Every job but the last two has one archived task.
        if !matches!(*id, "m-none" | "m-empty") {
            db.insert_task(&archived(hot_task(id, &format!("{id}-a"))))
                .await
                .unwrap();
        }
        for task in extra {
            db.insert_task(task).await.unwrap();
        }
    }
    db.insert_task(&no_html("m-none", "m-none-x"))
        .await
        .unwrap();
    let mut quarantined = hot_task("m-quar", "m-quar-x");
    quarantined.html_archive_state = Some("quarantined".to_owned());
    db.insert_task(&quarantined).await.unwrap();
    // A lost blob whose hot reference was cleared still holds its job back.
    let mut lost = no_html("m-lost", "m-lost-x");
    lost.html_archive_state = Some("lost".to_owned());
    db.insert_task(&lost).await.unwrap();

    assert_eq!(
        db.mark_archived_jobs().await.unwrap(),
        3,
        "{}",
        db.backend()
    );
    let statuses: BTreeMap<String, String> = db
        .job_retention()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.job.id, r.job.status))
        .collect();
    for (id, status, _, archived) in &cases {
        let expected = if *archived { "archived" } else { status };
        assert_eq!(statuses[*id], expected, "job {id} on {}", db.backend());
    }
    assert_eq!(
        db.mark_archived_jobs().await.unwrap(),
        0,
        "marking is idempotent"
    );

    // Once its last hot task moves, the job follows.
    let now = later(0);
    let claimed = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();
    assert!(id_set(&claimed).contains("m-hot-x"));
    db.record_archived("m-hot-x", fence("w", now), "r2", "cold", "k")
        .await
        .unwrap();
    assert_eq!(
        db.mark_archived_jobs().await.unwrap(),
        0,
        "still hot until deleted"
    );
    db.clear_hot("m-hot-x", fence("w", now)).await.unwrap();
    assert_eq!(db.mark_archived_jobs().await.unwrap(), 1);
    assert_eq!(db.status(later(0)).await.unwrap().archived_jobs, 4);
}

/// `status` counts each kind of row once.
pub(crate) async fn status_counts(db: &dyn Fixtures) {
    db.insert_job(&job("s1", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    db.insert_job(&job("s2", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    db.insert_job(&job("s3", 1, None, "completed", minutes(5), None))
        .await
        .unwrap();
    let mut quarantined = hot_task("s1", "s1-q");
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut lost = hot_task("s1", "s1-l");
    lost.html_archive_state = Some("lost".to_owned());
    let now = later(0);
    // Released after a failure; its back-off already over.
    let mut failing = hot_task("s1", "s1-h1");
    failing.html_archive_error = Some("timeout".to_owned());
    failing.html_archive_attempts = 1;
    failing.html_lease_expires_at = Some(now - Duration::minutes(1));
    for task in [
        failing,
        hot_task("s1", "s1-h2"),
        hot_task("s1", "s1-h3"),
        pending(hot_task("s1", "s1-p")),
        archived(hot_task("s1", "s1-a1")),
        archived(hot_task("s1", "s1-a2")),
        quarantined,
        lost,
        no_html("s1", "s1-n"),
        archived(hot_task("s2", "s2-a")),
        hot_task("s3", "s3-h"),
    ] {
        db.insert_task(&task).await.unwrap();
    }
    let claimed = db.claim_task_html(1, 2, &lease("w", now)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(db.mark_archived_jobs().await.unwrap(), 1);

    assert_eq!(
        db.status(now).await.unwrap(),
        CatalogStatus {
            hot: 4,
            pending_hot_delete: 1,
            archived: 3,
            quarantined: 1,
            missing: 0,
            lost: 1,
            leased: 2,
            failing: 1,
            waiting: 0,
            archived_jobs: 1,
        },
        "{}",
        db.backend()
    );
    assert_eq!(db.status(later(1)).await.unwrap().leased, 0);
}

/// `hot_buckets` lists each bucket of truly hot rows once, bytewise, with a
/// count and the bytewise-smallest path, and honours its limit.
pub(crate) async fn hot_buckets_are_listed_once(db: &dyn Fixtures) {
    db.insert_job(&job("h1", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    let in_bucket = |id: &str, bucket: Option<&str>, path: &str| TaskRow {
        html_storage_bucket: bucket.map(str::to_owned),
        html_storage_path: Some(path.to_owned()),
        ..hot_task("h1", id)
    };
    let mut quarantined = in_bucket("h1-q", Some("q-only"), "q");
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut lost = in_bucket("h1-l", Some("l-only"), "l");
    lost.html_archive_state = Some("lost".to_owned());
    for task in [
        // Bytewise "Zeta" < "alpha" and "jobs/B" < "jobs/a"; a locale would say otherwise.
        in_bucket("h1-a1", Some("alpha"), "jobs/a"),
        in_bucket("h1-a2", Some("alpha"), "jobs/B"),
        in_bucket("h1-a3", Some("alpha"), "jobs/c"),
        pending(in_bucket("h1-a4", Some("alpha"), "jobs/A")),
        in_bucket("h1-z1", Some("Zeta"), "z/1"),
        pending(in_bucket("h1-p", Some("p-only"), "p")),
        archived(hot_task("h1", "h1-arch")),
        quarantined,
        lost,
        in_bucket("h1-nb", None, "no/bucket"),
        no_html("h1", "h1-n"),
    ] {
        db.insert_task(&task).await.unwrap();
    }
    let bucket = |name: &str, tasks: i64, sample: &str| coldsweep::catalog::HotBucket {
        bucket: name.to_owned(),
        tasks,
        sample_path: sample.to_owned(),
    };
    let all = db.hot_buckets(10).await.unwrap();
    assert_eq!(
        all,
        vec![bucket("Zeta", 1, "z/1"), bucket("alpha", 3, "jobs/B")],
        "{}",
        db.backend()
    );
    // The same "hot" as `status` (the bucket-less row aside).
    let hot = db.status(later(0)).await.unwrap().hot;
    assert_eq!(all.iter().map(|b| b.tasks).sum::<i64>(), hot - 1);
    assert_eq!(
        db.hot_buckets(1).await.unwrap(),
        vec![bucket("Zeta", 1, "z/1")]
    );
    assert!(db.hot_buckets(0).await.unwrap().is_empty());
}

/// The scrub's keyset cursor: only archived rows (not hot, pending,
/// quarantined, lost or HTML-less), bytewise id order, strictly after the
/// cursor, optionally one job's; paging through visits each row once.
pub(crate) async fn archived_tasks_page_by_keyset(db: &dyn Fixtures) {
    for id in ["k1", "k2"] {
        db.insert_job(&job(id, 1, None, "completed", minutes(0), None))
            .await
            .unwrap();
    }
    let mut quarantined = archived(hot_task("k1", "k1-q"));
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut lost = archived(hot_task("k1", "k1-l"));
    lost.html_archive_state = Some("lost".to_owned());
    // Bytewise "k1-B" < "k1-a" < "k1-b"; a locale collation would put "B" between.
    for task in [
        archived(hot_task("k1", "k1-b")),
        archived(hot_task("k1", "k1-a")),
        archived(hot_task("k1", "k1-B")),
        archived(hot_task("k2", "k2-a")),
        archived(hot_task("k2", "k1-c")),
        pending(hot_task("k1", "k1-p")),
        hot_task("k1", "k1-h"),
        quarantined,
        lost,
        no_html("k1", "k1-n"),
    ] {
        db.insert_task(&task).await.unwrap();
    }
    let page = |after: Option<&'static str>, job: Option<&'static str>, limit: usize| async move {
        db.archived_tasks_after(after, job, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    let all = page(None, None, 100).await;
    assert_eq!(
        all,
        ["k1-B", "k1-a", "k1-b", "k1-c", "k2-a"],
        "{}",
        db.backend()
    );
    // Every column comes back as written.
    let row = db
        .archived_tasks_after(None, None, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(row, archived(hot_task("k1", "k1-B")));
    // Strictly after the cursor, at most `limit`.
    assert_eq!(page(Some("k1-B"), None, 2).await, ["k1-a", "k1-b"]);
    assert_eq!(page(Some("k1-b"), None, 2).await, ["k1-c", "k2-a"]);
    assert!(page(Some("k2-a"), None, 2).await.is_empty());
    // A cursor that is not itself a row still works (a resumed scrub).
    assert_eq!(page(Some("k1-bb"), None, 10).await, ["k1-c", "k2-a"]);
    // One job: k1-c belongs to k2.
    assert_eq!(page(None, Some("k2"), 10).await, ["k1-c", "k2-a"]);
    assert_eq!(page(Some("k1-c"), Some("k2"), 10).await, ["k2-a"]);
    assert!(page(None, Some("nope"), 10).await.is_empty());
    // Paging one row at a time visits each archived row once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let rows = db
            .archived_tasks_after(cursor.as_deref(), None, 1)
            .await
            .unwrap();
        let Some(row) = rows.into_iter().next() else {
            break;
        };
        cursor = Some(row.id.clone());
        seen.push(row.id);
    }
    assert_eq!(seen, all);
    assert!(page(None, None, 0).await.is_empty());
}

/// `mark_missing` records a suspicion: the first sighting's time is kept
/// on a later call, the row hides from claims until `recheck_at`, and the
/// claim after that carries `missing_since` to the pipeline.
///
/// Catches: a second sighting overwriting `html_missing_since` (the
/// two-look verdict would never come, or come too early), a missing row
/// claimed before its re-check time, or one never claimed again.
pub(crate) async fn missing_is_kept_and_rechecked(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let all = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();

    let first_recheck = now + Duration::minutes(30);
    db.mark_missing(
        "a1-t1",
        fence("w", now),
        "in neither store",
        now,
        first_recheck,
    )
    .await
    .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.state(), BlobState::Missing, "{}", db.backend());
    assert_eq!(row.html_missing_since, Some(now));
    assert_eq!(row.html_archive_error.as_deref(), Some("in neither store"));
    assert_eq!(row.html_lease_expires_at, Some(first_recheck));
    assert_eq!(
        row.html_storage_path,
        hot_task("a1", "a1-t1").html_storage_path,
        "a suspicion keeps the hot reference"
    );
    let status = db.status(now).await.unwrap();
    assert_eq!(status.missing, 1);
    assert_eq!(
        status.leased,
        all.len() as i64 - 1,
        "mark_missing ends the lease"
    );

    // Looked at again too early (claimed again once its re-check came, and
    // a verdict not yet due): the first sighting stays, the re-check moves.
    let reclaimed = db
        .claim_task_html(0, 1000, &lease("w", now + Duration::minutes(31)))
        .await
        .unwrap();
    assert!(id_set(&reclaimed).contains("a1-t1"), "{}", db.backend());
    let second_recheck = now + Duration::minutes(60);
    db.mark_missing(
        "a1-t1",
        fence("w", now + Duration::minutes(31)),
        "still in neither store",
        now + Duration::minutes(31),
        second_recheck,
    )
    .await
    .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(
        row.html_missing_since,
        Some(now),
        "the first sighting is kept on {}",
        db.backend()
    );
    assert_eq!(
        row.html_archive_error.as_deref(),
        Some("still in neither store")
    );
    assert_eq!(row.html_lease_expires_at, Some(second_recheck));

    // Every other lease ended at now + 41 min; a1-t1 waits for its re-check.
    let early = db
        .claim_task_html(0, 1000, &lease("w2", now + Duration::minutes(59)))
        .await
        .unwrap();
    let mut expected = eligible_tasks(ELIGIBLE[0].1);
    expected.remove("a1-t1");
    assert_eq!(id_set(&early), expected, "{}", db.backend());
    assert!(early.iter().all(|c| c.missing_since.is_none()));

    let at_recheck = db
        .claim_task_html(0, 1000, &lease("w3", second_recheck))
        .await
        .unwrap();
    assert!(
        at_recheck.is_empty(),
        "claimed at the very instant its re-check starts: {:?}",
        ids(&at_recheck)
    );
    let rechecked = db
        .claim_task_html(0, 1000, &lease("w3", second_recheck + Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(ids(&rechecked), ["a1-t1"], "{}", db.backend());
    assert_eq!(rechecked[0].missing_since, Some(now));

    assert_kind(
        db.mark_missing("nope", fence("w", now), "r", now, now)
            .await,
        ErrorKind::NotFound,
        "mark_missing",
    );
}

/// `clear_missing` forgets a `missing` suspicion and nothing else.
///
/// Catches: a clear that also wipes a quarantine, a lost verdict or a
/// failing row's error (a found-again blob would silently undo a verdict).
pub(crate) async fn clear_missing_clears_only_missing(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();
    let held = fence("w", now);
    db.mark_missing(
        "a1-t1",
        held,
        "in neither store",
        now,
        now + Duration::hours(1),
    )
    .await
    .unwrap();
    db.release(
        "a1-t2",
        held,
        "upload failed: 503",
        now + Duration::hours(1),
    )
    .await
    .unwrap();
    let mut lost_seen = hot_task("a1", "a1-lost-seen");
    lost_seen.html_archive_state = Some("lost".to_owned());
    lost_seen.html_archive_error = Some("in neither store twice".to_owned());
    lost_seen.html_missing_since = Some(minutes(5));
    db.insert_task(&lost_seen).await.unwrap();

    let before: BTreeMap<String, TaskRow> = {
        let mut rows = BTreeMap::new();
        for id in ["a1-quar", "a1-lost", "a1-lost-seen", "a1-t2", "a0-t1"] {
            rows.insert(id.to_owned(), db.task(id).await.unwrap().unwrap());
        }
        rows
    };
    for id in before.keys() {
        // Only a0-t1 is still w's; the others fail their fence, changing nothing either way.
        let result = db.clear_missing(id, held).await;
        if id == "a0-t1" {
            result.unwrap();
        } else {
            assert_kind(result, ErrorKind::LeaseLost, id);
        }
    }
    for (id, row) in &before {
        assert_eq!(
            &db.task(id).await.unwrap().unwrap(),
            row,
            "clear_missing changed {id} on {}",
            db.backend()
        );
    }

    // Found again by the sweep that claims it once its re-check comes.
    let recheck = now + Duration::hours(1) + Duration::seconds(1);
    let rechecked = db
        .claim_task_html(0, 1000, &lease("w", recheck))
        .await
        .unwrap();
    assert!(id_set(&rechecked).contains("a1-t1"), "{}", db.backend());
    db.clear_missing("a1-t1", fence("w", recheck))
        .await
        .unwrap();
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.state(), BlobState::Hot, "{}", db.backend());
    assert_eq!(row.html_archive_state, None);
    assert_eq!(row.html_archive_error, None);
    assert_eq!(row.html_missing_since, None);
    assert_eq!(db.status(now).await.unwrap().missing, 0);
}

/// `hand_back` releases, in one call, exactly the listed rows that `owner`
/// holds, and counts no attempt and keeps the last error.
///
/// Catches: handing back another worker's claim (two workers would then
/// move one blob), counting a hand-back as a failure, wiping the error of
/// a blob that failed before, or releasing only the first of many rows.
pub(crate) async fn hand_back_releases_own_claims_only(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let first = db.claim_task_html(0, 2, &lease("w1", now)).await.unwrap();
    assert_eq!(ids(&first), ["a1-pending", "a1-t1"]);
    // a1-t1 failed once before and is claimed again by w1.
    db.release("a1-t1", fence("w1", now), "upload failed: 503", now)
        .await
        .unwrap();
    let soon = now + Duration::seconds(1);
    let again = db.claim_task_html(0, 1, &lease("w1", soon)).await.unwrap();
    assert_eq!(ids(&again), ["a1-t1"]);
    let other = db.claim_task_html(0, 1, &lease("w2", soon)).await.unwrap();
    assert_eq!(ids(&other), ["a1-t2"]);
    let w2_row = db.task("a1-t2").await.unwrap().unwrap();

    let listed: Vec<String> = ["a1-pending", "a1-t1", "a1-t2", "a0-t1", "nope"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(
        db.hand_back(&listed, "w1").await.unwrap(),
        2,
        "{}",
        db.backend()
    );

    let failed_before = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(failed_before.html_lease_expires_at, None);
    assert_eq!(failed_before.html_archive_attempts, 1, "no attempt counted");
    assert_eq!(
        failed_before.html_archive_error.as_deref(),
        Some("upload failed: 503"),
        "the last error is kept"
    );
    let pending_row = db.task("a1-pending").await.unwrap().unwrap();
    assert_eq!(pending_row.html_lease_expires_at, None);
    assert_eq!(pending_row.html_archive_attempts, 0);
    assert_eq!(pending_row.html_archive_error, None);
    assert_eq!(
        db.task("a1-t2").await.unwrap().unwrap(),
        w2_row,
        "another worker's claim"
    );
    assert_eq!(
        db.task("a0-t1").await.unwrap().unwrap(),
        hot_task("a0", "a0-t1")
    );
    assert_eq!(db.status(soon).await.unwrap().leased, 1, "w2's claim only");

    let next = db
        .claim_task_html(0, 1000, &lease("w3", soon))
        .await
        .unwrap();
    let next = id_set(&next);
    assert!(next.contains("a1-t1") && next.contains("a1-pending"));
    assert!(!next.contains("a1-t2"));

    assert_eq!(db.hand_back(&[], "w1").await.unwrap(), 0);
    assert_eq!(
        db.hand_back(&listed, "w1").await.unwrap(),
        0,
        "w1 holds nothing now"
    );
}

/// Every fenced write of a move changes nothing, failing with `LeaseLost`,
/// for a worker whose claim another worker took over (whatever its own
/// clock says) or whose lease ran out; the holder's writes pass.
///
/// Catches: a write conditioned on the id alone (a worker waking after its
/// lease rewrites a row another worker is moving, or deletes a hot copy
/// after a switch that did not happen), or on the owner alone (a lease
/// that ran out still writes), and a heartbeat that revives or steals leases.
pub(crate) async fn fenced_writes_need_a_live_lease_of_their_own(db: &dyn Fixtures) {
    retention_fixture(db).await;
    let now = later(0);
    let first = db
        .claim_task_html(0, 1000, &lease("w1", now))
        .await
        .unwrap();
    // w1 stalls past its lease (now + 10 min); w2 claims the same rows.
    let taken = now + Duration::minutes(11);
    let second = db
        .claim_task_html(0, 1000, &lease("w2", taken))
        .await
        .unwrap();
    assert_eq!(id_set(&first), id_set(&second), "{}", db.backend());
    // a1-t2 is seen missing by w2, then claimed by w3 once its re-check comes.
    db.mark_missing("a1-t2", fence("w2", taken), "r", taken, taken)
        .await
        .unwrap();
    let w3_at = taken + Duration::seconds(1);
    let third = db
        .claim_task_html(0, 1000, &lease("w3", w3_at))
        .await
        .unwrap();
    assert_eq!(ids(&third), ["a1-t2"], "{}", db.backend());

    let snapshot = || async {
        let mut rows = BTreeMap::new();
        for id in ["a1-t1", "a1-t2", "a1-pending"] {
            rows.insert(id, db.task(id).await.unwrap().unwrap());
        }
        rows
    };
    let before = snapshot().await;
    let all: Vec<String> = id_set(&first).into_iter().collect();
    let far = taken + Duration::hours(1);
    // Stale by another worker's claim (w1's clock still inside its old
    // lease, or past it), and stale by its own lease's end (w2 later on).
    for stale in [
        fence("w1", now + Duration::minutes(5)),
        fence("w1", w3_at),
        fence("w2", taken + Duration::minutes(11)),
    ] {
        let what = format!("{stale:?} on {}", db.backend());
        let lost = ErrorKind::LeaseLost;
        assert_kind(
            db.record_archived("a1-t1", stale, "s3", "cold", "k").await,
            lost,
            &what,
        );
        // a1-pending has a cold location: only the fence stops the clear.
        assert_kind(db.clear_hot("a1-pending", stale).await, lost, &what);
        for verdict in [Verdict::Lost, Verdict::Quarantined] {
            assert_kind(
                db.mark_state("a1-t1", stale, verdict, "r").await,
                lost,
                &what,
            );
        }
        assert_kind(
            db.mark_missing("a1-t1", stale, "r", now, far).await,
            lost,
            &what,
        );
        assert_kind(db.clear_missing("a1-t2", stale).await, lost, &what);
        assert_kind(db.release("a1-t1", stale, "e", far).await, lost, &what);
        assert_eq!(
            db.extend_leases(&all, stale, far).await.unwrap(),
            0,
            "{what}"
        );
        assert_eq!(snapshot().await, before, "{what}");
    }

    // The heartbeat extends its own live leases only, in one call.
    let beat = fence("w2", taken + Duration::minutes(5));
    let held_by_w2 = all.len() as u64 - 1;
    assert_eq!(
        db.extend_leases(&all, beat, far).await.unwrap(),
        held_by_w2,
        "{}",
        db.backend()
    );
    let row = db.task("a1-t1").await.unwrap().unwrap();
    assert_eq!(row.html_lease_expires_at, Some(far));
    assert_eq!(
        db.task("a1-t2").await.unwrap().unwrap(),
        before["a1-t2"],
        "w3's claim is not w2's to extend"
    );
    assert_eq!(db.extend_leases(&[], beat, far).await.unwrap(), 0);

    // The holders' own writes pass.
    let w2 = fence("w2", far - Duration::seconds(1));
    db.record_archived("a1-t1", w2, "s3", "cold", "k")
        .await
        .unwrap();
    db.clear_hot("a1-t1", w2).await.unwrap();
    assert_eq!(
        db.task("a1-t1").await.unwrap().unwrap().state(),
        BlobState::Archived
    );
    db.clear_missing("a1-t2", fence("w3", w3_at)).await.unwrap();
    assert_eq!(
        db.task("a1-t2").await.unwrap().unwrap().state(),
        BlobState::Hot
    );
}

/// The bulk switch and clear write exactly the rows their fence still
/// holds, say which, and keep the single writes' rules: a resumed switch
/// keeps its first time, a row without a cold location is never cleared.
pub(crate) async fn bulk_switch_and_clear_are_fenced_per_row(db: &dyn Fixtures) {
    let what = db.backend();
    db.insert_job(&job(
        "k1",
        1,
        Some(ORG_A),
        "completed",
        minutes(0),
        Some(minutes(1)),
    ))
    .await
    .unwrap();
    for id in ["k1-a", "k1-b", "k1-c", "k1-d"] {
        db.insert_task(&hot_task("k1", id)).await.unwrap();
    }
    let now = later(0);
    let w1 = db
        .claim_task_html(0, 1000, &lease("w1", now))
        .await
        .unwrap();
    assert_eq!(id_set(&w1).len(), 4, "{what}");
    // k1-d goes to w2: w1's bulk writes must pass it by.
    db.hand_back(&["k1-d".to_owned()], "w1").await.unwrap();
    let w2 = db
        .claim_task_html(0, 1000, &lease("w2", now))
        .await
        .unwrap();
    assert_eq!(ids(&w2), ["k1-d"], "{what}");
    let before_d = db.task("k1-d").await.unwrap().unwrap();

    let rows: Vec<(String, String)> = ["k1-a", "k1-b", "k1-c", "k1-d"]
        .iter()
        .map(|id| ((*id).to_owned(), format!("cold/{id}")))
        .collect();
    let switched = db
        .record_archived_many(&rows[..3], fence("w1", now), "r2", "cold")
        .await
        .unwrap();
    assert_eq!(
        switched.into_iter().collect::<BTreeSet<_>>(),
        strings(&["k1-a", "k1-b", "k1-c"]),
        "{what}"
    );
    let stale = db
        .record_archived_many(&rows[3..], fence("w1", now), "r2", "cold")
        .await
        .unwrap();
    assert!(stale.is_empty(), "{what}: w1 does not hold k1-d");
    assert_eq!(db.task("k1-d").await.unwrap().unwrap(), before_d, "{what}");
    for id in ["k1-a", "k1-b", "k1-c"] {
        let row = db.task(id).await.unwrap().unwrap();
        assert_eq!(
            row.state(),
            BlobState::Hot,
            "{what}: {id} keeps its hot reference"
        );
        assert_eq!(
            (
                row.html_archive_provider.as_deref(),
                row.html_archive_bucket.as_deref(),
                row.html_archive_key,
                row.html_archived_at
            ),
            (
                Some("r2"),
                Some("cold"),
                Some(format!("cold/{id}")),
                Some(now)
            ),
            "{what}"
        );
    }
    // Switched again later (a resumed move): the first switch time stays.
    let resumed = now + Duration::seconds(5);
    db.record_archived_many(&rows[..1], fence("w1", resumed), "r2", "cold")
        .await
        .unwrap();
    assert_eq!(
        db.task("k1-a").await.unwrap().unwrap().html_archived_at,
        Some(now),
        "{what}"
    );

    // Cleared: only rows w1 holds that have a cold location (k1-d has none
    // and is w2's anyway); after its lease ends, w1 clears nothing.
    let all: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    let ended = now + Duration::minutes(11);
    assert!(
        db.clear_hot_many(&all, fence("w1", ended))
            .await
            .unwrap()
            .is_empty(),
        "{what}: an ended lease clears nothing"
    );
    let cleared = db
        .clear_hot_many(&all[..2], fence("w1", resumed))
        .await
        .unwrap();
    assert_eq!(
        cleared.into_iter().collect::<BTreeSet<_>>(),
        strings(&["k1-a", "k1-b"]),
        "{what}"
    );
    for id in ["k1-a", "k1-b"] {
        let row = db.task(id).await.unwrap().unwrap();
        assert_eq!(row.state(), BlobState::Archived, "{what}: {id}");
        assert_eq!(row.html_lease_expires_at, None, "{what}: the lease ends");
    }
    assert_eq!(
        db.task("k1-c").await.unwrap().unwrap().state(),
        BlobState::Hot
    );
    assert_eq!(db.task("k1-d").await.unwrap().unwrap(), before_d, "{what}");
    assert!(
        db.clear_hot_many(&["k1-d".to_owned()], fence("w2", now))
            .await
            .unwrap()
            .is_empty(),
        "{what}: a row with no cold location is never cleared"
    );
    assert!(
        db.record_archived_many(&[], fence("w1", now), "r2", "cold")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.clear_hot_many(&[], fence("w1", now))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Rows for the reset checks, in jobs `r1` and `r2` (both finished, so
/// claimable with retention 0): `{job}-lost`, `-missing`, `-quar`,
/// `-fail` (each with a reason, attempts and, for missing and failing, a
/// back-off a day long), `-hot` and `-done` (nothing to reset), and in r1
/// `r1-busy-fail` and `r1-busy-missing`, which worker `w` holds under a
/// lease until `now + 10 min` when this returns.
async fn reset_fixture(db: &dyn Fixtures, now: DateTime<Utc>) {
    let backoff = now + Duration::days(1);
    for job_id in ["r1", "r2"] {
        db.insert_job(&job(job_id, 5, None, "completed", minutes(0), None))
            .await
            .unwrap();
        let mut lost = hot_task(job_id, &format!("{job_id}-lost"));
        lost.html_archive_state = Some("lost".to_owned());
        lost.html_archive_error = Some("in neither store twice".to_owned());
        lost.html_missing_since = Some(minutes(3));
        let mut missing = hot_task(job_id, &format!("{job_id}-missing"));
        missing.html_archive_state = Some("missing".to_owned());
        missing.html_archive_error = Some("in neither store".to_owned());
        missing.html_missing_since = Some(minutes(4));
        missing.html_lease_expires_at = Some(backoff);
        let mut quarantined = hot_task(job_id, &format!("{job_id}-quar"));
        quarantined.html_archive_state = Some("quarantined".to_owned());
        quarantined.html_archive_error = Some("content digest mismatch".to_owned());
        let mut failing = pending(hot_task(job_id, &format!("{job_id}-fail")));
        failing.html_archive_error = Some("hot delete failed".to_owned());
        failing.html_archive_attempts = 3;
        failing.html_lease_expires_at = Some(backoff);
        for task in [
            lost,
            missing,
            quarantined,
            failing,
            hot_task(job_id, &format!("{job_id}-hot")),
            archived(hot_task(job_id, &format!("{job_id}-done"))),
        ] {
            db.insert_task(&task).await.unwrap();
        }
    }
    // Two rows a worker is moving right now: back-offs over, then claimed.
    let mut busy_fail = hot_task("r1", "r1-busy-fail");
    busy_fail.html_archive_error = Some("timeout".to_owned());
    busy_fail.html_archive_attempts = 1;
    busy_fail.html_lease_expires_at = Some(now - Duration::minutes(1));
    let mut busy_missing = hot_task("r1", "r1-busy-missing");
    busy_missing.html_archive_state = Some("missing".to_owned());
    busy_missing.html_archive_error = Some("in neither store".to_owned());
    busy_missing.html_missing_since = Some(minutes(4));
    busy_missing.html_lease_expires_at = Some(now - Duration::minutes(1));
    db.insert_task(&busy_fail).await.unwrap();
    db.insert_task(&busy_missing).await.unwrap();
    let claimed = db.claim_task_html(0, 1000, &lease("w", now)).await.unwrap();
    assert_eq!(
        id_set(&claimed),
        strings(&["r1-busy-fail", "r1-busy-missing", "r1-hot", "r2-hot"]),
        "{}",
        db.backend()
    );
}

const RESET_FIXTURE_IDS: [&str; 14] = [
    "r1-lost",
    "r1-missing",
    "r1-quar",
    "r1-fail",
    "r1-hot",
    "r1-done",
    "r1-busy-fail",
    "r1-busy-missing",
    "r2-lost",
    "r2-missing",
    "r2-quar",
    "r2-fail",
    "r2-hot",
    "r2-done",
];

async fn reset_rows(db: &dyn Fixtures) -> BTreeMap<String, TaskRow> {
    let mut rows = BTreeMap::new();
    for id in RESET_FIXTURE_IDS {
        rows.insert(id.to_owned(), db.task(id).await.unwrap().unwrap());
    }
    rows
}

fn reset_filter(states: &[ResetState], jobs: &[&str], tasks: &[&str]) -> ResetFilter {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    ResetFilter {
        states: states.to_vec(),
        jobs: owned(jobs),
        tasks: owned(tasks),
    }
}

/// `reset_preview` selects by state, job and task (each list an OR, the
/// lists combined by AND), counts all it selects, lists at most `limit`
/// by id, and never selects a row under a live lease.
///
/// Catches: a selector ignored or OR-ed with the others (a narrow reset
/// would put every quarantined blob back into play), "failing" matching
/// quarantined/archived rows or plain hot ones, and resetting a row a
/// worker is moving right now.
pub(crate) async fn reset_preview_selects(db: &dyn Fixtures) {
    let now = later(0);
    reset_fixture(db, now).await;
    let before = reset_rows(db).await;
    use ResetState::{Failing, Lost, Missing, Quarantined};
    let cases: [(ResetFilter, &[&str]); 13] = [
        (reset_filter(&[Lost], &[], &[]), &["r1-lost", "r2-lost"]),
        (
            reset_filter(&[Missing], &[], &[]),
            &["r1-missing", "r2-missing"],
        ),
        (
            reset_filter(&[Quarantined], &[], &[]),
            &["r1-quar", "r2-quar"],
        ),
        (reset_filter(&[Failing], &[], &[]), &["r1-fail", "r2-fail"]),
        (
            reset_filter(&[Lost, Quarantined], &[], &[]),
            &["r1-lost", "r1-quar", "r2-lost", "r2-quar"],
        ),
        (
            reset_filter(&[], &["r1"], &[]),
            &["r1-fail", "r1-lost", "r1-missing", "r1-quar"],
        ),
        (
            reset_filter(&[], &["r1", "r2"], &[]),
            &[
                "r1-fail",
                "r1-lost",
                "r1-missing",
                "r1-quar",
                "r2-fail",
                "r2-lost",
                "r2-missing",
                "r2-quar",
            ],
        ),
        (
            reset_filter(&[], &[], &["r2-quar", "r1-lost", "r1-hot", "r1-done"]),
            &["r1-lost", "r2-quar"],
        ),
        (reset_filter(&[Failing], &["r2"], &[]), &["r2-fail"]),
        (
            reset_filter(&[Quarantined], &[], &["r1-quar", "r2-lost"]),
            &["r1-quar"],
        ),
        (
            reset_filter(&[Lost, Missing], &["r2"], &["r1-lost", "r2-missing"]),
            &["r2-missing"],
        ),
        (
            reset_filter(&[], &[], &["r1-busy-fail", "r1-busy-missing"]),
            &[],
        ),
        (reset_filter(&[], &["nope"], &[]), &[]),
    ];
    for (filter, expected) in &cases {
        let (count, rows) = db.reset_preview(filter, now, 100).await.unwrap();
        let got: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(&got, expected, "{filter:?} on {}", db.backend());
        assert_eq!(count, expected.len() as u64, "{filter:?}");
        for row in &rows {
            assert_eq!(row, &before[&row.id], "preview reads the whole row");
        }
    }

    // Every state at once, and the lease is judged against `now`.
    let (count, rows) = db
        .reset_preview(&ResetFilter::default(), now, 3)
        .await
        .unwrap();
    assert_eq!(count, 8, "{}", db.backend());
    let got: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got, ["r1-fail", "r1-lost", "r1-missing"], "first 3 by id");
    let after_lease = now + Duration::minutes(11);
    let (count, _) = db
        .reset_preview(&ResetFilter::default(), after_lease, 100)
        .await
        .unwrap();
    assert_eq!(count, 10, "expired leases no longer protect their rows");

    assert_eq!(reset_rows(db).await, before, "a preview changes nothing");
}

/// `reset` changes exactly the rows its filter selects, clears their
/// state, reason, attempts, missing-since and back-off and nothing else,
/// leaves rows under a live lease alone, and puts the rows back in play.
///
/// Catches: a reset wider than its preview, one that leaves a back-off or
/// attempt count behind (the blob would still wait or soon be
/// quarantined), or one that takes a row from a worker mid-move.
pub(crate) async fn reset_changes_exactly_the_selected_rows(db: &dyn Fixtures) {
    let now = later(0);
    reset_fixture(db, now).await;
    use ResetState::{Failing, Lost, Missing, Quarantined};
    let steps: [(ResetFilter, DateTime<Utc>, &[&str]); 7] = [
        (reset_filter(&[Lost], &["r2"], &[]), now, &["r2-lost"]),
        (reset_filter(&[], &[], &["r1-quar"]), now, &["r1-quar"]),
        (
            reset_filter(&[Missing], &[], &[]),
            now,
            &["r1-missing", "r2-missing"],
        ),
        (reset_filter(&[Failing], &["r1"], &[]), now, &["r1-fail"]),
        (
            ResetFilter::default(),
            now,
            &["r1-lost", "r2-fail", "r2-quar"],
        ),
        (ResetFilter::default(), now, &[]),
        (
            reset_filter(&[Quarantined, Failing, Missing], &[], &[]),
            now + Duration::minutes(11),
            &["r1-busy-fail", "r1-busy-missing"],
        ),
    ];
    for (filter, at, expected) in &steps {
        let before = reset_rows(db).await;
        let (previewed, _) = db.reset_preview(filter, *at, 100).await.unwrap();
        let done = db.reset(filter, *at).await.unwrap();
        assert_eq!(
            done,
            expected.len() as u64,
            "{filter:?} on {}",
            db.backend()
        );
        assert_eq!(previewed, done, "preview and reset disagree: {filter:?}");
        let after = reset_rows(db).await;
        let changed: BTreeSet<String> = after
            .iter()
            .filter(|(id, row)| before[*id] != **row)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(changed, strings(expected), "{filter:?} on {}", db.backend());
        for id in *expected {
            let mut want = before[*id].clone();
            want.html_archive_state = None;
            want.html_archive_error = None;
            want.html_archive_attempts = 0;
            want.html_missing_since = None;
            want.html_lease_expires_at = None;
            assert_eq!(after[*id], want, "{id} after {filter:?}");
        }
    }
    // Nothing left to reset; every reset row is in play again. The hot rows'
    // leases ended too, so they come back as well.
    let status = db.status(now + Duration::minutes(11)).await.unwrap();
    assert_eq!(
        (
            status.lost,
            status.missing,
            status.quarantined,
            status.failing
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(status.leased, 0, "a reset of a leased row frees it");
    let claimed = db
        .claim_task_html(0, 1000, &lease("w2", now + Duration::minutes(11)))
        .await
        .unwrap();
    let mut expected: BTreeSet<String> =
        RESET_FIXTURE_IDS.iter().map(|s| (*s).to_owned()).collect();
    expected.remove("r1-done");
    expected.remove("r2-done");
    assert_eq!(id_set(&claimed), expected, "{}", db.backend());
}

/// `retry_failing_now` ends the back-off of failing rows only, keeping
/// their attempts and errors.
///
/// Catches: `--retry-failed` also hurrying a missing blob's re-check (it
/// would be declared lost before ARCHIVE_LOST_AFTER), touching
/// quarantined rows, stealing a worker's live lease, or forgetting why a
/// blob failed.
pub(crate) async fn retry_failing_now_ends_backoffs_of_failing_rows(db: &dyn Fixtures) {
    let now = later(0);
    reset_fixture(db, now).await;
    let mut done_backoff = hot_task("r2", "r2-fail-due");
    done_backoff.html_archive_error = Some("timeout".to_owned());
    done_backoff.html_archive_attempts = 1;
    done_backoff.html_lease_expires_at = Some(now - Duration::minutes(5));
    db.insert_task(&done_backoff).await.unwrap();
    let mut quarantined = hot_task("r2", "r2-quar-backoff");
    quarantined.html_archive_state = Some("quarantined".to_owned());
    quarantined.html_archive_error = Some("content digest mismatch".to_owned());
    quarantined.html_lease_expires_at = Some(now + Duration::days(1));
    db.insert_task(&quarantined).await.unwrap();
    let before = reset_rows(db).await;
    assert_eq!(db.status(now).await.unwrap().waiting, 2);

    assert_eq!(
        db.retry_failing_now(now).await.unwrap(),
        2,
        "{}",
        db.backend()
    );
    let after = reset_rows(db).await;
    for (id, row) in &after {
        let mut want = before[id].clone();
        if matches!(id.as_str(), "r1-fail" | "r2-fail") {
            want.html_lease_expires_at = None;
        }
        assert_eq!(row, &want, "{id} on {}", db.backend());
    }
    assert_eq!(
        db.task("r2-quar-backoff").await.unwrap().unwrap(),
        quarantined
    );
    let status = db.status(now).await.unwrap();
    assert_eq!(status.waiting, 0);
    assert_eq!(status.leased, 4, "the worker keeps its claims");
    assert_eq!(status.failing, 4);

    let claimed = db
        .claim_task_html(0, 1000, &lease("w2", now))
        .await
        .unwrap();
    assert_eq!(
        id_set(&claimed),
        strings(&["r1-fail", "r2-fail", "r2-fail-due"]),
        "{}",
        db.backend()
    );
    assert_eq!(db.retry_failing_now(now).await.unwrap(), 0);
}

/// `failing_tasks` lists failing rows only, soonest retry first (a row
/// with no back-off first: the next sweep takes it), ties by id, at most
/// `limit`.
///
/// Catches: `status` listing quarantined, missing or archived rows as
/// failing, or listing the blob retried last first.
pub(crate) async fn failing_tasks_soonest_retry_first(db: &dyn Fixtures) {
    let now = later(0);
    db.insert_job(&job("f1", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    let failing = |id: &str, retry: Option<DateTime<Utc>>, attempts: i32| {
        let mut task = hot_task("f1", id);
        task.html_archive_error = Some(format!("error of {id}"));
        task.html_archive_attempts = attempts;
        task.html_lease_expires_at = retry;
        task
    };
    let mut quarantined = failing("f-quar", Some(now), 1);
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut missing = failing("f-missing", Some(now), 1);
    missing.html_archive_state = Some("missing".to_owned());
    let mut gone = archived(failing("f-archived", None, 1));
    gone.html_archive_error = Some("left over".to_owned());
    let rows = [
        failing("f-c", Some(now + Duration::hours(3)), 1),
        failing("f-a", Some(now + Duration::hours(1)), 4),
        failing("f-z", Some(now + Duration::hours(2)), 2),
        failing("f-b", Some(now + Duration::hours(2)), 3),
        failing("f-y", None, 5),
        quarantined,
        missing,
        gone,
        hot_task("f1", "f-hot"),
        pending(hot_task("f1", "f-pending")),
    ];
    for row in &rows {
        db.insert_task(row).await.unwrap();
    }
    let listed = db.failing_tasks(100).await.unwrap();
    let got: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got, ["f-y", "f-a", "f-b", "f-z", "f-c"], "{}", db.backend());
    for row in &listed {
        let written = rows.iter().find(|r| r.id == row.id).unwrap();
        assert_eq!(row, written, "every column as written");
    }
    let first: Vec<String> = db
        .failing_tasks(2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(first, ["f-y", "f-a"]);
    assert_eq!(db.status(now).await.unwrap().failing, 5);
}

/// `status` counts `missing` apart from `lost`, and `waiting` as the
/// failing rows whose ownerless back-off has not ended (ending exactly
/// when a claim may take them again).
///
/// Catches: `sweep --once` reporting a missing blob's re-check or a
/// worker's live lease as a failing blob waiting, or a waiting count that
/// disagrees with what a claim at the same instant takes.
pub(crate) async fn status_counts_missing_and_waiting(db: &dyn Fixtures) {
    let now = later(0);
    reset_fixture(db, now).await;
    // Fixture: missing r1-missing, r2-missing, r1-busy-missing (leased);
    // failing r1-fail, r2-fail (back-off a day), r1-busy-fail (leased).
    let status = db.status(now).await.unwrap();
    assert_eq!(
        (
            status.missing,
            status.lost,
            status.failing,
            status.waiting,
            status.leased
        ),
        (3, 2, 3, 2, 4),
        "(missing, lost, failing, waiting, leased) on {}",
        db.backend()
    );

    // A back-off ending at `end`: waiting up to and at `end`, claimable after.
    let end = now + Duration::hours(2);
    let mut due = hot_task("r2", "r2-fail-soon");
    due.html_archive_error = Some("timeout".to_owned());
    due.html_archive_attempts = 1;
    due.html_lease_expires_at = Some(end);
    db.insert_task(&due).await.unwrap();
    assert_eq!(db.status(now).await.unwrap().waiting, 3);
    assert_eq!(db.status(end).await.unwrap().waiting, 3);
    assert!(
        db.claim_task_html(0, 1000, &lease("w2", end))
            .await
            .unwrap()
            .iter()
            .all(|c| c.task_id != "r2-fail-soon"),
        "counted as waiting, but claimable at the same instant"
    );
    let just_after = end + Duration::seconds(1);
    assert_eq!(db.status(just_after).await.unwrap().waiting, 2);
    let claimed = db
        .claim_task_html(0, 1000, &lease("w2", just_after))
        .await
        .unwrap();
    assert!(claimed.iter().any(|c| c.task_id == "r2-fail-soon"));
    let status = db.status(just_after).await.unwrap();
    assert_eq!(status.waiting, 2, "a claimed failing row is not waiting");
    assert_eq!(status.missing, 3, "{}", db.backend());
}

/// SQLite: job times written by other tools in other SQLite date formats
/// (space-separated, `Z`, other offsets) still rank by the instant they name.
pub(crate) async fn sqlite_ranks_mixed_time_formats() {
    let db = sqlite_database();
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, domain_id, organisation_id, status, created_at, completed_at)
         VALUES ('space', 1, NULL, 'completed', '2025-01-01 00:00:00', '2025-01-01 10:00:00'),
                ('sqlx', 1, NULL, 'completed', '2025-01-01T00:00:00+00:00',
                 '2025-01-01T09:30:00+00:00'),
                ('zulu', 1, NULL, 'completed', '2025-01-01T00:00:00Z', '2025-01-01T11:00:00.5Z'),
                ('offset', 1, NULL, 'completed', '2025-01-01T00:00:00Z',
                 '2025-01-01T12:15:00+02:00'),
                ('created', 1, NULL, 'completed', '2025-01-01 10:05:00', NULL)",
    )
    .execute(catalog.pool())
    .await
    .unwrap();
    let retention = catalog.job_retention().await.unwrap();
    let by_rank: Vec<&str> = retention.iter().map(|r| r.job.id.as_str()).collect();
    // 11:00:00.5, 10:15 (12:15+02), 10:05, 10:00, 09:30 UTC.
    assert_eq!(by_rank, ["zulu", "offset", "created", "space", "sqlx"]);
    let ranks: Vec<Option<i64>> = retention.iter().map(|r| r.rank).collect();
    assert_eq!(ranks, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    let offset = retention.iter().find(|r| r.job.id == "offset").unwrap();
    assert_eq!(
        offset.job.completed_at,
        Some(Utc.with_ymd_and_hms(2025, 1, 1, 10, 15, 0).unwrap())
    );
}

/// `catalog::connect` picks the backend from the URL and creates a missing
/// SQLite file.
pub(crate) async fn connect_dispatches_on_the_url() {
    let sqlite = sqlite_database();
    let path = sqlite.url().trim_start_matches("sqlite:").to_owned();
    assert!(!std::path::Path::new(&path).exists());
    let catalog = coldsweep::catalog::connect(sqlite.url()).await.unwrap();
    assert_eq!(catalog.backend(), "sqlite");
    catalog.migrate().await.unwrap();
    assert!(std::path::Path::new(&path).exists());

    let pg = fresh_database().await;
    let catalog = coldsweep::catalog::connect(pg.url()).await.unwrap();
    assert_eq!(catalog.backend(), "postgres");
    catalog.migrate().await.unwrap();

    assert_kind(
        coldsweep::catalog::connect("mysql://localhost/db").await,
        ErrorKind::InvalidInput,
        "mysql URL",
    );
}

/// Postgres: many claimers on two pools never get the same row.
pub(crate) async fn concurrent_claims_are_disjoint() {
    let db = fresh_database().await;
    let (one, two) = (db.catalog().await, db.catalog().await);
    one.migrate().await.unwrap();
    one.insert_job(&job(
        "old",
        1,
        None,
        "completed",
        minutes(0),
        Some(minutes(1)),
    ))
    .await
    .unwrap();
    one.insert_job(&job(
        "new",
        1,
        None,
        "completed",
        minutes(0),
        Some(minutes(2)),
    ))
    .await
    .unwrap();
    let tasks: BTreeSet<String> = (0..60).map(|n| format!("old-{n:02}")).collect();
    for id in &tasks {
        one.insert_task(&hot_task("old", id)).await.unwrap();
    }
    one.insert_task(&hot_task("new", "new-00")).await.unwrap();

    let now = later(0);
    let claimers = (0..8).map(|n| {
        let catalog = if n % 2 == 0 { &one } else { &two };
        async move {
            let owner = format!("worker-{n}");
            let mut mine = Vec::new();
            loop {
                let got = catalog
                    .claim_task_html(1, 3, &lease(&owner, now))
                    .await
                    .unwrap();
                if got.is_empty() {
                    return (owner, mine);
                }
                mine.extend(got.into_iter().map(|c| c.task_id));
            }
        }
    });
    let results = futures::future::join_all(claimers).await;

    let mut owner_of = BTreeMap::new();
    for (owner, mine) in &results {
        for id in mine {
            if let Some(other) = owner_of.insert(id.clone(), owner.clone()) {
                panic!("{id} claimed by both {other} and {owner}");
            }
        }
    }
    assert_eq!(owner_of.keys().cloned().collect::<BTreeSet<_>>(), tasks);
    let mut conn = db.connection().await;
    let recorded: BTreeMap<String, String> =
        sqlx::query("SELECT id, html_lease_owner FROM tasks WHERE job_id = 'old'")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("id"), row.get("html_lease_owner")))
            .collect();
    assert_eq!(
        recorded, owner_of,
        "the lease names the claimer that got the row"
    );
}

/// Postgres: a claim passes over rows another transaction has locked
/// instead of waiting for them.
pub(crate) async fn claims_skip_locked_rows() {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    catalog
        .insert_job(&job(
            "old",
            1,
            None,
            "completed",
            minutes(0),
            Some(minutes(1)),
        ))
        .await
        .unwrap();
    catalog
        .insert_job(&job(
            "new",
            1,
            None,
            "completed",
            minutes(0),
            Some(minutes(2)),
        ))
        .await
        .unwrap();
    let tasks: BTreeSet<String> = (0..10).map(|n| format!("old-{n:02}")).collect();
    for id in &tasks {
        catalog.insert_task(&hot_task("old", id)).await.unwrap();
    }

    let mut conn = db.connection().await;
    let mut tx = conn.begin().await.unwrap();
    let locked: BTreeSet<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE job_id = 'old' ORDER BY id LIMIT 4 FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let now = later(0);
    let claimed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        catalog.claim_task_html(1, 100, &lease("w", now)),
    )
    .await
    .expect("a claim must not wait for rows another transaction holds")
    .unwrap();
    assert_eq!(id_set(&claimed), &tasks - &locked);
    tx.rollback().await.unwrap();

    let rest = catalog
        .claim_task_html(1, 100, &lease("w", now))
        .await
        .unwrap();
    assert_eq!(id_set(&rest), locked);
}

/// Postgres: migrating an application's existing schema only adds
/// coldsweep's columns (and indexes and its own migrations table), keeps
/// every row, and leaves the application's `_sqlx_migrations` alone.
pub(crate) async fn migrating_a_seed_schema_keeps_data() {
    let db = fresh_database().await;
    let mut conn = db.connection().await;
    // The application's schema predates html_captured_at and has columns of its own.
    conn.execute(
        r#"
        CREATE TABLE jobs (
            id text PRIMARY KEY, domain_id int NOT NULL, organisation_id uuid,
            status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
            completed_at timestamptz, name text NOT NULL);
        CREATE TABLE tasks (
            id text PRIMARY KEY, job_id text NOT NULL REFERENCES jobs (id), url text NOT NULL,
            html_storage_bucket text, html_storage_path text, html_content_type text,
            html_content_encoding text, html_size_bytes bigint,
            html_compressed_size_bytes bigint, html_sha256 text,
            html_archive_provider text, html_archive_bucket text, html_archive_key text,
            html_archived_at timestamptz);
        CREATE TABLE _sqlx_migrations (
            version bigint PRIMARY KEY, description text NOT NULL,
            installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
            checksum bytea NOT NULL, execution_time bigint NOT NULL);
        INSERT INTO _sqlx_migrations VALUES (20240101000000, 'app schema', now(), true, '\x00', 1);
        INSERT INTO jobs VALUES
            ('old', 1, '0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'completed',
             '2025-01-01T00:00:00Z', '2025-01-01T01:00:00Z', 'first crawl'),
            ('new', 1, '0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a', 'completed',
             '2025-01-02T00:00:00Z', '2025-01-02T01:00:00Z', 'second crawl');
        INSERT INTO tasks VALUES
            ('old-hot', 'old', 'https://example.com/a', 'hot', 'jobs/old/tasks/old-hot/page-content.html.gz',
             'text/html', 'gzip', 100, 40, 'abc', NULL, NULL, NULL, NULL),
            ('old-done', 'old', 'https://example.com/b', NULL, NULL, 'text/html', 'gzip', 100, 40,
             'def', 'r2', 'cold', 'jobs/old/tasks/old-done/page-content.html.gz',
             '2025-01-03T00:00:00Z'),
            ('old-none', 'old', 'https://example.com/c', NULL, NULL, NULL, NULL, NULL, NULL,
             NULL, NULL, NULL, NULL, NULL),
            ('new-hot', 'new', 'https://example.com/d', 'hot', 'jobs/new/tasks/new-hot/page-content.html.gz',
             'text/html', 'gzip', 100, 40, 'ghi', NULL, NULL, NULL, NULL);
        "#,
    )
    .await
    .unwrap();
    let before = columns(&mut conn).await;
    let rows_before = rows(&mut conn).await;
    assert_eq!(rows_before.len(), 7);

    let catalog = db.catalog().await;
    assert_kind(
        catalog.check_migrations().await,
        ErrorKind::InvalidInput,
        "before migrate",
    );
    catalog.migrate().await.expect("migrate the seed schema");
    catalog.migrate().await.expect("migrate it again");
    catalog.check_migrations().await.unwrap();

    let after = columns(&mut conn).await;
    let added: BTreeSet<String> = after.difference(&before).cloned().collect();
    assert!(before.is_subset(&after), "a column went missing");
    let expected_added = strings(&[
        "tasks.html_captured_at",
        "tasks.html_archive_state",
        "tasks.html_archive_error",
        "tasks.html_archive_attempts",
        "tasks.html_lease_owner",
        "tasks.html_missing_since",
        "tasks.html_archive_claims",
        "tasks.html_lease_expires_at",
        "jobs.status_before_archived",
        "jobs.restored_at",
        "_coldsweep_migrations.version",
        "_coldsweep_migrations.description",
        "_coldsweep_migrations.installed_on",
        "_coldsweep_migrations.success",
        "_coldsweep_migrations.checksum",
        "_coldsweep_migrations.execution_time",
    ]);
    assert_eq!(added, expected_added);

    // Every existing row, the application's migrations included, is unchanged.
    assert_eq!(rows(&mut conn).await, rows_before);

    let old_hot = catalog.task("old-hot").await.unwrap().unwrap();
    assert_eq!(old_hot.html_archive_attempts, 0);
    assert_eq!(old_hot.html_archive_state, None);
    assert_eq!(old_hot.html_sha256.as_deref(), Some("abc"));
    assert_eq!(
        catalog.task("old-done").await.unwrap().unwrap().state(),
        BlobState::Archived
    );
    let url: String = sqlx::query_scalar("SELECT url FROM tasks WHERE id = 'old-none'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(url, "https://example.com/c");

    let claimed = catalog
        .claim_task_html(1, 10, &lease("w", later(0)))
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["old-hot"]);
}

/// Every column of the public schema, as `table.column`.
async fn columns(conn: &mut sqlx::PgConnection) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT table_name || '.' || column_name FROM information_schema.columns
         WHERE table_schema = 'public'",
    )
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Every row of the seed schema as JSON, without the columns migrate may add.
async fn rows(conn: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT (to_jsonb(j) - 'status_before_archived' - 'restored_at')::text FROM jobs j
         UNION ALL SELECT (to_jsonb(t) - 'html_captured_at' - 'html_archive_state'
                           - 'html_archive_error' - 'html_archive_attempts'
                           - 'html_lease_owner' - 'html_lease_expires_at'
                           - 'html_missing_since' - 'html_archive_claims')::text FROM tasks t
         UNION ALL SELECT to_jsonb(m)::text FROM _sqlx_migrations m
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// Restore's catalog side: the job marker records the status it replaces,
/// `claim_archived` takes only archived rows nobody holds,
/// `record_restored_many` is fenced and gives each job its status back, and
/// a restored job ranks as finished at the restore.
pub(crate) async fn restore_switches_back_and_gives_jobs_their_status(db: &dyn Fixtures) {
    for (id, status) in [
        ("r-failed", "failed"),
        ("r-cancelled", "cancelled"),
        // Marked by a version that did not record the status before.
        ("r-old", "archived"),
        ("r-kept", "completed"),
        ("r-newer", "completed"),
    ] {
        let done = if id == "r-newer" { 100 } else { 1 };
        db.insert_job(&job(id, 11, None, status, minutes(0), Some(minutes(done))))
            .await
            .unwrap();
        db.insert_task(&archived(hot_task(id, &format!("{id}-a"))))
            .await
            .unwrap();
    }
    // A hot page holds r-kept back from the marker (and r-newer hot too).
    db.insert_task(&hot_task("r-kept", "r-kept-h"))
        .await
        .unwrap();
    db.insert_task(&hot_task("r-newer", "r-newer-h"))
        .await
        .unwrap();
    assert_eq!(db.mark_archived_jobs().await.unwrap(), 2);

    let selected = db
        .tasks_selected(&["r-kept-h".into(), "nope".into()], &["r-failed".into()])
        .await
        .unwrap();
    let selected: Vec<&str> = selected.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(selected, ["r-failed-a", "r-kept-h"]);
    let known = db
        .known_jobs(&["r-old".into(), "nope".into(), "r-kept".into()])
        .await
        .unwrap();
    assert_eq!(known, ["r-kept", "r-old"]);

    let all: Vec<String> = [
        "r-failed-a",
        "r-cancelled-a",
        "r-old-a",
        "r-kept-a",
        "r-kept-h",
        "nope",
    ]
    .map(String::from)
    .to_vec();
    let now = later(0);
    let claimed = db.claim_archived(&all, &lease("A", now)).await.unwrap();
    let claimed: Vec<&str> = claimed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        claimed,
        ["r-cancelled-a", "r-failed-a", "r-kept-a", "r-old-a"]
    );
    // Held by A: nobody else claims them, nobody else's switch lands.
    assert!(
        db.claim_archived(&all, &lease("B", now))
            .await
            .unwrap()
            .is_empty()
    );
    let switch: Vec<(String, String)> = claimed
        .iter()
        .map(|id| (id.to_string(), format!("hot/{id}")))
        .collect();
    let missed = db
        .record_restored_many(&switch, "hot-bucket", fence("B", now))
        .await
        .unwrap();
    assert!(missed.tasks.is_empty() && missed.jobs_reopened.is_empty());
    assert_eq!(
        db.task("r-old-a").await.unwrap().unwrap().state(),
        BlobState::Archived
    );

    let at = now + Duration::minutes(1);
    let done = db
        .record_restored_many(&switch, "hot-bucket", fence("A", at))
        .await
        .unwrap();
    assert_eq!(
        done.tasks.iter().cloned().collect::<BTreeSet<_>>(),
        strings(&claimed)
    );
    assert_eq!(done.jobs_reopened, ["r-cancelled", "r-failed", "r-old"]);
    for id in &claimed {
        let row = db.task(id).await.unwrap().unwrap();
        assert_eq!(row.state(), BlobState::Hot, "{id}");
        assert_eq!(row.html_storage_bucket.as_deref(), Some("hot-bucket"));
        assert_eq!(row.html_storage_path, Some(format!("hot/{id}")));
        assert_eq!(row.html_archive_provider, None, "{id}");
        assert_eq!(row.html_archive_bucket, None, "{id}");
        assert_eq!(row.html_archive_key, None, "{id}");
        assert_eq!(row.html_archived_at, None, "{id}");
        assert_eq!(row.html_lease_expires_at, None, "{id}");
    }
    let jobs: BTreeMap<String, (String, Option<i64>)> = db
        .job_retention()
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.job.id, (j.job.status, j.rank)))
        .collect();
    assert_eq!(jobs["r-failed"].0, "failed");
    assert_eq!(jobs["r-cancelled"].0, "cancelled");
    assert_eq!(jobs["r-old"].0, "completed");
    assert_eq!(jobs["r-kept"].0, "completed");
    // Restored at `at`, long after r-newer finished: they outrank it.
    assert_eq!(jobs["r-newer"].1, Some(5));
    for id in ["r-failed", "r-cancelled", "r-old", "r-kept"] {
        assert!(
            jobs[id].1.is_some_and(|rank| rank <= 4),
            "{id}: {:?}",
            jobs[id]
        );
    }
    // Retention 4 keeps the four restored jobs hot.
    assert_eq!(
        rules::decide(
            &db.job_standings(Scope::BeyondRetention(4), at)
                .await
                .unwrap(),
            &Rules::retention(4),
            at
        )
        .moving_ids(),
        ["r-newer"],
        "only the job older than the four restored ones is eligible"
    );
    // A second switch of the same rows finds nothing archived.
    let again = db
        .claim_archived(&all, &lease("A", at + Duration::minutes(1)))
        .await
        .unwrap();
    assert!(again.is_empty());
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&*super::pg_catalog().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(&*super::sqlite_catalog().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    rows_round_trip,
    retention_rule,
    claims_lease_rows,
    release_backs_off,
    archive_then_clear_hot,
    lost_and_quarantined,
    job_marker,
    status_counts,
    hot_buckets_are_listed_once,
    archived_tasks_page_by_keyset,
    missing_is_kept_and_rechecked,
    clear_missing_clears_only_missing,
    hand_back_releases_own_claims_only,
    fenced_writes_need_a_live_lease_of_their_own,
    bulk_switch_and_clear_are_fenced_per_row,
    reset_preview_selects,
    reset_changes_exactly_the_selected_rows,
    retry_failing_now_ends_backoffs_of_failing_rows,
    failing_tasks_soonest_retry_first,
    status_counts_missing_and_waiting,
    claims_take_jobs_in_order,
    restore_switches_back_and_gives_jobs_their_status,
    bucket_usage_counts_hot_and_cold,
);

#[tokio::test]
async fn postgres_migrations_are_checked_and_idempotent() {
    migrations_are_checked_and_idempotent(&fresh_database().await.catalog().await).await;
}

#[tokio::test]
async fn sqlite_migrations_are_checked_and_idempotent() {
    migrations_are_checked_and_idempotent(&sqlite_database().catalog().await).await;
}

#[tokio::test]
async fn sqlite_ranks_mixed_time_formats_by_instant() {
    sqlite_ranks_mixed_time_formats().await;
}

#[tokio::test]
async fn catalog_connect_dispatches_on_the_url() {
    connect_dispatches_on_the_url().await;
}

#[tokio::test]
async fn postgres_concurrent_claims_are_disjoint() {
    concurrent_claims_are_disjoint().await;
}

#[tokio::test]
async fn postgres_claims_skip_locked_rows() {
    claims_skip_locked_rows().await;
}

#[tokio::test]
async fn postgres_migrating_a_seed_schema_keeps_data() {
    migrating_a_seed_schema_keeps_data().await;
}

/// Jobs of one group, oldest first: `j1` (3 hot rows), `j2` (2), `j3` (2),
/// `j4` (archived only), then `keep` (newest, 1 hot row: kept by retention 1).
async fn job_order_fixture(db: &dyn Fixtures) {
    for (n, id) in ["j1", "j2", "j3", "j4", "keep"].into_iter().enumerate() {
        let at = minutes(10 * n as i64);
        db.insert_job(&job(id, 7, Some(ORG_A), "completed", at, Some(at)))
            .await
            .unwrap();
    }
    for (job_id, rows) in [("j1", 3), ("j2", 2), ("j3", 2), ("keep", 1)] {
        for n in 1..=rows {
            db.insert_task(&hot_task(job_id, &format!("{job_id}-t{n}")))
                .await
                .unwrap();
        }
    }
    db.insert_task(&archived(hot_task("j4", "j4-t1")))
        .await
        .unwrap();
}

/// The eligible jobs come oldest first, only those with a claimable row;
/// a claim over them takes a later job's rows only once the earlier jobs
/// are exhausted, and a short claim means every job it was given is.
pub(crate) async fn claims_take_jobs_in_order(db: &dyn Fixtures) {
    job_order_fixture(db).await;
    let now = later(0);
    let jobs = retention_moves(db, 1, now).await;
    assert_eq!(jobs, ["j1", "j2", "j3"], "{}", db.backend());

    let first = db
        .claim_task_html_rows(&jobs, 2, &lease("w", now))
        .await
        .unwrap();
    assert_eq!(ids(&first.candidates), ["j1-t1", "j1-t2"]);
    let second = db
        .claim_task_html_rows(&jobs, 2, &lease("w", now))
        .await
        .unwrap();
    assert_eq!(ids(&second.candidates), ["j1-t3", "j2-t1"]);
    // Given in another order, jobs are taken in that order.
    let reversed: Vec<String> = jobs.iter().rev().cloned().collect();
    let third = db
        .claim_task_html_rows(&reversed, 2, &lease("w", now))
        .await
        .unwrap();
    assert_eq!(ids(&third.candidates), ["j3-t1", "j3-t2"]);
    let short = db
        .claim_task_html_rows(&jobs, 5, &lease("w", now))
        .await
        .unwrap();
    assert_eq!(ids(&short.candidates), ["j2-t2"]);
    let none = db
        .claim_task_html_rows(&jobs, 5, &lease("w", now))
        .await
        .unwrap();
    assert!(none.candidates.is_empty(), "{none:?}");
    // Every row leased now: no job is eligible for a sweep starting now.
    assert!(retention_moves(db, 1, now).await.is_empty());
}

/// A source claims through its sweep's jobs in order, batch after batch,
/// and ends the sweep with a short claim.
pub(crate) async fn source_walks_the_sweep_in_job_order(db: Arc<dyn Fixtures>) {
    job_order_fixture(&*db).await;
    let source = TaskHtmlSource::new(db.clone(), 1);
    let now = later(0);
    let mut batches = Vec::new();
    loop {
        let claim = source.claim(2, &lease("w", now)).await.unwrap();
        let got = ids(&claim.candidates);
        let short = got.len() < 2;
        batches.push(got);
        if short {
            break;
        }
    }
    assert_eq!(
        batches,
        [
            vec!["j1-t1", "j1-t2"],
            vec!["j1-t3", "j2-t1"],
            vec!["j2-t2", "j3-t1"],
            vec!["j3-t2"],
        ],
        "{}",
        db.backend()
    );
}

/// A job that becomes eligible during a sweep (a newer job finished, so
/// retention lets an older one go) is taken by the next sweep, not this one.
pub(crate) async fn a_job_eligible_mid_sweep_waits_for_the_next(db: Arc<dyn Fixtures>) {
    job_order_fixture(&*db).await;
    let source = TaskHtmlSource::new(db.clone(), 1);
    let sweep = later(0);
    let first = source.claim(1, &lease("w", sweep)).await.unwrap();
    assert_eq!(ids(&first.candidates), ["j1-t1"]);
    // A newer job finishes: `keep` is no longer within retention 1.
    db.insert_job(&job(
        "newest",
        7,
        Some(ORG_A),
        "completed",
        minutes(100),
        Some(minutes(100)),
    ))
    .await
    .unwrap();
    let rest = source.claim(100, &lease("w", sweep)).await.unwrap();
    assert_eq!(
        ids(&rest.candidates),
        ["j1-t2", "j1-t3", "j2-t1", "j2-t2", "j3-t1", "j3-t2"],
        "{}",
        db.backend()
    );
    let next = source
        .claim(100, &lease("w", sweep + Duration::minutes(1)))
        .await
        .unwrap();
    assert_eq!(ids(&next.candidates), ["keep-t1"]);
}

/// Two workers, each with its own sweep position, never get the same row
/// and between them take every eligible row.
pub(crate) async fn two_sources_never_share_a_row(db: Arc<dyn Fixtures>) {
    job_order_fixture(&*db).await;
    for n in 0..20 {
        db.insert_task(&hot_task("j2", &format!("j2-more-{n:02}")))
            .await
            .unwrap();
    }
    let one = TaskHtmlSource::new(db.clone(), 1);
    let two = TaskHtmlSource::new(db.clone(), 1);
    let now = later(0);
    let mut owner_of = BTreeMap::new();
    let mut done = [false, false];
    let mut turn = 0;
    while !done.iter().all(|d| *d) {
        let (source, owner, at) = if turn % 2 == 0 {
            (&one, "w1", now)
        } else {
            (&two, "w2", now + Duration::seconds(1))
        };
        // Uneven batches, so the two positions drift apart.
        let batch = if turn % 2 == 0 { 3 } else { 2 };
        let claim = source.claim(batch, &lease(owner, at)).await.unwrap();
        if claim.candidates.len() < batch {
            done[turn % 2] = true;
        }
        for c in claim.candidates {
            if let Some(other) = owner_of.insert(c.task_id.clone(), owner) {
                panic!("{} claimed by both {other} and {owner}", c.task_id);
            }
        }
        turn += 1;
    }
    let mut expected = strings(&[
        "j1-t1", "j1-t2", "j1-t3", "j2-t1", "j2-t2", "j3-t1", "j3-t2",
    ]);
    expected.extend((0..20).map(|n| format!("j2-more-{n:02}")));
    assert_eq!(
        owner_of.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{}",
        db.backend()
    );
}

/// Postgres: a claim locks the rows it claims and no other, even across
/// jobs: inside an open transaction that claimed 3 rows, every other hot
/// row is still free for a second claimer.
pub(crate) async fn a_claim_locks_only_what_it_claims() {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    job_order_fixture(&catalog).await;
    let now = later(0);
    let jobs = retention_moves(&catalog, 1, now).await;

    let mut conn = db.connection().await;
    let mut tx = conn.begin().await.unwrap();
    let claimed = catalog
        .claim_task_html_rows_in(&mut tx, &jobs, 4, &lease("w1", now))
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed.candidates),
        ["j1-t1", "j1-t2", "j1-t3", "j2-t1"]
    );
    // What another session can lock now is everything hot but those four.
    let mut other = db.connection().await;
    let free: BTreeSet<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE html_storage_path IS NOT NULL FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut other)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(free, strings(&["j2-t2", "j3-t1", "j3-t2", "keep-t1"]));
    // And a second claimer, not waiting on the open transaction, gets the rest.
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        catalog.claim_task_html_rows(&jobs, 100, &lease("w2", now)),
    )
    .await
    .expect("a claim must not wait for rows another transaction holds")
    .unwrap();
    assert_eq!(ids(&second.candidates), ["j2-t2", "j3-t1", "j3-t2"]);
    tx.commit().await.unwrap();
    let recorded: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT id, html_lease_owner FROM tasks WHERE html_storage_path IS NOT NULL ORDER BY id",
    )
    .fetch_all(&mut other)
    .await
    .unwrap();
    let owner = |o: &str| Some(o.to_owned());
    assert_eq!(
        recorded,
        [
            ("j1-t1".to_owned(), owner("w1")),
            ("j1-t2".to_owned(), owner("w1")),
            ("j1-t3".to_owned(), owner("w1")),
            ("j2-t1".to_owned(), owner("w1")),
            ("j2-t2".to_owned(), owner("w2")),
            ("j3-t1".to_owned(), owner("w2")),
            ("j3-t2".to_owned(), owner("w2")),
            ("keep-t1".to_owned(), None),
        ]
    );
}

/// Day `n` of the quota fixture.
fn day(n: i64) -> DateTime<Utc> {
    t0() + Duration::days(n)
}

/// Jobs with known sizes, retention 1 in mind (job time = completion day):
///
/// | job  | group  | status    | day | rank | hot bytes (movable)                 |
/// |------|--------|-----------|-----|------|-------------------------------------|
/// | a1   | 7 / A  | completed | 1   | 3    | 200 (2 × 100)                       |
/// | a2   | 7 / A  | completed | 3   | 2    | 325 (300; a quarantined 25 stays)   |
/// | a3   | 7 / A  | completed | 5   | 1    | 50                                  |
/// | arun | 7 / A  | running   | –   | –    | 70 (never moves)                    |
/// | b1   | 8 / –  | failed    | 2   | 2    | 0 (two blobs, sizes NULL)           |
/// | b2   | 8 / –  | completed | 4   | 1    | 120 (+ an archived blob: not hot)   |
///
/// 765 hot bytes in all.
async fn quota_fixture(db: &dyn Fixtures) {
    let sized = |job_id: &str, id: &str, bytes: Option<i64>| TaskRow {
        html_compressed_size_bytes: bytes,
        ..hot_task(job_id, id)
    };
    for (id, domain, org, status, d) in [
        ("a1", 7, Some(ORG_A), "completed", Some(1)),
        ("a2", 7, Some(ORG_A), "completed", Some(3)),
        ("a3", 7, Some(ORG_A), "completed", Some(5)),
        ("arun", 7, Some(ORG_A), "running", None),
        ("b1", 8, None, "failed", Some(2)),
        ("b2", 8, None, "completed", Some(4)),
    ] {
        let created = d.map_or(day(5), |d| day(d) - Duration::hours(1));
        db.insert_job(&job(id, domain, org, status, created, d.map(day)))
            .await
            .unwrap();
    }
    let mut quarantined = sized("a2", "a2-q", Some(25));
    quarantined.html_archive_state = Some("quarantined".to_owned());
    for task in [
        sized("a1", "a1-t1", Some(100)),
        sized("a1", "a1-t2", Some(100)),
        sized("a2", "a2-t1", Some(300)),
        quarantined,
        sized("a3", "a3-t1", Some(50)),
        sized("arun", "arun-t1", Some(70)),
        sized("b1", "b1-t1", None),
        sized("b1", "b1-t2", None),
        sized("b2", "b2-t1", Some(120)),
        archived(sized("b2", "b2-old", Some(999))),
    ] {
        db.insert_task(&task).await.unwrap();
    }
}

/// What a sweep at `now` under `rules` claims, as the jobs of its
/// candidates in claim order; the claims are handed back after.
async fn sweep_choice(db: Arc<dyn Fixtures>, rules: Rules, now: DateTime<Utc>) -> Vec<String> {
    let source = TaskHtmlSource::with_rules(db.clone(), rules);
    let claim = source.claim(1000, &lease("w", now)).await.unwrap();
    source.hand_back(&claim.candidates, "w").await.unwrap();
    let mut jobs: Vec<String> = Vec::new();
    for c in &claim.candidates {
        if jobs.last() != Some(&c.job_id) {
            jobs.push(c.job_id.clone());
        }
    }
    jobs
}

/// Quota mode on a hand-built set: the exact jobs chosen, in order, by the
/// sweep and by `plan`'s reading (every job counted); the hot bytes before
/// and after; NULL sizes counting 0; quarantined and running bytes counting
/// hot but never moving; and the minimum age keeping a recent job hot even
/// beyond retention and under quota pressure.
pub(crate) async fn quota_rule_chooses_the_oldest_jobs(db: Arc<dyn Fixtures>) {
    quota_fixture(&*db).await;
    let now = day(6);
    let backend = db.backend();
    let counted = db.job_standings(Scope::Counted, now).await.unwrap();
    assert_eq!(counted.hot_bytes, Some(765), "{backend}");
    let standing = |id: &str| {
        counted
            .jobs
            .iter()
            .find(|j| j.job_id == id)
            .unwrap_or_else(|| panic!("{backend}: no standing for {id}"))
            .clone()
    };
    let a2 = standing("a2");
    assert_eq!((a2.rank, a2.job_time), (Some(2), Some(day(3))), "{backend}");
    let bytes = a2.bytes.unwrap();
    assert_eq!(
        (bytes.movable_blobs, bytes.movable_bytes, bytes.hot_bytes),
        (1, 300, 325),
        "{backend}"
    );
    let b1 = standing("b1").bytes.unwrap();
    assert_eq!((b1.movable_blobs, b1.movable_bytes), (2, 0), "{backend}");
    let arun = standing("arun");
    assert_eq!(arun.rank, None, "{backend}");
    assert_eq!(arun.bytes.unwrap().hot_bytes, 70, "{backend}");

    // (rules, moving jobs in order, hot bytes after, quota met)
    let quota = |bytes: u64, min_age_hours: Option<u64>| Rules {
        retention_jobs: 1,
        hot_quota: Some(bytes),
        min_age: min_age_hours.map(|h| std::time::Duration::from_secs(h * 3600)),
    };
    let cases: [(Rules, &[&str], u64, Option<bool>); 5] = [
        // Retention alone: a1, b1, a2 (oldest first); 765 − 500 = 265 stay.
        (Rules::retention(1), &["a1", "b1", "a2"], 265, None),
        // 265 > 150: the oldest remaining finished job, b2 (day 4), goes too.
        (quota(150, None), &["a1", "b1", "a2", "b2"], 145, Some(true)),
        // 145 > 100: a3 too, newest of its group though it is.
        (
            quota(100, None),
            &["a1", "b1", "a2", "b2", "a3"],
            95,
            Some(true),
        ),
        // Nothing reaches 10 (the running and quarantined 95 cannot move).
        (
            quota(10, None),
            &["a1", "b1", "a2", "b2", "a3"],
            95,
            Some(false),
        ),
        // A minimum age of 3½ days (now is day 6) keeps a2 (day 3), beyond
        // retention, and b2 and a3 under quota pressure.
        (quota(10, Some(84)), &["a1", "b1"], 565, Some(false)),
    ];
    for (rules, want, after, met) in cases {
        let plan = rules::decide(&counted, &rules, now);
        assert_eq!(plan.moving_ids(), want, "{backend}: plan under {rules:?}");
        assert_eq!(plan.hot_bytes_before, Some(765), "{backend}");
        assert_eq!(plan.hot_bytes_after, Some(after), "{backend}: {rules:?}");
        assert_eq!(plan.quota.map(|q| q.met()), met, "{backend}: {rules:?}");
        let sweep = sweep_choice(db.clone(), rules, now).await;
        assert_eq!(sweep, want, "{backend}: sweep under {rules:?}");
    }

    // Why the rest stays, in the last case.
    let plan = rules::decide(&counted, &quota(10, Some(84)), now);
    let decision = |id: &str| {
        plan.jobs
            .iter()
            .find(|j| j.standing.job_id == id)
            .unwrap()
            .decision
    };
    assert_eq!(decision("a1"), Decision::Moves(MoveRule::Retention));
    assert_eq!(
        decision("a2"),
        Decision::Stays(StayReason::YoungerThanMinAge)
    );
    assert_eq!(
        decision("b2"),
        Decision::Stays(StayReason::YoungerThanMinAge)
    );
    assert_eq!(decision("arun"), Decision::Stays(StayReason::NotFinished));
    let outcome = plan.quota.unwrap();
    // a2's 300, b2's 120, a3's 50 held by the age; 70 running + 25 quarantined.
    assert_eq!(
        (
            outcome.over_by,
            outcome.held_by_min_age,
            outcome.held_unmovable
        ),
        (555, 470, 95),
        "{backend}"
    );

    // Without a quota the sweep reads less (no bytes) and still agrees.
    let rules = Rules {
        min_age: Some(std::time::Duration::from_secs(84 * 3600)),
        ..Rules::retention(1)
    };
    let cheap = db.job_standings(rules.scope(), now).await.unwrap();
    assert_eq!(cheap.hot_bytes, None, "{backend}");
    assert_eq!(
        rules::decide(&cheap, &rules, now).moving_ids(),
        rules::decide(&counted, &rules, now).moving_ids(),
        "{backend}"
    );
    assert_eq!(sweep_choice(db.clone(), rules, now).await, ["a1", "b1"]);
}

/// When a1 (finished day 1) of the quota fixture is restored.
fn restored_at() -> DateTime<Utc> {
    day(5) + Duration::hours(12)
}

/// A restored job counts as finished at its restore: its rank and job
/// time follow `restored_at` (set on a1 by the caller), so it is not swept
/// again before it ages out again.
async fn a_restored_job_counts_from_its_restore(db: Arc<dyn Fixtures>) {
    let now = day(6);
    let counted = db.job_standings(Scope::Counted, now).await.unwrap();
    let a1 = counted.jobs.iter().find(|j| j.job_id == "a1").unwrap();
    assert_eq!((a1.rank, a1.job_time), (Some(1), Some(restored_at())));
    assert_eq!(
        sweep_choice(db.clone(), Rules::retention(1), now).await,
        ["b1", "a2", "a3"],
        "{}",
        db.backend()
    );
}

#[tokio::test]
async fn postgres_a_restored_job_counts_from_its_restore() {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    quota_fixture(&catalog).await;
    sqlx::query("UPDATE jobs SET restored_at = $1 WHERE id = 'a1'")
        .bind(restored_at())
        .execute(catalog.pool())
        .await
        .unwrap();
    a_restored_job_counts_from_its_restore(Arc::new(catalog)).await;
}

#[tokio::test]
async fn sqlite_a_restored_job_counts_from_its_restore() {
    let db = sqlite_database();
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    quota_fixture(&catalog).await;
    sqlx::query("UPDATE jobs SET restored_at = ?1 WHERE id = 'a1'")
        .bind(restored_at())
        .execute(catalog.pool())
        .await
        .unwrap();
    a_restored_job_counts_from_its_restore(Arc::new(catalog)).await;
}

/// Hot bytes per `html_storage_bucket` (every row with a hot path, whatever
/// its state; a NULL size counts 0 and is counted apart, a negative one 0)
/// and cold bytes per
/// (provider, bucket) (every row with a cold key; pending rows in both).
pub(crate) async fn bucket_usage_counts_hot_and_cold(db: &dyn Fixtures) {
    db.insert_job(&job("u1", 1, None, "completed", minutes(0), None))
        .await
        .unwrap();
    let task = |id: &str, bucket: Option<&str>, bytes: Option<i64>| TaskRow {
        html_storage_bucket: bucket.map(str::to_owned),
        html_compressed_size_bytes: bytes,
        ..hot_task("u1", id)
    };
    let cold = |mut t: TaskRow, provider: &str, bucket: &str| {
        t = archived(t);
        t.html_archive_provider = Some(provider.to_owned());
        t.html_archive_bucket = Some(bucket.to_owned());
        t
    };
    let mut quarantined = task("q", Some("alpha"), Some(7));
    quarantined.html_archive_state = Some("quarantined".to_owned());
    let mut lost = task("l", Some("Zeta"), Some(11));
    lost.html_archive_state = Some("lost".to_owned());
    for t in [
        task("a1", Some("alpha"), Some(100)),
        task("a2", Some("alpha"), None),
        // A corrupt negative size counts 0.
        task("a3", Some("alpha"), Some(-5)),
        quarantined,
        lost,
        pending(task("p", Some("Zeta"), Some(40))),
        cold(task("c1", None, Some(500)), "r2", "cold-1"),
        cold(task("c2", None, None), "r2", "cold-1"),
        cold(task("c3", None, Some(60)), "b2", "cold-2"),
        no_html("u1", "n"),
    ] {
        db.insert_task(&t).await.unwrap();
    }
    let usage = db.bucket_usage().await.unwrap();
    let row = |provider: Option<&str>, bucket: &str, blobs, bytes, no_size| BucketBytes {
        provider: provider.map(str::to_owned),
        bucket: Some(bucket.to_owned()),
        blobs,
        bytes,
        blobs_without_size: no_size,
    };
    let backend = db.backend();
    // Bytewise: "Zeta" before "alpha".
    assert_eq!(
        usage.hot,
        [row(None, "Zeta", 2, 51, 0), row(None, "alpha", 4, 107, 1)],
        "{backend}"
    );
    // "pending" (switched, hot copy still there) is in r2/cold-bucket too.
    assert_eq!(
        usage.cold,
        [
            row(Some("b2"), "cold-2", 1, 60, 0),
            row(Some("r2"), "cold-1", 2, 500, 1),
            row(Some("r2"), "cold-bucket", 1, 40, 0),
        ],
        "{backend}"
    );
}

macro_rules! on_both_backends_shared {
    ($($check:ident),* $(,)?) => {
        mod shared_postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let db = super::pg_catalog().await;
                    super::$check(db.catalog.clone()).await;
                }
            )*
        }
        mod shared_sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let db = super::sqlite_catalog().await;
                    super::$check(db.catalog.clone()).await;
                }
            )*
        }
    };
}

on_both_backends_shared!(
    quota_rule_chooses_the_oldest_jobs,
    source_walks_the_sweep_in_job_order,
    a_job_eligible_mid_sweep_waits_for_the_next,
    two_sources_never_share_a_row,
);

#[tokio::test]
async fn postgres_a_claim_locks_only_what_it_claims() {
    a_claim_locks_only_what_it_claims().await;
}

// The live schema, as `Catalog::describe_table` reports it, on the uploads
// schema (`uploads_schema`) and the shipped one.

fn described<'a>(table: &'a TableSchema, name: &str) -> &'a Column {
    table
        .columns
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("{}: no column {name} in {:?}", table.name, table.columns))
}

async fn describe(db: &dyn Catalog, table: &str) -> Option<TableSchema> {
    db.describe_table(&TableName::new(table).unwrap())
        .await
        .unwrap_or_else(|e| panic!("describe {table}: {}", e.chain()))
}

pub(crate) async fn describe_table_reports_columns(db: &dyn Catalog) {
    let sqlite = db.backend() == "sqlite";
    let documents = describe(db, "documents").await.expect("documents exists");
    assert_eq!(documents.name, "documents");
    assert_eq!(documents.schema, if sqlite { "main" } else { "public" });
    assert_eq!(
        documents
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        [
            "id",
            "org_id",
            "filename",
            "bucket",
            "path",
            "created_at",
            "digest",
            "size",
            "archive_provider",
            "archive_bucket",
            "archive_key",
            "archived_at"
        ]
    );
    // The bigint identity key: an integer, the primary key, never NULL.
    let id = described(&documents, "id");
    assert_eq!(
        (id.family, id.primary_key, id.nullable),
        (TypeFamily::Integer { bits: 64 }, true, false)
    );
    assert_eq!(documents.primary_key().len(), 1);
    let digest = described(&documents, "digest");
    assert_eq!((digest.family, digest.nullable), (TypeFamily::Text, true));
    let org = described(&documents, "org_id");
    assert!(!org.nullable && !org.primary_key);
    assert_eq!(
        described(&documents, "size").family,
        TypeFamily::Integer { bits: 64 }
    );

    let posts = describe(db, "posts").await.expect("posts exists");
    let post_id = described(&posts, "id");
    assert!(post_id.primary_key && !post_id.nullable);
    let created = described(&posts, "created_at");
    if sqlite {
        // As close as SQLite gets: uuids and times are text.
        assert_eq!(org.family, TypeFamily::Text);
        assert_eq!(post_id.family, TypeFamily::Text);
        assert_eq!(created.family, TypeFamily::Text);
        assert_eq!(
            described(&posts, "image_bytes").family,
            TypeFamily::Integer { bits: 64 }
        );
    } else {
        assert_eq!(org.family, TypeFamily::Uuid);
        assert_eq!(post_id.family, TypeFamily::Uuid);
        assert_eq!(
            created.family,
            TypeFamily::Timestamp {
                with_time_zone: true
            }
        );
        assert_eq!(created.declared, "timestamp with time zone");
        assert_eq!(
            described(&posts, "image_bytes").family,
            TypeFamily::Integer { bits: 32 }
        );
    }

    // The shipped schema.
    let tasks = describe(db, "tasks").await.expect("tasks exists");
    let task_id = described(&tasks, "id");
    assert_eq!(
        (task_id.family, task_id.primary_key),
        (TypeFamily::Text, true)
    );
    assert_eq!(
        described(&tasks, "html_archive_attempts").family,
        TypeFamily::Integer {
            bits: if sqlite { 64 } else { 32 }
        }
    );
    assert!(!described(&tasks, "html_archive_attempts").nullable);

    // Qualified names, missing tables and case.
    let qualified = if sqlite {
        "main.documents"
    } else {
        "public.documents"
    };
    assert_eq!(describe(db, qualified).await, Some(documents.clone()));
    assert_eq!(describe(db, "nope.documents").await, None);
    assert_eq!(describe(db, "no_such_table").await, None);
    let upper = describe(db, "Documents").await;
    if sqlite {
        assert_eq!(upper.map(|t| t.name), Some("documents".to_owned()));
        let id = coldsweep::catalog::Ident::new("ID").unwrap();
        assert_eq!(documents.column(&id).map(|c| c.name.as_str()), Some("id"));
    } else {
        // Names are quoted, so case counts on Postgres.
        assert_eq!(upper, None);
    }
}

pub(crate) async fn check_condition_asks_the_database(db: &dyn Catalog) {
    let sqlite = db.backend() == "sqlite";
    let documents = TableName::new("documents").unwrap();
    let check = |text: &str| {
        let condition = Condition::new(text).unwrap();
        let documents = documents.clone();
        async move { db.check_condition(&documents, &condition).await }
    };
    for good in [
        "filename <> 'keep.pdf' AND size IS NOT NULL",
        "EXISTS (SELECT 1 FROM posts p WHERE p.title = filename)",
    ] {
        check(good)
            .await
            .unwrap_or_else(|e| panic!("{good}: {}", e.chain()));
    }
    for bad in ["no_such_column = 1", "filename = ", "no_such_function(id)"] {
        assert_kind(check(bad).await, ErrorKind::InvalidInput, bad);
    }
    if !sqlite {
        // Postgres checks the type too, and plans without running: a sleep
        // that would take a minute returns at once.
        assert_kind(check("size + 1").await, ErrorKind::InvalidInput, "size + 1");
        let started = std::time::Instant::now();
        check("pg_sleep(60) IS NOT NULL").await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}

#[tokio::test]
async fn postgres_describe_table_reports_columns() {
    let db = crate::uploads_schema::pg_uploads().await;
    describe_table_reports_columns(db.catalog.as_ref()).await;
}

#[tokio::test]
async fn sqlite_describe_table_reports_columns() {
    let db = crate::uploads_schema::sqlite_uploads().await;
    describe_table_reports_columns(db.catalog.as_ref()).await;
}

#[tokio::test]
async fn postgres_check_condition_asks_the_database() {
    let db = crate::uploads_schema::pg_uploads().await;
    check_condition_asks_the_database(db.catalog.as_ref()).await;
}

#[tokio::test]
async fn sqlite_check_condition_asks_the_database() {
    let db = crate::uploads_schema::sqlite_uploads().await;
    check_condition_asks_the_database(db.catalog.as_ref()).await;
}
