//! The sweep loop and the per-blob pipeline.
//!
//! A sweep marks fully-archived jobs, then for each source claims batches of
//! candidates (until a short batch) and moves them with bounded concurrency,
//! each blob under a time limit within which transient failures are retried.
//! [`Archiver::run`] sweeps at once, then after every `interval`, and on
//! shutdown stops claiming, lets in-flight blobs finish, and hands unstarted
//! claims back.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Lease};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{self, BlobOutcome, Step};
use crate::source::{ArchiveCandidate, ArchiveSource, TaskHtmlSource};
use crate::store::Store;
use crate::store::retry::Retry;

mod pipeline;
pub(crate) mod verify;

pub use pipeline::Outcome;

/// Marks terminal jobs whose HTML has all left hot storage as `archived`.
#[async_trait]
pub trait JobMarker: Send + Sync {
    /// Mark jobs; returns how many changed.
    async fn mark_archived_jobs(&self) -> Result<u64>;
}

/// The job marker backed by a [`Catalog`].
#[derive(Debug, Clone)]
pub struct CatalogJobMarker(pub Arc<dyn Catalog>);

#[async_trait]
impl JobMarker for CatalogJobMarker {
    async fn mark_archived_jobs(&self) -> Result<u64> {
        self.0.mark_archived_jobs().await
    }
}

/// Source of the current time, injectable so lease expiry is testable.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Something that went wrong for one blob or one step of a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Source name.
    pub source: String,
    /// The blob's task, or `None` for a sweep-level step (claim, job marker).
    pub task_id: Option<String>,
    /// What happened: `quarantined`, `lost`, or an error kind.
    pub what: ProblemKind,
    /// Human explanation.
    pub message: String,
}

/// Classification of a [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Hot bytes disagree with the catalog; left hot.
    Quarantined,
    /// Missing from both stores.
    Lost,
    /// The move failed with an error of this kind; the blob stays hot and is retried.
    Failed(ErrorKind),
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Quarantined => f.write_str("quarantined"),
            ProblemKind::Lost => f.write_str("lost"),
            ProblemKind::Failed(kind) => write!(f, "failed ({kind})"),
        }
    }
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Jobs newly marked `archived`.
    pub jobs_archived: u64,
    /// Blobs moved to cold and deleted from hot.
    pub archived: u64,
    /// Blobs whose interrupted move was finished (hot already gone, cold verified).
    pub completed: u64,
    /// Stored bytes moved.
    pub bytes: u64,
    /// Blobs quarantined.
    pub quarantined: u64,
    /// Blobs found lost.
    pub lost: u64,
    /// Blobs or steps that failed (retried later).
    pub failed: u64,
    /// Claims handed back unstarted because of shutdown.
    pub released: u64,
    /// Every non-success, in the order seen.
    pub problems: Vec<Problem>,
}

impl SweepReport {
    /// True when nothing failed, was quarantined or was lost.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.quarantined == 0 && self.lost == 0
    }

    fn problem(&mut self, source: &str, task_id: Option<&str>, what: ProblemKind, message: String) {
        match what {
            ProblemKind::Quarantined => self.quarantined += 1,
            ProblemKind::Lost => self.lost += 1,
            ProblemKind::Failed(_) => self.failed += 1,
        }
        self.problems.push(Problem {
            source: source.to_owned(),
            task_id: task_id.map(str::to_owned),
            what,
            message,
        });
    }
}

impl fmt::Display for SweepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "archived {} blob(s) ({} bytes), finished {} interrupted move(s), \
             quarantined {}, lost {}, failed {}, marked {} job(s) archived",
            self.archived,
            self.bytes,
            self.completed,
            self.quarantined,
            self.lost,
            self.failed,
            self.jobs_archived
        )
    }
}

/// Moves aged blobs from hot to cold storage.
pub struct Archiver {
    cold: Arc<dyn Store>,
    hot: Arc<dyn Store>,
    config: Config,
    job_marker: Arc<dyn JobMarker>,
    sources: Vec<Arc<dyn ArchiveSource>>,
    worker_id: String,
    clock: Clock,
    status_gauges: Option<Arc<dyn Catalog>>,
}

