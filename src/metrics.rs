//! Prometheus metrics: what the archiver counts, in one table.
//!
//! Recording goes through the [`metrics`](https://docs.rs/metrics/0.24) facade. Without a
//! recorder installed (the default when embedding) every call is a no-op; the
//! `coldsweep run` binary installs a Prometheus exporter when
//! `COLDSWEEP_METRICS_ADDR` is set and serves them at `/metrics`. An embedder
//! installs any `metrics` recorder it likes and may call [`describe`].
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `coldsweep_blobs_total` | counter | `source`, `outcome` | blobs a sweep finished with, by outcome: `archived` (moved, verified, hot deleted), `completed` (an interrupted move finished), `quarantined` (hot bytes disagree with the catalog, or the blob alone failed `ARCHIVE_MAX_ATTEMPTS` times; left hot), `missing` (in neither store on a first look: a suspicion, looked at again after `ARCHIVE_LOST_AFTER`), `lost` (still in neither store on that later look, both stores proven healthy), `failed` (error; retried next interval), `released` (claim handed back at shutdown) |
//! | `coldsweep_blob_errors_total` | counter | `source`, `kind` | `failed` blobs by error kind: `not_found`, `bucket_not_found`, `permission_denied`, `integrity`, `transient`, `invalid_input`, `lease_lost` (another worker took the blob over; nothing written), `unexpected` |
//! | `coldsweep_blob_retries_total` | counter | `source` | times a blob's move was started over after a transient error, within its time limit (a blob that then succeeds is not `failed`) |
//! | `coldsweep_sweep_errors_total` | counter | `step`, `kind` | sweep-level steps that failed: `step` is `mark_jobs` (the job marker), `claim` (finding candidates) or `health` (a store could not prove it sees its bucket, or implausibly many blobs looked missing: the sweep stopped and recorded nothing); `kind` as above |
//! | `coldsweep_archived_bytes_total` | counter | `source` | stored (compressed) bytes of `archived` blobs |
//! | `coldsweep_sweeps_total` | counter | — | sweeps finished |
//! | `coldsweep_sweep_duration_seconds` | histogram | — | wall time of one sweep (job marker and every source) |
//! | `coldsweep_blob_duration_seconds` | histogram | `source` | wall time of one blob's move, whatever its outcome (`released` excluded) |
//! | `coldsweep_last_sweep_end_timestamp_seconds` | gauge | — | Unix time the last sweep ended; alert when it stops advancing |
//! | `coldsweep_catalog_blobs` | gauge | `state` | tasks with HTML per state, catalog-wide: `hot`, `pending_hot_delete` (switched to cold, hot copy not yet deleted), `archived`, `quarantined`, `missing`, `lost`. The states partition the tasks, so `sum` is meaningful |
//! | `coldsweep_catalog_failing_blobs` | gauge | — | catalog-wide: still-hot tasks whose last attempt failed (a subset of `hot`/`pending_hot_delete`) |
//! | `coldsweep_catalog_leased_blobs` | gauge | — | catalog-wide: tasks under a live claim by any worker |
//! | `coldsweep_scrub_objects_total` | counter | `result` | archived blobs a [scrub](crate::scrub) checked, by `result`: `ok`, `missing` (not in the cold store), `corrupt` (size or digest disagree), `unreadable` (any other error) |
//!
//! `source` is an [`ArchiveSource`](crate::ArchiveSource) name (`task_html`).
//! No label ever carries a task id, job id, key or bucket: the set of series
//! is fixed by the code, not by the data. The `coldsweep_blobs_total` series
//! of every outcome start at 0 on a source's first sweep, so
//! `increase(coldsweep_blobs_total{outcome="lost"}[1h]) > 0` fires on the
//! first lost blob.
//!
//! The `coldsweep_catalog_*` gauges are refreshed after each sweep of
//! [`Archiver::run`](crate::Archiver::run) when the archiver was built
//! [`with_status_gauges`](crate::Archiver::with_status_gauges). They describe
//! the whole catalog, so every worker reports the same numbers: aggregate
//! them with `max`, not `sum`. Histograms use [`DURATION_BUCKETS`] in the
//! binary's exporter.

use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use chrono::{DateTime, Utc};

use crate::catalog::CatalogStatus;
use crate::error::ErrorKind;

