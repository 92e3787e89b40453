//! What the archiver records through the `metrics` facade, read back from a
//! `DebuggingRecorder` installed for this thread only (tests run in
//! parallel; a global recorder would count their blobs too).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coldsweep::metrics::{
    ARCHIVED_BYTES_TOTAL, BLOB_DURATION_SECONDS, BLOB_ERRORS_TOTAL, BLOBS_TOTAL, CATALOG_BLOBS,
    CATALOG_FAILING_BLOBS, CATALOG_LEASED_BLOBS, LAST_SWEEP_END_TIMESTAMP_SECONDS,
    SWEEP_DURATION_SECONDS, SWEEP_ERRORS_TOTAL, SWEEPS_TOTAL,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::faults::FaultyStore;
use crate::pipeline::{Backend, COLD_BUCKET, HOT_BUCKET, Rig, gzip, hot_location, sha256_hex};

const SOURCE: &str = "task_html";

/// Label pairs, sorted.
type Labels = Vec<(String, String)>;

/// One snapshot, flattened: (name, labels, value). Values are what was
/// recorded since the previous snapshot (taking one resets them).
struct Metrics(Vec<(String, Labels, DebugValue)>);

impl Metrics {
    fn take(snapshotter: &Snapshotter) -> Metrics {
        Metrics(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let mut labels: Labels = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    labels.sort();
                    (key.key().name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut wanted: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wanted.sort();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| v)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name}{labels:?}: expected a counter, got {other:?}\n{self}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(name, labels) {
            Some(DebugValue::Gauge(v)) => v.0,
            other => panic!("{name}{labels:?}: expected a gauge, got {other:?}\n{self}"),
        }
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.get(name, labels) {
            Some(DebugValue::Histogram(v)) => v.len(),
            other => panic!("{name}{labels:?}: expected a histogram, got {other:?}\n{self}"),
        }
    }

    fn blobs(&self, outcome: &str) -> u64 {
        self.counter(BLOBS_TOTAL, &[("source", SOURCE), ("outcome", outcome)])
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, labels, value) in &self.0 {
            writeln!(f, "{name}{labels:?} {value:?}")?;
        }
        Ok(())
    }
}

#[test]
fn sweeps_count_every_outcome_without_per_blob_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The recorder is this thread's; a current-thread runtime keeps every
    // poll of the archiver on it.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(sweeps_count_every_outcome(&snapshotter));
    });
}

async fn sweeps_count_every_outcome(snapshotter: &Snapshotter) {
    let rig = Rig::new(Backend::SqliteFs).await;
    rig.old_and_new_jobs().await;
    let good = rig.task("old", "good").await;
    // Hot bytes disagree with the catalog's digest: quarantined.
    let stored = gzip(b"<html>real page</html>");
    rig.insert_task(
        "old",
        "bad",
        &stored,
        Some(sha256_hex(b"<html>what the crawler saw</html>")),
    )
    .await;
    rig.hot
        .put(&hot_location("old", "bad"), stored, &Default::default())
        .await
        .unwrap();
    // In neither store: suspected missing on this first look.
    rig.insert_task("old", "ghost", b"never stored", None).await;

    let report = rig.archiver(1).sweep().await;
    assert_eq!(
        (report.archived, report.quarantined, report.missing),
        (1, 1, 1),
        "{report:?}"
    );
    let m = Metrics::take(snapshotter);
    assert_eq!(m.blobs("archived"), 1, "{m}");
    assert_eq!(m.blobs("quarantined"), 1, "{m}");
    assert_eq!(m.blobs("missing"), 1, "{m}");
    // The other outcomes exist at 0, so an alert on their increase works from the start.
    for outcome in ["completed", "lost", "failed", "released"] {
        assert_eq!(m.blobs(outcome), 0, "{outcome}\n{m}");
    }
    assert_eq!(
        m.counter(ARCHIVED_BYTES_TOTAL, &[("source", SOURCE)]),
        good.len() as u64,
        "{m}"
    );
    assert!(
        !m.0.iter().any(|(n, _, _)| n == BLOB_ERRORS_TOTAL),
        "no blob failed\n{m}"
    );
    assert_eq!(m.counter(SWEEPS_TOTAL, &[]), 1, "{m}");
    assert_eq!(m.samples(SWEEP_DURATION_SECONDS, &[]), 1, "{m}");
    assert_eq!(
        m.samples(BLOB_DURATION_SECONDS, &[("source", SOURCE)]),
        3,
        "{m}"
    );
    let ended = m.gauge(LAST_SWEEP_END_TIMESTAMP_SECONDS, &[]);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 60.0..=now + 1.0).contains(&ended),
        "{ended} vs {now}"
    );
    // Labels name kinds of things, never one blob, job or bucket.
    for (name, labels, _) in &m.0 {
        for (_, value) in labels {
            for object in ["good", "bad", "ghost", "old", HOT_BUCKET, COLD_BUCKET] {
                assert!(
                    !value.contains(object),
                    "{name} has a per-object label {value:?}"
                );
            }
        }
    }

    // A cold store that refuses puts: the blob fails with a transient error.
    let (cold, faults) = FaultyStore::wrap(rig.cold.clone());
    faults.fail_put.store(true, Ordering::SeqCst);
    rig.task("old", "flaky").await;
    let report = rig
        .archiver_with(rig.hot.clone(), cold, rig.config(1))
        .sweep()
        .await;
    assert_eq!((report.failed, report.archived), (1, 0), "{report:?}");
    let m = Metrics::take(snapshotter);
    assert_eq!(m.blobs("failed"), 1, "{m}");
    assert_eq!(m.blobs("archived"), 0, "{m}");
    assert_eq!(
        m.counter(
            BLOB_ERRORS_TOTAL,
            &[("source", SOURCE), ("kind", "transient")]
        ),
        1,
        "{m}"
    );
    assert!(
        !m.0.iter().any(|(n, _, _)| n == SWEEP_ERRORS_TOTAL),
        "the sweep-level steps did not fail\n{m}"
    );

    // `run` refreshes the catalog gauges after each sweep when asked to.
    let archiver = rig.archiver(1).with_status_gauges(rig.catalog.clone());
    let mut seen = None;
    archiver
        .run(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let m = Metrics::take(snapshotter);
                if m.get(CATALOG_BLOBS, &[("state", "archived")]).is_some() {
                    seen = Some(m);
                    return;
                }
                assert!(Instant::now() < deadline, "no catalog gauges after 30 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    let m = seen.unwrap();
    for (state, count) in [
        ("hot", 1.0), // flaky, backing off
        ("pending_hot_delete", 0.0),
        ("archived", 1.0),
        ("quarantined", 1.0),
        ("missing", 1.0),
        ("lost", 0.0),
    ] {
        assert_eq!(
            m.gauge(CATALOG_BLOBS, &[("state", state)]),
            count,
            "{state}\n{m}"
        );
    }
    assert_eq!(m.gauge(CATALOG_FAILING_BLOBS, &[]), 1.0, "{m}");
    assert_eq!(m.gauge(CATALOG_LEASED_BLOBS, &[]), 0.0, "{m}");

    // Without `with_status_gauges`, `run` reads no catalog counts (the
    // snapshot above reset the gauges to 0).
    rig.archiver(1).run(async {}).await;
    let m = Metrics::take(snapshotter);
    assert_eq!(m.counter(SWEEPS_TOTAL, &[]), 1, "{m}");
    assert_eq!(
        m.gauge(CATALOG_BLOBS, &[("state", "archived")]),
        0.0,
        "gauges were set again\n{m}"
    );
}
