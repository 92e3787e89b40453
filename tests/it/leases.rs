//! Short leases, heartbeats and fenced writes, end to end: a worker is
//! stalled mid-move at a closed gate in front of the hot store, and time
//! is the archivers' injected clocks, so nothing here waits for a lease.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use coldsweep::ErrorKind;
use coldsweep::archiver::ProblemKind;
use coldsweep::catalog::{Fence, Lease};

use crate::faults::{FaultyStore, Op};
use crate::pipeline::{BACKENDS, COLD_BUCKET, Rig, cold_location, hot_location};

/// Whole microseconds: what Postgres keeps.
fn start() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn seconds(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

/// `task` of job `old` switched to cold by a worker that then died before
/// the hot delete (its claim handed back here rather than left to expire).
async fn switched_by_a_dead_worker(rig: &Rig, task: &str, now: DateTime<Utc>) {
    let bytes = rig.hot.get(&hot_location("old", task)).await.unwrap();
    rig.cold
        .put(&cold_location("old", task), bytes, &Default::default())
        .await
        .unwrap();
    let lease = Lease {
        owner: "dead".to_owned(),
        free_before: now,
        until: now + seconds(60),
    };
    let claimed = rig.catalog.claim_task_html(1, 100, &lease).await.unwrap();
    let dead = Fence { owner: "dead", now };
    rig.catalog
        .record_archived(
            task,
            dead,
            rig.cold.provider(),
            COLD_BUCKET,
            cold_location("old", task).key.as_str(),
        )
        .await
        .unwrap();
    let ids: Vec<String> = claimed.into_iter().map(|c| c.task_id).collect();
    rig.catalog.hand_back(&ids, "dead").await.unwrap();
}

/// Catches a worker that wakes after losing its claim and still writes:
/// worker `a` stalls (its lease runs out) while `b` claims the same rows;
/// when `a` resumes, neither its switch nor its hot delete may happen, for
/// a fresh row and for one an earlier worker already switched (where the
/// switch is already recorded, so only a fenced write can stop the delete).
#[tokio::test]
async fn a_worker_that_lost_its_claim_changes_nothing() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let fresh = rig.task("old", "fresh").await;
        let switched = rig.task("old", "switched").await;
        let start = start();
        switched_by_a_dead_worker(&rig, "switched", start).await;

        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.gate.close();
        let config = rig.config(1);
        let lease = chrono::Duration::from_std(config.lease).unwrap();
        let a = rig
            .archiver_with(hot, rig.cold.clone(), config)
            .with_worker_id("a")
            .with_clock(Arc::new(move || start));
        let a = tokio::spawn(async move { a.sweep().await });
        faults.gate.held(2).await;

        // `a` stalled past its lease; `b` claims both rows.
        let b_lease = Lease {
            owner: "b".to_owned(),
            free_before: start + lease + seconds(1),
            until: start + lease + seconds(120),
        };
        let taken = rig.catalog.claim_task_html(1, 100, &b_lease).await.unwrap();
        assert_eq!(taken.len(), 2, "{backend:?}: {taken:?}");
        let before = (rig.row("fresh").await, rig.row("switched").await);

        faults.gate.open();
        let report = a.await.unwrap();
        assert_eq!(report.failed, 2, "{backend:?}: {report:?}");
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.what == ProblemKind::Failed(ErrorKind::LeaseLost)),
            "{backend:?}: {report:?}"
        );
        assert_eq!(
            (rig.row("fresh").await, rig.row("switched").await),
            before,
            "{backend:?}: a stale worker wrote"
        );
        assert_eq!(faults.calls(Op::Delete), 0, "{backend:?}: hot delete");
        for (task, bytes) in [("fresh", &fresh), ("switched", &switched)] {
            assert_eq!(
                &rig.hot.get(&hot_location("old", task)).await.unwrap(),
                bytes,
                "{backend:?}: {task}"
            );
        }
    }
}