/// Counter: blobs by `source` and `outcome`.
pub const BLOBS_TOTAL: &str = "coldsweep_blobs_total";
/// Counter: failed blobs by `source` and error `kind`.
pub const BLOB_ERRORS_TOTAL: &str = "coldsweep_blob_errors_total";
/// Counter: blob moves started over after a transient error, by `source`.
pub const BLOB_RETRIES_TOTAL: &str = "coldsweep_blob_retries_total";
/// Counter: failed sweep-level steps by `step` and error `kind`.
pub const SWEEP_ERRORS_TOTAL: &str = "coldsweep_sweep_errors_total";
/// Counter: stored bytes of archived blobs by `source`.
pub const ARCHIVED_BYTES_TOTAL: &str = "coldsweep_archived_bytes_total";
/// Counter: sweeps finished.
pub const SWEEPS_TOTAL: &str = "coldsweep_sweeps_total";
/// Histogram: seconds per sweep.
pub const SWEEP_DURATION_SECONDS: &str = "coldsweep_sweep_duration_seconds";
/// Histogram: seconds per blob, by `source`.
pub const BLOB_DURATION_SECONDS: &str = "coldsweep_blob_duration_seconds";
/// Gauge: Unix time the last sweep ended.
pub const LAST_SWEEP_END_TIMESTAMP_SECONDS: &str = "coldsweep_last_sweep_end_timestamp_seconds";
/// Gauge: catalog-wide tasks per `state`.
pub const CATALOG_BLOBS: &str = "coldsweep_catalog_blobs";
/// Gauge: catalog-wide tasks whose last attempt failed.
pub const CATALOG_FAILING_BLOBS: &str = "coldsweep_catalog_failing_blobs";
/// Gauge: catalog-wide tasks under a live claim.
pub const CATALOG_LEASED_BLOBS: &str = "coldsweep_catalog_leased_blobs";

/// Counter: archived blobs a scrub checked, by `result`.
pub const SCRUB_OBJECTS_TOTAL: &str = "coldsweep_scrub_objects_total";

/// Histogram bucket bounds, in seconds, for both duration histograms: from a
/// blob moved between two folders (milliseconds) to a sweep draining a
/// backlog (an hour).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

/// Register every metric's description with the installed recorder (call
/// after installing it; the exporter prints them as `# HELP` lines).
pub fn describe() {
    describe_counter!(
        BLOBS_TOTAL,
        "Blobs a sweep finished with, by source and outcome \
         (archived, completed, quarantined, missing, lost, failed, released)."
    );
    describe_counter!(
        BLOB_ERRORS_TOTAL,
        "Failed blobs by source and error kind; they stay hot and are retried."
    );
    describe_counter!(
        BLOB_RETRIES_TOTAL,
        "Blob moves started over after a transient error, by source."
    );
    describe_counter!(
        SWEEP_ERRORS_TOTAL,
        "Failed sweep-level steps (mark_jobs, claim, health) by error kind."
    );
    describe_counter!(
        ARCHIVED_BYTES_TOTAL,
        "Stored bytes of blobs moved to cold storage, by source."
    );
    describe_counter!(SWEEPS_TOTAL, "Sweeps finished.");
    describe_histogram!(SWEEP_DURATION_SECONDS, "Wall time of one sweep.");
    describe_histogram!(
        BLOB_DURATION_SECONDS,
        "Wall time of one blob's move, any outcome, by source."
    );
    describe_gauge!(
        LAST_SWEEP_END_TIMESTAMP_SECONDS,
        "Unix time the last sweep ended."
    );
    describe_gauge!(
        CATALOG_BLOBS,
        "Tasks with HTML per state (hot, pending_hot_delete, archived, quarantined, missing, \
         lost), \
         catalog-wide; the same on every worker."
    );
    describe_gauge!(
        CATALOG_FAILING_BLOBS,
        "Still-hot tasks whose last attempt failed, catalog-wide."
    );
    describe_gauge!(
        CATALOG_LEASED_BLOBS,
        "Tasks under a live claim by any worker, catalog-wide."
    );
    describe_counter!(
        SCRUB_OBJECTS_TOTAL,
        "Archived blobs a scrub checked, by result (ok, missing, corrupt, unreadable)."
    );
}