impl fmt::Debug for Archiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Archiver")
            .field("cold", &self.cold)
            .field("hot", &self.hot)
            .field("config", &self.config)
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("worker_id", &self.worker_id)
            .field("status_gauges", &self.status_gauges.is_some())
            .finish()
    }
}

enum BlobResult {
    Done(Outcome),
    Failed(Error),
    Released,
}

impl Archiver {
    /// An archiver moving `sources`' blobs from `hot` to `cold` (bucket
    /// `config.bucket`), marking jobs with `job_marker` at the start of each sweep.
    pub fn new(
        cold: Arc<dyn Store>,
        hot: Arc<dyn Store>,
        config: Config,
        job_marker: Arc<dyn JobMarker>,
        sources: Vec<Arc<dyn ArchiveSource>>,
    ) -> Self {
        Self {
            cold,
            hot,
            config,
            job_marker,
            sources,
            worker_id: default_worker_id(),
            clock: Arc::new(Utc::now),
            status_gauges: None,
        }
    }

    /// The usual set-up: task HTML from `catalog`, jobs marked in `catalog`.
    pub fn task_html(
        config: Config,
        catalog: Arc<dyn Catalog>,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
    ) -> Self {
        let source = Arc::new(TaskHtmlSource::new(catalog.clone(), config.retention_jobs));
        Self::new(
            cold,
            hot,
            config,
            Arc::new(CatalogJobMarker(catalog)),
            vec![source],
        )
    }

    /// Use `clock` for lease times and the last-sweep timestamp metric
    /// instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Identity recorded on claimed rows (default: host, pid and a random suffix).
    pub fn with_worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// After each sweep of [`Archiver::run`], set the `coldsweep_catalog_*`
    /// gauges from `catalog`'s [`Catalog::status`] (see [`crate::metrics`]).
    /// Off by default: it costs a counting query per sweep, worth it only
    /// when a metrics recorder is installed.
    pub fn with_status_gauges(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.status_gauges = Some(catalog);
        self
    }

