//! Faults from the stores, on every backend: transient errors are retried
//! within the blob's time limit, permanent ones are reported by kind, and
//! bad bytes (truncated reads, a store that keeps other bytes) never cost
//! the hot copy.
//!
//! What each test catches if broken is said at the test.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::{BlobState, TaskRow};
use coldsweep::config::VerifyMode;
use coldsweep::store::exists;
use coldsweep::{Archiver, ErrorKind, Store};

use crate::faults::{Fault, Faults, FaultyStore, Op};
use crate::pipeline::{BACKENDS, Rig, cold_location, hot_location};

/// A rig with one old job (archived with retention 1) and both stores wrapped.
struct FaultRig {
    rig: Rig,
    hot: Arc<dyn Store>,
    cold: Arc<dyn Store>,
    hot_faults: Arc<Faults>,
    cold_faults: Arc<Faults>,
}

impl FaultRig {
    async fn new(rig: Rig) -> FaultRig {
        rig.old_and_new_jobs().await;
        let (hot, hot_faults) = FaultyStore::wrap(rig.hot.clone());
        let (cold, cold_faults) = FaultyStore::wrap(rig.cold.clone());
        FaultRig {
            rig,
            hot,
            cold,
            hot_faults,
            cold_faults,
        }
    }

    /// An archiver over the faulty stores; `later` hours ahead so that
    /// back-offs of earlier sweeps have ended.
    fn archiver(&self, later: i64, tweak: impl FnOnce(&mut coldsweep::Config)) -> Archiver {
        let mut config = self.rig.config(1);
        tweak(&mut config);
        let now = Utc::now() + chrono::Duration::hours(later);
        self.rig
            .archiver_with(self.hot.clone(), self.cold.clone(), config)
            .with_clock(Arc::new(move || now))
    }

    fn faults(&self, op: Op) -> &Faults {
        match op {
            Op::Get | Op::Delete | Op::DeleteMany => &self.hot_faults,
            Op::Put | Op::Head => &self.cold_faults,
        }
    }

    async fn hot_untouched(&self, task: &str, bytes: &Bytes) {
        assert_eq!(
            self.rig
                .hot
                .get(&hot_location("old", task))
                .await
                .ok()
                .as_ref(),
            Some(bytes),
            "{task}: hot copy changed or gone"
        );
    }
}

/// Catches: no blob-level retry (the blob fails and waits a whole interval),
/// retrying something other than the failed blob, or re-uploading a cold
/// copy that was already verified (the delete fault comes after the upload).
#[tokio::test]
async fn transient_faults_on_each_step_are_retried_within_the_same_sweep() {
    for backend in BACKENDS {
        let f = FaultRig::new(Rig::new(backend).await).await;
        // A quarantined blob keeps `old` from being marked archived by the
        // first sweep, so the tasks added below still belong to a finished job.
        f.rig
            .catalog
            .insert_task(&TaskRow {
                id: "keeper".to_owned(),
                job_id: "old".to_owned(),
                html_storage_bucket: Some("task-html".to_owned()),
                html_storage_path: Some("keeper".to_owned()),
                html_archive_state: Some("quarantined".to_owned()),
                ..TaskRow::default()
            })
            .await
            .unwrap();
        let ops = [Op::Get, Op::Put, Op::Head, Op::Delete];
        let counts = |f: &FaultRig| ops.map(|op| f.faults(op).calls(op));

        // A clean move gives the calls per step of one run of the pipeline.
        let mut all = vec![("old", "clean", f.rig.task("old", "clean").await)];
        let before = counts(&f);
        let report = f.archiver(0, |_| {}).sweep().await;
        assert_eq!(report.archived, 1, "{backend:?}: {report:?}");
        let after = counts(&f);
        let once: Vec<u64> = (0..4).map(|i| after[i] - before[i]).collect();

        for (n, (op, fault)) in ops
            .iter()
            .flat_map(|op| Fault::TRANSIENT.map(|fault| (*op, fault)))
            .enumerate()
        {
            let i = ops.iter().position(|o| *o == op).unwrap();
            if once[i] == 0 {
                // Not a step of this store's moves (a fresh blob on a store
                // whose upload answer proves the copy makes no HEAD).
                continue;
            }
            let task: &'static str = Box::leak(format!("t{n}").into_boxed_str());
            all.push(("old", task, f.rig.task("old", task).await));
            f.faults(op).fail_next(op, fault, 2);
            let puts = f.cold_faults.calls(Op::Put);
            let before = counts(&f);

            let report = f.archiver(0, |_| {}).sweep().await;
            let case = format!("{backend:?} {fault:?} on {op:?}");
            assert!(report.is_clean(), "{case}: {report:?}");
            assert_eq!(
                report.archived, 1,
                "{case}: not archived in the same sweep: {report:?}"
            );
            assert_eq!(
                f.faults(op).calls(op) - before[i],
                once[i] + 2,
                "{case}: two failed attempts, then the usual calls"
            );
            assert_eq!(
                f.cold_faults.calls(Op::Put) - puts,
                1 + u64::from(op == Op::Put) * 2,
                "{case}: the verified cold copy is uploaded once"
            );
            assert_eq!(f.rig.row(task).await.state(), BlobState::Archived, "{case}");
            f.rig.audit(&all).await;
        }
    }
}