/// What happened to one claimed blob: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobOutcome {
    Archived,
    Completed,
    Quarantined,
    Missing,
    Lost,
    Failed,
    Released,
}

impl BlobOutcome {
    const ALL: [BlobOutcome; 7] = [
        BlobOutcome::Archived,
        BlobOutcome::Completed,
        BlobOutcome::Quarantined,
        BlobOutcome::Missing,
        BlobOutcome::Lost,
        BlobOutcome::Failed,
        BlobOutcome::Released,
    ];

    fn as_str(self) -> &'static str {
        match self {
            BlobOutcome::Archived => "archived",
            BlobOutcome::Completed => "completed",
            BlobOutcome::Quarantined => "quarantined",
            BlobOutcome::Missing => "missing",
            BlobOutcome::Lost => "lost",
            BlobOutcome::Failed => "failed",
            BlobOutcome::Released => "released",
        }
    }
}

/// A sweep-level step: the `step` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    MarkJobs,
    Claim,
    Health,
}

/// Create `source`'s outcome series at 0, so the first lost blob is an increase.
pub(crate) fn source_swept(source: &str) {
    for outcome in BlobOutcome::ALL {
        counter!(BLOBS_TOTAL, "source" => source.to_owned(), "outcome" => outcome.as_str())
            .increment(0);
    }
}

/// One blob finished with `outcome` after `elapsed`.
pub(crate) fn blob(source: &str, outcome: BlobOutcome, elapsed: Duration) {
    counter!(BLOBS_TOTAL, "source" => source.to_owned(), "outcome" => outcome.as_str())
        .increment(1);
    if outcome != BlobOutcome::Released {
        histogram!(BLOB_DURATION_SECONDS, "source" => source.to_owned()).record(elapsed);
    }
}

/// An archived blob's stored bytes.
pub(crate) fn archived_bytes(source: &str, bytes: u64) {
    counter!(ARCHIVED_BYTES_TOTAL, "source" => source.to_owned()).increment(bytes);
}

/// A blob failed with an error of `kind`.
pub(crate) fn blob_error(source: &str, kind: ErrorKind) {
    counter!(BLOB_ERRORS_TOTAL, "source" => source.to_owned(), "kind" => kind.as_str())
        .increment(1);
}

/// A blob's move is started over after a transient error.
pub(crate) fn blob_retry(source: &str) {
    counter!(BLOB_RETRIES_TOTAL, "source" => source.to_owned()).increment(1);
}

/// A sweep-level step failed with an error of `kind`.
pub(crate) fn sweep_error(step: Step, kind: ErrorKind) {
    let step = match step {
        Step::MarkJobs => "mark_jobs",
        Step::Claim => "claim",
        Step::Health => "health",
    };
    counter!(SWEEP_ERRORS_TOTAL, "step" => step, "kind" => kind.as_str()).increment(1);
}

/// A sweep took `elapsed` and ended at `end`.
pub(crate) fn sweep(elapsed: Duration, end: DateTime<Utc>) {
    counter!(SWEEPS_TOTAL).increment(1);
    histogram!(SWEEP_DURATION_SECONDS).record(elapsed);
    gauge!(LAST_SWEEP_END_TIMESTAMP_SECONDS).set(end.timestamp_millis() as f64 / 1000.0);
}

/// A scrub checked one archived blob: `result` is `ok`, `missing`, `corrupt` or `unreadable`.
pub(crate) fn scrub_object(result: &'static str) {
    counter!(SCRUB_OBJECTS_TOTAL, "result" => result).increment(1);
}

/// Set the `coldsweep_catalog_*` gauges from a [`Catalog::status`](crate::Catalog::status).
pub fn catalog_status(status: &CatalogStatus) {
    for (state, count) in [
        ("hot", status.hot),
        ("pending_hot_delete", status.pending_hot_delete),
        ("archived", status.archived),
        ("quarantined", status.quarantined),
        ("missing", status.missing),
        ("lost", status.lost),
    ] {
        gauge!(CATALOG_BLOBS, "state" => state).set(count as f64);
    }
    gauge!(CATALOG_FAILING_BLOBS).set(status.failing as f64);
    gauge!(CATALOG_LEASED_BLOBS).set(status.leased as f64);
}