    /// This worker's identity.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sweep at once, then every `config.interval` (measured from the end of
    /// a sweep) until `shutdown` completes. In-flight blobs finish; claims not
    /// yet started are handed back.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let sweeper = async {
            loop {
                let report = self.sweep_until(&stop).await;
                log_report(&report);
                self.refresh_status_gauges().await;
                tokio::select! {
                    () = tokio::time::sleep(self.config.interval) => {}
                    () = stop.cancelled() => break,
                }
            }
        };
        tokio::pin!(sweeper);
        tokio::select! {
            () = &mut sweeper => return,
            () = shutdown => {
                tracing::info!("shutdown requested: finishing blobs in flight");
                stop.cancel();
            }
        }
        sweeper.await;
        tracing::info!("stopped");
    }

    /// One full sweep.
    pub async fn sweep(&self) -> SweepReport {
        self.sweep_until(&CancellationToken::new()).await
    }

    /// One sweep that stops claiming and starting blobs once `stop` is cancelled.
    pub async fn sweep_until(&self, stop: &CancellationToken) -> SweepReport {
        let started = Instant::now();
        let mut report = SweepReport::default();
        match self.job_marker.mark_archived_jobs().await {
            Ok(n) => report.jobs_archived = n,
            Err(e) => {
                metrics::sweep_error(Step::MarkJobs, e.kind());
                report.problem(
                    "job_marker",
                    None,
                    ProblemKind::Failed(e.kind()),
                    e.to_string(),
                );
            }
        }
        for source in &self.sources {
            self.sweep_source(source.as_ref(), stop, &mut report).await;
        }
        metrics::sweep(started.elapsed(), (self.clock)());
        report
    }

    /// Best effort: a failure is logged, and the gauges keep their last values.
    async fn refresh_status_gauges(&self) {
        let Some(catalog) = &self.status_gauges else {
            return;
        };
        match catalog.status((self.clock)()).await {
            Ok(status) => metrics::catalog_status(&status),
            Err(e) => tracing::warn!(error = %e, "reading catalog counts for the metrics failed"),
        }
    }

    async fn sweep_source(
        &self,
        source: &dyn ArchiveSource,
        stop: &CancellationToken,
        report: &mut SweepReport,
    ) {
        let batch_size = self.config.batch_size;
        // Rows whose lease or back-off ends after the sweep began wait for the
        // next sweep, so blobs failing during this one cannot keep it going.
        let sweep_start = (self.clock)();
        metrics::source_swept(source.name());
        while !stop.is_cancelled() {
            let lease = self.lease(sweep_start);
            let claim = match source.claim(batch_size, &lease).await {
                Ok(claim) => claim,
                Err(e) => {
                    tracing::warn!(source = source.name(), error = %e, "claiming candidates failed");
                    metrics::sweep_error(Step::Claim, e.kind());
                    report.problem(
                        source.name(),
                        None,
                        ProblemKind::Failed(e.kind()),
                        e.to_string(),
                    );
                    return;
                }
            };
            let claimed = claim.candidates.len() + claim.unreadable.len();
            // Rows the catalog could not read were quarantined by the claim.
            for row in claim.unreadable {
                tracing::warn!(source = source.name(), task_id = %row.task_id, reason = %row.reason, "quarantined: left hot");
                metrics::blob(source.name(), BlobOutcome::Quarantined, Duration::ZERO);
                report.problem(
                    source.name(),
                    Some(&row.task_id),
                    ProblemKind::Quarantined,
                    row.reason,
                );
            }
            let mut results = futures::stream::iter(claim.candidates)
                .map(|candidate| async move {
                    let started = Instant::now();
                    let result = self.process(source, &candidate, stop).await;
                    (candidate, result, started.elapsed())
                })
                .buffer_unordered(self.config.concurrency);
            while let Some((candidate, result, elapsed)) = results.next().await {
                record(report, source.name(), &candidate, result, elapsed);
            }
            if claimed < batch_size {
                return;
            }
        }
    }

    /// A lease long enough for a whole batch to drain through the semaphore,
    /// claiming only rows free since `free_before`.
    fn lease(&self, free_before: DateTime<Utc>) -> Lease {
        let now = (self.clock)();
        let rounds = self
            .config
            .batch_size
            .div_ceil(self.config.concurrency.max(1)) as u32;
        let span = self.config.lease + self.config.blob_timeout * rounds;
        Lease {
            owner: self.worker_id.clone(),
            free_before,
            until: now + chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX),
        }
    }

    async fn process(
        &self,
        source: &dyn ArchiveSource,
        candidate: &ArchiveCandidate,
        stop: &CancellationToken,
    ) -> BlobResult {
        let now = (self.clock)();
        if stop.is_cancelled() {
            if let Err(e) = source
                .release(candidate, "shutdown before start", now)
                .await
            {
                tracing::warn!(task_id = %candidate.task_id, error = %e, "handing back claim failed; it expires with its lease");
            }
            return BlobResult::Released;
        }
        let pipeline = pipeline::Pipeline {
            hot: self.hot.as_ref(),
            cold: self.cold.as_ref(),
            cold_bucket: &self.config.bucket,
            prefix: &self.config.path_prefix,
            verify: self.config.verify,
            source,
        };
        let result = match self.run_with_retries(&pipeline, candidate, stop).await {
            Ok(outcome) => return BlobResult::Done(outcome),
            Err(e) => e,
        };
        let retry_at =
            now + chrono::Duration::from_std(self.config.interval).unwrap_or(chrono::Duration::MAX);
        if let Err(e) = source
            .release(candidate, &result.to_string(), retry_at)
            .await
        {
            tracing::warn!(task_id = %candidate.task_id, error = %e, "recording failure failed; the claim expires with its lease");
        }
        BlobResult::Failed(result)
    }

    /// Run the pipeline, repeating it after a transient error with back-off
    /// and jitter until it succeeds, fails with another kind, or the blob's
    /// time limit, its retries or the sweep run out. Starting over is safe:
    /// every step is idempotent and a verified cold copy is reused.
    async fn run_with_retries(
        &self,
        pipeline: &pipeline::Pipeline<'_>,
        candidate: &ArchiveCandidate,
        stop: &CancellationToken,
    ) -> Result<Outcome> {
        let limit = self.config.blob_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let retry = blob_retry(limit);
        let mut retries = 0;
        loop {
            let error = match tokio::time::timeout_at(deadline, pipeline.run(candidate)).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Transient,
                        format!("timed out after {limit:?} ({retries} retries)"),
                    ));
                }
            };
            let delay = retry.delay(retries);
            if !error.is_retryable()
                || retries >= retry.times
                || tokio::time::Instant::now() + delay >= deadline
            {
                return Err(error);
            }
            retries += 1;
            metrics::blob_retry(pipeline.source.name());
            tracing::debug!(task_id = %candidate.task_id, retries, ?delay, error = %error, "retrying blob");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return Err(error),
            }
        }
    }
}

