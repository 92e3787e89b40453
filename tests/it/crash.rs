//! Crash anywhere: a sweep that dies at any step of the per-blob pipeline
//! leaves every row pointing at a copy that exists, and a later sweep
//! finishes the job without duplicates or loss.
//!
//! Failpoints are wrappers around our own seams (the `Store` trait for the
//! hot and cold stores, `ArchiveSource` for the catalog updates), so the
//! production code carries no test hooks. A "crash" at a step freezes the
//! whole sweep the moment that step completes: the step's side effect has
//! happened, and from then on no wrapped operation of any blob starts or
//! returns (each one awaits a future that never completes). Once the
//! operations already in flight have landed, the test aborts the sweep task
//! — exactly a process dying there: nothing released, leases left in place.
//!
//! The last test runs the real binary and kills it with SIGKILL many times.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use coldsweep::archiver::CatalogJobMarker;
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{BlobState, Claim, Fence, JobRow, Lease, TaskRow};
use coldsweep::error::Result;
use coldsweep::store::{ObjectMeta, PutOptions, PutResult, S3Store, exists};
use coldsweep::{
    ArchiveCandidate, ArchiveSource, Archiver, Catalog, KeyPrefix, Location, ObjectKey, Store,
    TaskHtmlSource, task_html_object_path,
};
use futures::StreamExt;
use tokio::sync::Notify;

use crate::cli::coldsweep;
use crate::faults::FaultyStore;
use crate::harness;
use crate::pipeline::{
    BACKENDS, COLD_BUCKET, HOT_BUCKET, Rig, cold_location, gzip, hot_location, sha256_hex,
};

/// A step of the per-blob pipeline a crash can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The hot bytes were read.
    Read,
    /// The cold copy was uploaded.
    Put,
    /// The cold copy was verified (the catalog switch is next).
    Verify,
    /// The catalog was switched to the cold copy.
    Switch,
    /// The hot copy was deleted.
    HotDelete,
    /// The hot reference was cleared: the blob is done.
    ClearHotRef,
}

/// Where a sweep dies, and what it did before: shared by the wrappers of one sweep.
#[derive(Debug, Default)]
pub(crate) struct Crash {
    /// Die when `Step` completes for the `usize`-th time (1-based); never if `None`.
    point: Option<(Step, usize)>,
    reached: AtomicUsize,
    crashed: AtomicBool,
    /// Wrapped operations started and not yet returned.
    in_flight: AtomicUsize,
    died: Notify,
    /// Completed cold uploads per key.
    puts: Mutex<HashMap<String, usize>>,
}

impl Crash {
    pub(crate) fn at(step: Step, nth: usize) -> Arc<Crash> {
        Arc::new(Crash {
            point: Some((step, nth)),
            ..Crash::default()
        })
    }

    pub(crate) fn never() -> Arc<Crash> {
        Arc::new(Crash::default())
    }

    /// Count `step`; true when this is the one to die at (and now dead).
    fn hit(&self, step: Step) -> bool {
        let Some((at, nth)) = self.point else {
            return false;
        };
        if at != step || self.reached.fetch_add(1, Ordering::SeqCst) + 1 != nth {
            return false;
        }
        self.crashed.store(true, Ordering::SeqCst);
        self.died.notify_one();
        true
    }

    /// Run `op` unless dead; `before` is counted before it, `after` once it completed.
    async fn guard<T>(
        &self,
        before: Option<Step>,
        after: Option<Step>,
        op: impl Future<Output = T>,
    ) -> T {
        self.guard_rows(before.map(|step| (step, 1)), after, |_| 1, op)
            .await
    }

