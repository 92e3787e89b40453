//! The sweep's flow: blobs whose copies are proven are switched, deleted
//! and cleared in chunks, and workers are fed continuously, so neither a
//! key the bulk delete refuses nor one slow blob holds the others back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use coldsweep::ErrorKind;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::BlobState;
use coldsweep::store::exists;

use crate::faults::{Fault, FaultyStore, Op};
use crate::pipeline::{BACKENDS, Rig, cold_location, hot_location};

/// Job `old` with `n` blobs (moved with retention 1), job `new` kept.
async fn old_blobs(rig: &Rig, n: usize) -> Vec<(&'static str, &'static str, Bytes)> {
    rig.old_and_new_jobs().await;
    let mut all = Vec::new();
    for i in 0..n {
        let task: &'static str = Box::leak(format!("old-{i}").into_boxed_str());
        all.push(("old", task, rig.task("old", task).await));
    }
    all
}

/// Catches a bulk delete read as all-or-nothing: two keys the hot store
/// refuses for good and one it keeps failing for a passing reason stay
/// pending (switched, hot copy present, error recorded) while the rest of
/// their chunk is archived; once the store lets go, the next sweep
/// finishes exactly those three without uploading them again.
#[tokio::test]
async fn a_bulk_delete_that_refuses_some_keys_leaves_exactly_those_pending() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = old_blobs(&rig, 9).await;
        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        let refused = ["old-1", "old-4"];
        let flaky = "old-7";
        for task in refused {
            faults.fail_delete_of(&hot_location("old", task), Some(Fault::Denied));
        }
        faults.fail_delete_of(&hot_location("old", flaky), Some(Fault::ServerError));
        let mut config = rig.config(1);
        config.batch_size = 100;
        config.concurrency = 9;

        let report = rig
            .archiver_with(hot, rig.cold.clone(), config.clone())
            .sweep()
            .await;
        assert_eq!(
            (report.archived, report.failed),
            (6, 3),
            "{backend:?}: {report:?}"
        );
        assert!(
            faults.calls(Op::DeleteMany) >= 1,
            "{backend:?}: no bulk delete"
        );
        let mut kinds: Vec<_> = report
            .problems
            .iter()
            .map(|p| (p.task_id.clone().unwrap(), p.what))
            .collect();
        kinds.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kinds,
            [
                (
                    "old-1".to_owned(),
                    ProblemKind::Failed(ErrorKind::PermissionDenied)
                ),
                (
                    "old-4".to_owned(),
                    ProblemKind::Failed(ErrorKind::PermissionDenied)
                ),
                (
                    "old-7".to_owned(),
                    ProblemKind::Failed(ErrorKind::Transient)
                ),
            ],
            "{backend:?}"
        );
        for (job, task, _) in &all {
            let row = rig.row(task).await;
            let pending = refused.contains(task) || *task == flaky;
            if pending {
                assert_eq!(row.state(), BlobState::Hot, "{backend:?}: {task}");
                assert_eq!(
                    row.html_archive_key.as_deref(),
                    Some(cold_location(job, task).key.as_str()),
                    "{backend:?}: {task} stays switched"
                );
                assert!(
                    exists(rig.hot.as_ref(), &hot_location(job, task))
                        .await
                        .unwrap()
                );
                assert_eq!(row.html_archive_attempts, 1, "{backend:?}: {task}");
                assert!(row.html_archive_error.is_some(), "{backend:?}: {task}");
            } else {
                assert_eq!(row.state(), BlobState::Archived, "{backend:?}: {task}");
            }
        }
        rig.audit(&all).await;

        let (cold, cold_faults) = FaultyStore::wrap(rig.cold.clone());
        let later = Utc::now() + chrono::Duration::hours(1);
        let report = rig
            .archiver_with(rig.hot.clone(), cold, config)
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        assert_eq!(report.archived, 3, "{backend:?}: {report:?}");
        assert_eq!(
            cold_faults.puts.load(Ordering::SeqCst),
            0,
            "{backend:?}: the verified copies are reused"
        );
        for (_, task, _) in &all {
            assert_eq!(rig.row(task).await.state(), BlobState::Archived, "{task}");
        }
        rig.audit(&all).await;
    }
}

/// Catches a batch barrier: with batches of two and two blobs at a time,
/// one blob stalled on its hot read must not stop the others; the next
/// claims are made and moved around it until only it is left.
#[tokio::test]
async fn one_slow_blob_does_not_hold_back_the_others() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        let all = old_blobs(&rig, 8).await;
        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        let slow = "old-0";
        faults.gate_only(Some(hot_location("old", slow)));
        faults.gate.close();
        let mut config = rig.config(1);
        config.batch_size = 2;
        config.concurrency = 2;
        config.blob_timeout = Duration::from_secs(120);
        let archiver = rig.archiver_with(hot, rig.cold.clone(), config);
        let sweep = tokio::spawn(async move { archiver.sweep().await });
        faults.gate.held(1).await;

        let others: Vec<_> = all.iter().filter(|(_, task, _)| *task != slow).collect();
        let moved = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut archived = 0;
                for (_, task, _) in &others {
                    archived += usize::from(rig.row(task).await.state() == BlobState::Archived);
                }
                if archived == others.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            moved.is_ok(),
            "{backend:?}: the others waited for the slow blob"
        );
        assert_eq!(rig.row(slow).await.state(), BlobState::Hot, "{backend:?}");

        faults.gate.open();
        let report = sweep.await.unwrap();
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        assert_eq!(report.archived, 8, "{backend:?}: {report:?}");
        rig.audit(&all).await;
    }
}