/// Catches: a blob retried past its time limit (the sweep would hang on
/// the endless fault), a failure that deletes the hot copy, or a failed
/// blob that is never retried by a later sweep.
#[tokio::test]
async fn faults_outlasting_the_blob_limit_fail_as_transient_and_finish_later() {
    for backend in BACKENDS {
        let f = FaultRig::new(Rig::new(backend).await).await;
        let stalled = f.rig.task("old", "stalled").await;
        let all = [("old", "stalled", stalled.clone())];

        // A hot store that hangs longer than the blob may take.
        f.hot_faults.get_delay_ms.store(2_000, Ordering::SeqCst);
        let report = f
            .archiver(0, |c| c.blob_timeout = Duration::from_millis(300))
            .sweep()
            .await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::Transient)
        );
        let row = f.rig.row("stalled").await;
        assert_eq!(
            (row.state(), row.html_archive_attempts),
            (BlobState::Hot, 1)
        );
        f.hot_untouched("stalled", &stalled).await;
        f.rig.audit(&all).await;
        f.hot_faults.get_delay_ms.store(0, Ordering::SeqCst);

        // A cold store that throttles every upload: retried, then given up.
        f.cold_faults.fail_next(Op::Put, Fault::Throttled, u32::MAX);
        let report = f.archiver(1, |_| {}).sweep().await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::Transient)
        );
        let puts = f.cold_faults.calls(Op::Put);
        assert!((2..=10).contains(&puts), "{backend:?}: {puts} put attempts");
        assert_eq!(
            f.hot_faults.calls(Op::Delete),
            0,
            "hot deleted without cold copy"
        );
        f.hot_untouched("stalled", &stalled).await;
        f.rig.audit(&all).await;

        // Once the fault is gone and the back-off over, the next sweep moves it.
        f.cold_faults.fail_next(Op::Put, Fault::Throttled, 0);
        let report = f.archiver(0, |_| {}).sweep().await;
        assert_eq!(report.archived, 0, "{backend:?}: retried before retry_at");
        let report = f.archiver(2, |_| {}).sweep().await;
        assert_eq!(report.archived, 1, "{backend:?}: {report:?}");
        f.rig.audit(&all).await;
    }
}

/// Catches: retrying by any error (the denied put would be tried again) or
/// losing the kind on the way to the report.
#[tokio::test]
async fn a_permanent_error_is_not_retried_and_is_reported_by_kind() {
    for backend in BACKENDS {
        let f = FaultRig::new(Rig::new(backend).await).await;
        let a = f.rig.task("old", "a").await;
        f.cold_faults.fail_next(Op::Put, Fault::Denied, u32::MAX);

        let report = f.archiver(0, |_| {}).sweep().await;
        assert_eq!(report.failed, 1, "{backend:?}: {report:?}");
        assert_eq!(
            report.problems[0].what,
            ProblemKind::Failed(ErrorKind::PermissionDenied)
        );
        assert_eq!(f.cold_faults.calls(Op::Put), 1, "{backend:?}: retried");
        assert_eq!(f.hot_faults.calls(Op::Get), 1, "{backend:?}: retried");
        f.hot_untouched("a", &a).await;
        f.rig.audit(&[("old", "a", a)]).await;
    }
}

/// Catches: moving a blob whose hot read came back short (the catalog's
/// size and digest disagree with it) — the short copy would replace the
/// only good one.
#[tokio::test]
async fn a_truncated_hot_read_is_quarantined_and_never_moved() {
    for backend in BACKENDS {
        let f = FaultRig::new(Rig::new(backend).await).await;
        let a = f.rig.task("old", "a").await;
        f.hot_faults.truncate_get.store(true, Ordering::SeqCst);

        let report = f.archiver(0, |_| {}).sweep().await;
        assert_eq!(
            (report.quarantined, report.archived),
            (1, 0),
            "{backend:?}: {report:?}"
        );
        assert_eq!(f.rig.row("a").await.state(), BlobState::Quarantined);
        assert_eq!(f.cold_faults.calls(Op::Put), 0, "{backend:?}: uploaded");
        assert_eq!(f.hot_faults.calls(Op::Delete), 0, "{backend:?}: deleted");
        assert!(
            !exists(f.rig.cold.as_ref(), &cold_location("old", "a"))
                .await
                .unwrap()
        );
        f.hot_untouched("a", &a).await;
    }
}

/// Catches: a verification that trusts the upload (a short read-back or a
/// store keeping other bytes would pass), or retrying an integrity failure
/// as if it were transient.
#[tokio::test]
async fn a_bad_cold_copy_is_an_integrity_failure_and_the_hot_copy_stays() {
    for backend in BACKENDS {
        for case in ["truncated read-back", "wrong bytes stored"] {
            let f = FaultRig::new(Rig::new(backend).await).await;
            let a = f.rig.task("old", "a").await;
            let verify = if case == "truncated read-back" {
                f.cold_faults.truncate_get.store(true, Ordering::SeqCst);
                VerifyMode::ReadBack
            } else {
                f.cold_faults.corrupt_put.store(true, Ordering::SeqCst);
                VerifyMode::Auto
            };

            let report = f.archiver(0, |c| c.verify = verify).sweep().await;
            assert_eq!(report.failed, 1, "{backend:?} {case}: {report:?}");
            assert_eq!(
                report.problems[0].what,
                ProblemKind::Failed(ErrorKind::Integrity),
                "{backend:?} {case}"
            );
            assert_eq!(
                f.cold_faults.calls(Op::Put),
                1,
                "{backend:?} {case}: retried"
            );
            assert_eq!(f.hot_faults.calls(Op::Delete), 0, "{backend:?} {case}");
            let row = f.rig.row("a").await;
            assert_eq!((row.state(), row.html_archive_key), (BlobState::Hot, None));
            f.hot_untouched("a", &a).await;
            if case == "truncated read-back" {
                // The stored copy is whole; only the reading was bad.
                f.rig.audit(&[("old", "a", a)]).await;
            }
        }
    }
}