/// Catches a lease that grows with the batch or the blob timeout: a
/// worker killed mid-batch hides its rows for exactly one lease (the
/// default, 1 minute, with a batch of 500 and a 5-minute blob timeout),
/// after which another worker moves them.
#[tokio::test]
async fn a_dead_workers_claims_free_up_after_one_lease() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let bytes = rig.task("old", "a").await;
        let mut config = rig.config(1);
        config.batch_size = 500;
        config.concurrency = 1;
        config.blob_timeout = Duration::from_secs(300);
        assert_eq!(config.lease, Duration::from_secs(60), "the default lease");
        let lease = chrono::Duration::from_std(config.lease).unwrap();
        let start = start();

        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.gate.close();
        let dying = rig
            .archiver_with(hot, rig.cold.clone(), config.clone())
            .with_worker_id("dying")
            .with_clock(Arc::new(move || start));
        let dying = tokio::spawn(async move { dying.sweep().await });
        faults.gate.held(1).await;
        dying.abort();
        assert!(dying.await.unwrap_err().is_cancelled());
        assert_eq!(
            rig.row("a").await.html_lease_expires_at,
            Some(start + lease),
            "{backend:?}"
        );

        let sweep_at = |at: DateTime<Utc>| {
            rig.archiver_with(rig.hot.clone(), rig.cold.clone(), config.clone())
                .with_worker_id("next")
                .with_clock(Arc::new(move || at))
        };
        let early = sweep_at(start + lease - seconds(1)).sweep().await;
        assert_eq!(early.archived, 0, "{backend:?}: {early:?}");
        let after = sweep_at(start + lease + seconds(1)).sweep().await;
        assert_eq!(after.archived, 1, "{backend:?}: {after:?}");
        assert!(after.is_clean(), "{backend:?}: {after:?}");
        rig.audit(&[("old", "a", bytes)]).await;
    }
}

/// Catches a live worker losing its claims to a slow blob: while one blob
/// is stalled for many leases of its clock, the heartbeat keeps its row
/// claimed, another worker takes nothing, and the blob moves once it resumes.
#[tokio::test]
async fn a_live_slow_worker_keeps_its_claims() {
    for backend in BACKENDS {
        let rig = Rig::new(backend).await;
        rig.old_and_new_jobs().await;
        let bytes = rig.task("old", "slow").await;
        let mut config = rig.config(1);
        // Short so the heartbeat (a third of it) beats often in real time.
        config.lease = Duration::from_millis(600);
        config.blob_timeout = Duration::from_secs(60);
        let start = start();
        let offset = Arc::new(AtomicI64::new(0));
        let clock = {
            let offset = offset.clone();
            move || start + chrono::Duration::milliseconds(offset.load(Ordering::SeqCst))
        };

        let (hot, faults) = FaultyStore::wrap(rig.hot.clone());
        faults.gate.close();
        let slow = rig
            .archiver_with(hot, rig.cold.clone(), config.clone())
            .with_worker_id("slow")
            .with_clock(Arc::new(clock));
        let slow = tokio::spawn(async move { slow.sweep().await });
        faults.gate.held(1).await;

        // Time passes on the slow worker's clock, a third of a lease at a
        // time, until it is many leases past its claim; after each step a
        // heartbeat at the new time extends the claim by a whole lease.
        let step = 200;
        let mut now = start;
        for n in 1..=20 {
            offset.store(n * step, Ordering::SeqCst);
            now = start + chrono::Duration::milliseconds(n * step);
            let beat = now + chrono::Duration::from_std(config.lease).unwrap();
            let seen = Mutex::new(None);
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let until = rig.row("slow").await.html_lease_expires_at;
                    *seen.lock().unwrap() = until;
                    if until == Some(beat) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{backend:?}: no heartbeat at {now} (lease ends {:?})",
                    seen.lock().unwrap()
                )
            });
        }
        let later = now;

        let other = rig
            .archiver_with(rig.hot.clone(), rig.cold.clone(), config)
            .with_worker_id("other")
            .with_clock(Arc::new(move || later))
            .sweep()
            .await;
        assert_eq!(other.archived + other.failed, 0, "{backend:?}: {other:?}");

        faults.gate.open();
        let report = slow.await.unwrap();
        assert_eq!(report.archived, 1, "{backend:?}: {report:?}");
        assert!(report.is_clean(), "{backend:?}: {report:?}");
        rig.audit(&[("old", "slow", bytes)]).await;
    }
}