/// Retries of a whole blob after a transient error: a few, the back-off
/// scaled to the blob's time limit so that they fit inside it (300 s: about
/// 1, 2, 4, 8 and 16 s, with jitter). Each store request has its own,
/// shorter retries inside the backend; these catch what outlasts them and
/// catalog errors.
fn blob_retry(limit: Duration) -> Retry {
    Retry {
        times: 5,
        min_delay: (limit / 200).clamp(Duration::from_millis(1), Duration::from_secs(1)),
        max_delay: (limit / 10).min(Duration::from_secs(30)),
    }
}

/// Count one blob's result in the report and the metrics, and log it.
fn record(
    report: &mut SweepReport,
    source: &str,
    candidate: &ArchiveCandidate,
    result: BlobResult,
    elapsed: Duration,
) {
    let task = candidate.task_id.as_str();
    let outcome = match result {
        BlobResult::Done(Outcome::Archived { bytes }) => {
            tracing::debug!(source, task_id = task, bytes, "archived");
            report.archived += 1;
            report.bytes += bytes;
            metrics::archived_bytes(source, bytes);
            BlobOutcome::Archived
        }
        BlobResult::Done(Outcome::Completed) => {
            tracing::info!(source, task_id = task, "finished an interrupted move");
            report.completed += 1;
            BlobOutcome::Completed
        }
        BlobResult::Done(Outcome::Quarantined { reason }) => {
            tracing::warn!(source, task_id = task, %reason, "quarantined: left hot");
            report.problem(source, Some(task), ProblemKind::Quarantined, reason);
            BlobOutcome::Quarantined
        }
        BlobResult::Done(Outcome::Lost { reason }) => {
            tracing::error!(source, task_id = task, %reason, "LOST: blob is in neither store");
            report.problem(source, Some(task), ProblemKind::Lost, reason);
            BlobOutcome::Lost
        }
        BlobResult::Failed(e) => {
            tracing::warn!(source, task_id = task, kind = %e.kind(), error = %e, "move failed; will retry");
            metrics::blob_error(source, e.kind());
            report.problem(
                source,
                Some(task),
                ProblemKind::Failed(e.kind()),
                e.to_string(),
            );
            BlobOutcome::Failed
        }
        BlobResult::Released => {
            report.released += 1;
            BlobOutcome::Released
        }
    };
    metrics::blob(source, outcome, elapsed);
}

fn log_report(report: &SweepReport) {
    if report.is_clean() {
        tracing::info!(
            archived = report.archived,
            completed = report.completed,
            bytes = report.bytes,
            jobs_archived = report.jobs_archived,
            "sweep done"
        );
    } else {
        tracing::warn!(
            archived = report.archived,
            completed = report.completed,
            bytes = report.bytes,
            jobs_archived = report.jobs_archived,
            quarantined = report.quarantined,
            lost = report.lost,
            failed = report.failed,
            "sweep done with problems"
        );
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{suffix}", std::process::id())
}