    /// [`guard`](Crash::guard) for an operation on many blobs: `before` is
    /// counted `rows` times before it, and `after` once per blob `done`
    /// says it completed for, so a crash can fall after any blob of it.
    async fn guard_rows<T>(
        &self,
        before: Option<(Step, usize)>,
        after: Option<Step>,
        done: impl Fn(&T) -> usize,
        op: impl Future<Output = T>,
    ) -> T {
        // Counted in flight before the check, so a crash seen by the test
        // waits for every operation that got past it.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut dead = self.crashed.load(Ordering::SeqCst);
        if let Some((step, rows)) = before {
            dead = dead || (0..rows).any(|_| self.hit(step));
        }
        if dead {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        let out = op.await;
        if let Some(step) = after {
            for _ in 0..done(&out) {
                self.hit(step);
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.crashed.load(Ordering::SeqCst) {
            return std::future::pending().await;
        }
        out
    }

    /// Wait until the sweep has died and everything in flight has landed.
    pub(crate) async fn wait_until_dead(&self) {
        let point = self.point;
        tokio::time::timeout(Duration::from_secs(60), self.died.notified())
            .await
            .unwrap_or_else(|_| panic!("the sweep never reached the failpoint {point:?}"));
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn put_done(&self, location: &Location) {
        *self
            .puts
            .lock()
            .unwrap()
            .entry(location.to_string())
            .or_default() += 1;
    }

    pub(crate) fn puts_of(&self, location: &Location) -> usize {
        self.puts
            .lock()
            .unwrap()
            .get(&location.to_string())
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Hot,
    Cold,
}

/// A store whose operations stop dead once the sweep has crashed.
#[derive(Debug)]
struct CrashingStore {
    inner: Arc<dyn Store>,
    role: Role,
    crash: Arc<Crash>,
}

#[async_trait]
impl Store for CrashingStore {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn upload_checksum(&self) -> &str {
        self.inner.upload_checksum()
    }

    fn etag_proves_md5(&self) -> bool {
        self.inner.etag_proves_md5()
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
        let after = (self.role == Role::Cold).then_some(Step::Put);
        self.crash
            .guard(None, after, async {
                let result = self.inner.put(location, body, options).await;
                if result.is_ok() {
                    self.crash.put_done(location);
                }
                result
            })
            .await
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        let after = (self.role == Role::Hot).then_some(Step::Read);
        self.crash
            .guard(None, after, self.inner.get(location))
            .await
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        self.crash
            .guard(None, None, self.inner.head(location))
            .await
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        let after = (self.role == Role::Hot).then_some(Step::HotDelete);
        self.crash
            .guard(None, after, self.inner.delete(location))
            .await
    }

    /// The store's own bulk delete, in two halves: a crash after a key of
    /// the first half dies in the middle of the bulk delete, some keys
    /// deleted and some not.
    async fn delete_many(&self, locations: &[Location]) -> Vec<Result<()>> {
        let after = (self.role == Role::Hot).then_some(Step::HotDelete);
        let deleted = |results: &Vec<Result<()>>| results.iter().filter(|r| r.is_ok()).count();
        let (first, second) = locations.split_at(locations.len().div_ceil(2));
        let mut results = Vec::with_capacity(locations.len());
        for half in [first, second] {
            results.extend(
                self.crash
                    .guard_rows(None, after, deleted, self.inner.delete_many(half))
                    .await,
            );
        }
        results
    }
}

/// An archive source whose catalog updates stop dead once the sweep has crashed.
struct CrashingSource {
    inner: Arc<dyn ArchiveSource>,
    crash: Arc<Crash>,
}

#[async_trait]
impl ArchiveSource for CrashingSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn claim(&self, batch: usize, lease: &Lease) -> Result<Claim> {
        self.crash
            .guard(None, None, self.inner.claim(batch, lease))
            .await
    }

    fn cold_key(&self, candidate: &ArchiveCandidate, prefix: &KeyPrefix) -> Result<ObjectKey> {
        self.inner.cold_key(candidate, prefix)
    }

    async fn record_archived(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
        key: &str,
    ) -> Result<()> {
        // The pipeline verifies the cold copy right before switching the
        // catalog: dying on the way in is dying after the verify.
        self.crash
            .guard(
                Some(Step::Verify),
                Some(Step::Switch),
                self.inner
                    .record_archived(candidate, fence, provider, bucket, key),
            )
            .await
    }

    async fn clear_hot(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.crash
            .guard(
                None,
                Some(Step::ClearHotRef),
                self.inner.clear_hot(candidate, fence),
            )
            .await
    }

    async fn record_archived_many(
        &self,
        switches: &[(&ArchiveCandidate, &str)],
        fence: Fence<'_>,
        provider: &str,
        bucket: &str,
    ) -> Result<Vec<String>> {
        let written = |ids: &Result<Vec<String>>| ids.as_ref().map_or(0, Vec::len);
        self.crash
            .guard_rows(
                Some((Step::Verify, switches.len())),
                Some(Step::Switch),
                written,
                self.inner
                    .record_archived_many(switches, fence, provider, bucket),
            )
            .await
    }

    async fn clear_hot_many(
        &self,
        candidates: &[&ArchiveCandidate],
        fence: Fence<'_>,
    ) -> Result<Vec<String>> {
        let cleared = |ids: &Result<Vec<String>>| ids.as_ref().map_or(0, Vec::len);
        self.crash
            .guard_rows(
                None,
                Some(Step::ClearHotRef),
                cleared,
                self.inner.clear_hot_many(candidates, fence),
            )
            .await
    }

    async fn mark_lost(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.crash
            .guard(None, None, self.inner.mark_lost(candidate, fence, reason))
            .await
    }

    async fn mark_missing(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
        seen_at: DateTime<Utc>,
        recheck_at: DateTime<Utc>,
    ) -> Result<()> {
        self.crash
            .guard(
                None,
                None,
                self.inner
                    .mark_missing(candidate, fence, reason, seen_at, recheck_at),
            )
            .await
    }

    async fn clear_missing(&self, candidate: &ArchiveCandidate, fence: Fence<'_>) -> Result<()> {
        self.crash
            .guard(None, None, self.inner.clear_missing(candidate, fence))
            .await
    }

    async fn hand_back(&self, candidates: &[ArchiveCandidate], owner: &str) -> Result<u64> {
        self.crash
            .guard(None, None, self.inner.hand_back(candidates, owner))
            .await
    }

    async fn extend_leases(
        &self,
        task_ids: &[String],
        fence: Fence<'_>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        self.crash
            .guard(None, None, self.inner.extend_leases(task_ids, fence, until))
            .await
    }

    async fn mark_quarantined(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        reason: &str,
    ) -> Result<()> {
        self.crash
            .guard(
                None,
                None,
                self.inner.mark_quarantined(candidate, fence, reason),
            )
            .await
    }

    async fn release(
        &self,
        candidate: &ArchiveCandidate,
        fence: Fence<'_>,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        self.crash
            .guard(
                None,
                None,
                self.inner.release(candidate, fence, error, retry_at),
            )
            .await
    }
}

/// An archiver over `rig` whose stores and catalog updates obey `crash`.
fn crashing_archiver(rig: &Rig, crash: &Arc<Crash>) -> Archiver {
    crashing_archiver_over(rig, crash, rig.hot.clone(), rig.config(1))
}

/// [`crashing_archiver`] over `hot` (a wrapper of the rig's) with `config`.
fn crashing_archiver_over(
    rig: &Rig,
    crash: &Arc<Crash>,
    hot: Arc<dyn Store>,
    config: coldsweep::Config,
) -> Archiver {
    let source: Arc<dyn ArchiveSource> = Arc::new(CrashingSource {
        inner: Arc::new(TaskHtmlSource::new(
            rig.catalog.clone(),
            config.retention_jobs,
        )),
        crash: crash.clone(),
    });
    let store = |inner: &Arc<dyn Store>, role| -> Arc<dyn Store> {
        Arc::new(CrashingStore {
            inner: inner.clone(),
            role,
            crash: crash.clone(),
        })
    };
    Archiver::new(
        store(&rig.cold, Role::Cold),
        store(&hot, Role::Hot),
        config,
        Arc::new(CatalogJobMarker(rig.catalog.clone())),
        vec![source],
    )
}

/// Blobs of the crash tests: `old` (seven tasks: one batch of the rig's
/// config, three at a time) moves with retention 1; `new` (two tasks) stays.
const OLD_TASKS: usize = 7;

async fn seed(rig: &Rig) -> Vec<(&'static str, &'static str, Bytes)> {
    rig.old_and_new_jobs().await;
    let mut all = Vec::new();
    for (job, n) in [("old", OLD_TASKS), ("new", 2)] {
        for i in 0..n {
            let task: &'static str = Box::leak(format!("{job}-{i}").into_boxed_str());
            all.push((job, task, rig.task(job, task).await));
        }
    }
    all
}

/// The state a crash may leave: every row points at a copy that holds its
/// bytes. A row switched to cold points at the cold copy (its hot reference
/// may be stale: the hot copy may be gone); a row not switched points at the
/// hot copy; a row whose hot reference is cleared has no hot copy left (else
/// it would be an orphan no sweep ever finds).
async fn audit_crashed(rig: &Rig, all: &[(&str, &str, Bytes)]) {
    for (job, task, bytes) in all {
        let row = rig.row(task).await;
        let state = row.state();
        assert!(
            matches!(state, BlobState::Hot | BlobState::Archived),
            "{task}: {state:?} after a crash: {row:?}"
        );
        if let Some(key) = &row.html_archive_key {
            let cold = Location::new(
                row.html_archive_bucket.clone().unwrap(),
                ObjectKey::new(key.clone()).unwrap(),
            );
            assert_eq!(
                rig.cold.get(&cold).await.ok().as_ref(),
                Some(bytes),
                "{task}: the catalog points at cold {cold}, which does not hold the bytes"
            );
        } else {
            assert_eq!(
                rig.hot.get(&hot_location(job, task)).await.ok().as_ref(),
                Some(bytes),
                "{task}: the catalog points at a hot copy that is gone, and at nothing else"
            );
        }
        if state == BlobState::Archived {
            assert!(
                !exists(rig.hot.as_ref(), &hot_location(job, task))
                    .await
                    .unwrap(),
                "{task}: hot reference cleared but the hot copy is still there: an orphan"
            );
        }
    }
}

/// Crash a sweep at the `nth` completion of `step`, audit, then prove that
/// a live worker honours the dead one's leases and that a worker past them
/// finishes everything, uploading each blob exactly once in all.
async fn crash_then_recover(step: Step, nth: usize) {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = seed(&rig).await;

        let crash = Crash::at(step, nth);
        let archiver = crashing_archiver(&rig, &crash);
        let sweep = tokio::spawn(async move { archiver.sweep().await });
        crash.wait_until_dead().await;
        sweep.abort();
        let died = sweep.await.expect_err("the sweep ended on its own");
        assert!(died.is_cancelled(), "{backend:?}: {died}");
        recover(&rig, &all, &crash, &format!("{backend:?} after {step:?}")).await;
    }
}

/// After a crash: audit, then prove that a live worker honours the dead
/// one's leases and that a worker past them finishes everything, uploading
/// each blob exactly once in all.
async fn recover(rig: &Rig, all: &[(&str, &str, Bytes)], crash: &Crash, what: &str) {
    audit_crashed(rig, all).await;
    let done_before = {
        let mut n = 0;
        for (_, task, _) in all {
            n += usize::from(rig.row(task).await.state() == BlobState::Archived);
        }
        n
    };
    let status = rig.catalog.status(Utc::now()).await.unwrap();
    assert_eq!(
        status.leased as usize,
        OLD_TASKS - done_before,
        "{what}: a dead worker's unfinished claims stay leased: {status:?}"
    );

    // Another worker now: the dead worker's claims are not yet expired.
    let early = Crash::never();
    let report = crashing_archiver(rig, &early).sweep().await;
    assert!(report.is_clean(), "{what}: {report:?}");
    assert_eq!(
        (report.archived, report.completed),
        (0, 0),
        "{what}: took over claims before their lease expired"
    );

    // Past the leases: everything finishes.
    let later = Utc::now() + chrono::Duration::days(1);
    let recovery = Crash::never();
    let report = crashing_archiver(rig, &recovery)
        .with_clock(Arc::new(move || later))
        .sweep()
        .await;
    assert!(report.is_clean(), "{what}: {report:?}");
    assert_eq!(report.lost, 0);
    assert_eq!(
        report.archived as usize + report.completed as usize + done_before,
        OLD_TASKS,
        "{what}: {report:?}"
    );
    for (job, task, bytes) in all {
        let row = rig.row(task).await;
        let cold = cold_location(job, task);
        if *job == "old" {
            assert_eq!(row.state(), BlobState::Archived, "{what}: {task}");
            assert_eq!(row.html_archive_key.as_deref(), Some(cold.key.as_str()));
            assert_eq!(rig.cold.get(&cold).await.unwrap(), *bytes, "{task}");
            assert!(
                !exists(rig.hot.as_ref(), &hot_location(job, task))
                    .await
                    .unwrap(),
                "{what}: {task}: hot copy left behind"
            );
            let puts = crash.puts_of(&cold) + early.puts_of(&cold) + recovery.puts_of(&cold);
            assert_eq!(puts, 1, "{what}: {task} uploaded {puts} times");
        } else {
            assert_eq!(row.state(), BlobState::Hot, "{what}: {task}");
            assert!(!exists(rig.cold.as_ref(), &cold).await.unwrap());
        }
    }
    rig.audit(all).await;
    let status = rig.catalog.status(later).await.unwrap();
    assert_eq!((status.lost, status.quarantined), (0, 0), "{status:?}");
}

#[tokio::test]
async fn crash_after_read_is_finished_by_the_next_worker() {
    crash_then_recover(Step::Read, 1).await;
}

/// Catches switching the catalog before the upload (pipeline order
/// `… switch → put → verify …`): `audit_crashed` finds a row switched to a
/// cold key that holds nothing. Catches re-uploading instead of reusing a
/// verified copy left by the dead worker (dropping the `cold_holds` check
/// before the put): "uploaded 2 times". Both checked by breaking
/// `src/archiver/pipeline.rs` that way.
#[tokio::test]
async fn crash_after_put_reuses_the_upload() {
    crash_then_recover(Step::Put, 1).await;
}

#[tokio::test]
async fn crash_after_verify_is_finished_by_the_next_worker() {
    crash_then_recover(Step::Verify, 1).await;
}

/// Catches switching the catalog before the upload is verified (or made):
/// `audit_crashed` finds a row pointing at a cold key without the bytes
/// (checked by moving the switch before the put in `src/archiver/pipeline.rs`).
#[tokio::test]
async fn crash_after_catalog_switch_deletes_the_hot_copy_later() {
    crash_then_recover(Step::Switch, 1).await;
}

/// Catches deleting the hot copy before the catalog switch (pipeline order
/// `… verify → delete hot → switch`): dying right after the delete leaves a
/// row that points only at the deleted hot copy, and `audit_crashed` fails
/// with "points at a hot copy that is gone". Checked by breaking
/// `src/archiver/pipeline.rs` that way.
#[tokio::test]
async fn crash_after_hot_delete_finishes_the_bookkeeping() {
    crash_then_recover(Step::HotDelete, 1).await;
}

/// A crash in the middle of a bulk delete: the seven blobs, read at once
/// (held at a gate until all are), are switched in one chunk; the crash
/// falls after the first half of their hot copies is deleted. Every row
/// still points at a real copy (those whose hot copy is gone at cold), and
/// the next worker finishes them all without uploading any again.
#[tokio::test]
async fn crash_in_the_middle_of_a_bulk_delete() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = seed(&rig).await;
        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.gate.close();
        let mut config = rig.config(1);
        config.concurrency = OLD_TASKS;
        let crash = Crash::at(Step::HotDelete, 1);
        let archiver = crashing_archiver_over(&rig, &crash, hot, config);
        let sweep = tokio::spawn(async move { archiver.sweep().await });
        faults.gate.held(OLD_TASKS as u32).await;
        faults.gate.open();
        crash.wait_until_dead().await;
        sweep.abort();
        assert!(
            sweep
                .await
                .expect_err("the sweep ended on its own")
                .is_cancelled()
        );

        let (mut gone, mut kept) = (0, 0);
        for (job, task, _) in all.iter().filter(|(job, _, _)| *job == "old") {
            let row = rig.row(task).await;
            assert!(
                row.html_archive_key.is_some() && row.html_storage_path.is_some(),
                "{backend:?}: {task} was not switched with its chunk: {row:?}"
            );
            if exists(rig.hot.as_ref(), &hot_location(job, task))
                .await
                .unwrap()
            {
                kept += 1;
            } else {
                gone += 1;
            }
        }
        assert_eq!(
            (gone, kept),
            (4, 3),
            "{backend:?}: the first half of the bulk delete, and only it"
        );
        recover(&rig, &all, &crash, &format!("{backend:?} mid bulk delete")).await;
    }
}

/// Catches clearing the hot reference before the hot delete (pipeline order
/// `… switch → clear hot ref → delete hot`): dying right after the clear
/// leaves a hot copy no row references, and `audit_crashed` fails with
/// "an orphan". Checked by breaking `src/archiver/pipeline.rs` that way.
#[tokio::test]
async fn crash_after_clearing_the_hot_reference_leaves_nothing_to_do() {
    crash_then_recover(Step::ClearHotRef, 1).await;
}

/// Mid-batch: four of the batch's seven blobs finished, the other three (up
/// to three in flight) frozen wherever they were.
#[tokio::test]
async fn crash_mid_batch_after_four_of_seven_blobs_finished() {
    crash_then_recover(Step::ClearHotRef, 4).await;
}

/// xorshift64: the kill schedule, the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

const KILL_JOBS: usize = 20;
const KILL_TASKS_PER_JOB: usize = 100;
const KILLS: usize = 20;
/// More kills, while none has yet caught a blob between its catalog switch and
/// its hot reference cleared: that window is one bulk delete long, and a
/// loaded machine can miss it twenty times.
const KILLS_MAX: usize = 36;

/// One task's blob as seeded: where it lives hot and what it holds.
struct Seeded {
    job: String,
    path: String,
    stored: Bytes,
    sha256: String,
}

/// The catalog's view of one task, read in one query after each kill.
type RowView = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// After each SIGKILL: every row points at an object (read straight from
/// the S3 server's folder) holding its bytes, and no cleared hot reference
/// left its hot object behind. Returns how many rows are fully archived,
/// and how many are mid-move (switched to cold, hot reference not cleared).
fn audit_killed(root: &Path, rows: &[RowView], seeded: &HashMap<String, Seeded>) -> (usize, usize) {
    let (mut archived, mut mid_move) = (0, 0);
    for (id, hot_path, cold_bucket, cold_key, state) in rows {
        let blob = &seeded[id];
        assert_eq!(state.as_deref(), None, "{id}: {state:?} after a kill");
        let (what, file) = match (cold_bucket, cold_key) {
            (Some(bucket), Some(key)) => ("cold", root.join(bucket).join(key)),
            _ => {
                let path = hot_path
                    .as_deref()
                    .unwrap_or_else(|| panic!("{id}: neither a hot nor a cold location"));
                ("hot", root.join(HOT_BUCKET).join(path))
            }
        };
        let bytes = std::fs::read(&file).unwrap_or_else(|e| {
            panic!(
                "{id}: the catalog points at {what} {}, which is gone: {e}",
                file.display()
            )
        });
        assert!(
            bytes == blob.stored,
            "{id}: {what} {} holds other bytes",
            file.display()
        );
        if hot_path.is_some() && cold_key.is_some() {
            mid_move += 1;
        }
        if hot_path.is_none() {
            archived += 1;
            assert!(
                !root.join(HOT_BUCKET).join(&blob.path).exists(),
                "{id}: hot reference cleared, hot object left behind (an orphan)"
            );
        }
    }
    (archived, mid_move)
}

async fn rows_of(conn: &mut sqlx::PgConnection) -> Vec<RowView> {
    sqlx::query_as(
        "SELECT id, html_storage_path, html_archive_bucket, html_archive_key, \
         html_archive_state FROM tasks ORDER BY id",
    )
    .fetch_all(conn)
    .await
    .expect("read the tasks")
}

/// Object keys under `bucket` of the S3 server's folder.
fn keys_in(root: &Path, bucket: &str) -> HashSet<String> {
    let base = root.join(bucket);
    crate::cli::files_under(&base)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&base)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The real binary, against real Postgres and the S3 server (hot and cold
/// buckets), SIGKILLed at pseudo-random moments many times and restarted;
/// each kill is followed by the crash audit, and after the last one sweeps
/// run until nothing is left. Then every blob is exactly where the catalog
/// says, with its digest, nothing is lost, and neither bucket holds an
/// object no row references.
///
/// Catches any pipeline order that leaves a dangling pointer or orphan at
/// some instant (as the failpoint tests above do), plus what wrappers
/// cannot: torn requests and transactions cut off by a real process death.
#[tokio::test]
async fn sigkill_at_random_moments_loses_nothing() {
    let started = Instant::now();
    let db = harness::pg::fresh_database().await;
    let catalog = db.catalog().await;
    catalog.migrate().await.unwrap();
    let server = harness::s3::S3Server::start().await;
    server.create_bucket(HOT_BUCKET);
    server.create_bucket(COLD_BUCKET);
    let hot: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());

    // Seed: KILL_JOBS finished jobs of one domain; retention 1 keeps the newest hot.
    let base = crate::pipeline::at(0);
    let mut seeded = HashMap::new();
    let mut rows = Vec::new();
    for j in 0..KILL_JOBS {
        let job = format!("k{j:02}");
        catalog
            .insert_job(&JobRow {
                id: job.clone(),
                domain_id: 1,
                organisation_id: None,
                status: "completed".to_owned(),
                created_at: base + chrono::Duration::minutes(j as i64),
                completed_at: Some(base + chrono::Duration::minutes(j as i64 + 1)),
            })
            .await
            .unwrap();
        for t in 0..KILL_TASKS_PER_JOB {
            let task = format!("{job}-t{t:03}");
            let html = format!("<html><body>{task}: {}</body></html>", "x".repeat(t * 7));
            let stored = gzip(html.as_bytes());
            let path = task_html_object_path(&job, &task);
            rows.push(TaskRow {
                id: task.clone(),
                job_id: job.clone(),
                html_storage_bucket: Some(HOT_BUCKET.to_owned()),
                html_storage_path: Some(path.clone()),
                html_content_type: Some("text/html; charset=utf-8".to_owned()),
                html_content_encoding: Some("gzip".to_owned()),
                html_compressed_size_bytes: Some(stored.len() as i64),
                html_sha256: Some(sha256_hex(html.as_bytes())),
                ..TaskRow::default()
            });
            let sha256 = sha256_hex(html.as_bytes());
            seeded.insert(
                task,
                Seeded {
                    job: job.clone(),
                    path,
                    stored,
                    sha256,
                },
            );
        }
    }
    let catalog_ref: &dyn Fixtures = &catalog;
    let inserted: Vec<Result<()>> = futures::stream::iter(&rows)
        .map(|row| catalog_ref.insert_task(row))
        .buffer_unordered(16)
        .collect()
        .await;
    inserted.into_iter().for_each(|r| r.unwrap());
    let uploaded: Vec<Result<PutResult>> = futures::stream::iter(seeded.values())
        .map(|blob| {
            let location = Location::new(HOT_BUCKET, ObjectKey::new(blob.path.clone()).unwrap());
            let hot = hot.clone();
            async move {
                hot.put(&location, blob.stored.clone(), &PutOptions::default())
                    .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    uploaded.into_iter().for_each(|r| {
        r.unwrap();
    });
    let total = seeded.len();
    let eligible = (KILL_JOBS - 1) * KILL_TASKS_PER_JOB;
    let seeded_in = started.elapsed();

    let command = |args: &[&str]| -> Command {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .env("DATABASE_URL", db.url())
            .env("ARCHIVE_PROVIDER", "minio")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_ENDPOINT", &server.endpoint)
            .env("ARCHIVE_ACCESS_KEY_ID", &server.access_key)
            .env("ARCHIVE_SECRET_ACCESS_KEY", &server.secret_key)
            .env("HOT_STORE", "s3")
            .env("HOT_S3_ENDPOINT", &server.endpoint)
            .env("HOT_S3_REGION", "auto")
            .env("HOT_S3_ACCESS_KEY_ID", &server.access_key)
            .env("HOT_S3_SECRET_ACCESS_KEY", &server.secret_key)
            .env("ARCHIVE_RETENTION_JOBS", "1")
            .env("ARCHIVE_BATCH_SIZE", "20")
            .env("ARCHIVE_CONCURRENCY", "4")
            // A dead worker's claims expire after the lease, 2s, whatever the batch.
            .env("ARCHIVE_BLOB_TIMEOUT", "1s")
            .env("ARCHIVE_LEASE", "2s")
            .env("ARCHIVE_INTERVAL", "100ms");
        cmd
    };

    let mut conn = db.connection().await;
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut progress = Vec::new();
    let caught_mid_move = |progress: &[(u128, usize, usize)]| progress.iter().any(|p| p.2 > 0);
    let mut kill = 0;
    while kill < KILLS || (kill < KILLS_MAX && !caught_mid_move(&progress)) {
        kill += 1;
        let delay = Duration::from_millis(50 + rng.next() % 950);
        let mut child: Child = command(&["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coldsweep run");
        tokio::time::sleep(delay).await;
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kill {kill}: coldsweep run exited by itself ({status})");
        }
        child.kill().expect("SIGKILL coldsweep");
        child.wait().unwrap();
        let (archived, mid_move) = audit_killed(server.root(), &rows_of(&mut conn).await, &seeded);
        progress.push((delay.as_millis(), archived, mid_move));
    }
    let killed_in = started.elapsed() - seeded_in;
    // Not vacuous: kills land while blobs move (here all of them; a quarter
    // leaves room for a machine several times faster), and some catch a
    // blob between the catalog switch and clearing its hot reference.
    let mid_work = progress
        .iter()
        .filter(|(_, archived, _)| (1..eligible).contains(archived))
        .count();
    assert!(
        mid_work >= KILLS / 4 && caught_mid_move(&progress),
        "kills should land while blobs move (delay ms, archived, mid-move): {progress:?}"
    );

    // Sweeps until done: the last dead worker's claims expire within seconds.
    let mut sweeps = 0;
    loop {
        sweeps += 1;
        let ran = crate::cli::run(&mut command(&["sweep", "--once"]));
        let rows = rows_of(&mut conn).await;
        let (archived, _) = audit_killed(server.root(), &rows, &seeded);
        if archived == eligible {
            break;
        }
        assert!(
            sweeps < 15,
            "still {} blobs to move after {sweeps} sweeps\n{}",
            eligible - archived,
            ran.show()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // One more: nothing left to finish (no orphan, no stale reference).
    let last = crate::cli::run(&mut command(&["sweep", "--once"]));
    assert_eq!(last.code, Some(0), "{}", last.show());
    assert!(last.stdout.contains("moved 0 blobs"), "{}", last.show());

    // Through the S3 protocol: every blob exactly where the catalog says.
    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &server.config()).unwrap());
    let checks: Vec<()> = futures::stream::iter(seeded.iter())
        .map(|(id, blob)| {
            let (catalog, hot, cold) = (&catalog, hot.clone(), cold.clone());
            async move {
                let row = catalog.task(id).await.unwrap().expect("row");
                let retained = blob.job == format!("k{:02}", KILL_JOBS - 1);
                let (store, location) = if retained {
                    assert_eq!(row.state(), BlobState::Hot, "{id}");
                    assert_eq!(row.html_archive_key, None, "{id}");
                    let path = row.html_storage_path.clone().unwrap();
                    (
                        hot,
                        Location::new(HOT_BUCKET, ObjectKey::new(path).unwrap()),
                    )
                } else {
                    assert_eq!(row.state(), BlobState::Archived, "{id}: {row:?}");
                    assert_eq!(row.html_archive_provider.as_deref(), Some("minio"));
                    let bucket = row.html_archive_bucket.clone().unwrap();
                    let key = ObjectKey::new(row.html_archive_key.clone().unwrap()).unwrap();
                    (cold, Location::new(bucket, key))
                };
                let bytes = store
                    .get(&location)
                    .await
                    .unwrap_or_else(|e| panic!("{id}: not retrievable from {location}: {e}"));
                assert_eq!(bytes, blob.stored, "{id}: {location} holds other bytes");
                let html = gunzip(&bytes);
                assert_eq!(sha256_hex(&html), blob.sha256, "{id}: digest");
                assert_eq!(row.html_sha256.as_deref(), Some(blob.sha256.as_str()));
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(checks.len(), total);

    // No orphans: each bucket holds exactly what the catalog references.
    let rows = rows_of(&mut conn).await;
    let hot_refs: HashSet<String> = rows.iter().filter_map(|r| r.1.clone()).collect();
    let cold_refs: HashSet<String> = rows.iter().filter_map(|r| r.3.clone()).collect();
    let hot_keys = keys_in(server.root(), HOT_BUCKET);
    let cold_keys: HashSet<String> = keys_in(server.root(), COLD_BUCKET)
        .into_iter()
        .filter(|k| k.starts_with("jobs/"))
        .collect();
    let orphans: Vec<_> = hot_keys.difference(&hot_refs).collect();
    assert!(
        orphans.is_empty(),
        "hot objects no row references: {orphans:?}"
    );
    let orphans: Vec<_> = cold_keys.difference(&cold_refs).collect();
    assert!(
        orphans.is_empty(),
        "cold objects no row references: {orphans:?}"
    );
    assert_eq!(hot_refs.len(), total - eligible);
    assert_eq!(cold_refs.len(), eligible);

    let status = catalog.status(Utc::now()).await.unwrap();
    assert_eq!(
        (status.lost, status.quarantined, status.archived as usize),
        (0, 0, eligible),
        "{status:?}"
    );
    assert_eq!(status.archived_jobs as usize, KILL_JOBS - 1, "{status:?}");
    eprintln!(
        "sigkill: {total} blobs seeded in {seeded_in:?}, {KILLS} kills in {killed_in:?} \
         ((delay ms, archived, mid-move) {progress:?}), {sweeps} final sweep(s), {:?} in all",
        started.elapsed()
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}
