//! The sweep loop and the per-blob pipeline.
//!
//! A sweep marks fully-archived jobs, then for each source claims batches of
//! candidates (until a short batch) and moves them with bounded concurrency,
//! each blob under a time limit within which transient failures are retried.
//! [`Archiver::run`] sweeps at once, then after every `interval`, and on
//! shutdown stops claiming, lets in-flight blobs finish, and hands unstarted
//! claims back.

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Fence, Lease};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{self, BlobOutcome, Step};
use crate::source::{ArchiveCandidate, ArchiveSource, TaskHtmlSource};
use crate::store::Store;
use crate::store::retry::Retry;

mod pipeline;
mod stream;
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
    /// What happened: `quarantined`, `missing`, `lost`, `stopped`, or an error kind.
    pub what: ProblemKind,
    /// Human explanation.
    pub message: String,
}

/// Classification of a [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Hot bytes disagree with the catalog, or the blob alone kept failing; left hot.
    Quarantined,
    /// Missing from both stores on a first look: suspected, looked at again later.
    Missing,
    /// Still missing from both stores on that later look, both stores healthy.
    Lost,
    /// The move failed with an error of this kind; the blob stays hot and is retried.
    Failed(ErrorKind),
    /// The sweep stopped before touching more blobs: a store could not prove
    /// it sees its bucket, or implausibly many blobs looked missing.
    Stopped,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Quarantined => f.write_str("quarantined"),
            ProblemKind::Missing => f.write_str("missing"),
            ProblemKind::Lost => f.write_str("lost"),
            ProblemKind::Failed(kind) => write!(f, "failed ({kind})"),
            ProblemKind::Stopped => f.write_str("stopped"),
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
    /// Blobs seen missing from both stores for the first time (suspected).
    pub missing: u64,
    /// Blobs found lost.
    pub lost: u64,
    /// Blobs or steps that failed (retried later).
    pub failed: u64,
    /// Claims handed back unstarted because of shutdown or a stopped sweep.
    pub released: u64,
    /// Whether the sweep stopped early because a store's health could not be
    /// proven or implausibly many blobs looked missing (the reason is a problem).
    pub stopped: bool,
    /// Every non-success, in the order seen.
    pub problems: Vec<Problem>,
}

impl SweepReport {
    /// True when nothing failed, was quarantined, missing or lost, and the sweep ran to its end.
    pub fn is_clean(&self) -> bool {
        self.failed == 0
            && self.quarantined == 0
            && self.missing == 0
            && self.lost == 0
            && !self.stopped
    }

    fn problem(&mut self, source: &str, task_id: Option<&str>, what: ProblemKind, message: String) {
        match what {
            ProblemKind::Quarantined => self.quarantined += 1,
            ProblemKind::Missing => self.missing += 1,
            ProblemKind::Lost => self.lost += 1,
            ProblemKind::Failed(_) => self.failed += 1,
            ProblemKind::Stopped => self.stopped = true,
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
             quarantined {}, missing {}, lost {}, failed {}, marked {} job(s) archived{}",
            self.archived,
            self.bytes,
            self.completed,
            self.quarantined,
            self.missing,
            self.lost,
            self.failed,
            self.jobs_archived,
            if self.stopped { "; stopped early" } else { "" }
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

/// Longest wait for the writes that hand claims back or record failures at
/// shutdown: with the catalog down, shutdown must still finish in seconds.
const SHUTDOWN_WRITES: Duration = Duration::from_secs(5);

/// Blobs found in neither store that a sweep holds (claimed, unjudged)
/// before it tests their share early rather than at its end.
const EARLY_STOP_SUSPECTS: usize = 1000;

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
    ///
    /// Jobs are marked before the sources are swept (finishing what other
    /// workers emptied) and again after, so a job this sweep empties is
    /// `archived` when it returns.
    pub async fn sweep_until(&self, stop: &CancellationToken) -> SweepReport {
        let started = Instant::now();
        let mut report = SweepReport::default();
        self.mark_jobs(&mut report).await;
        for source in &self.sources {
            self.sweep_source(source.as_ref(), stop, &mut report).await;
            if report.stopped {
                break;
            }
        }
        if report.archived + report.completed > 0 {
            self.mark_jobs(&mut report).await;
        }
        metrics::sweep(started.elapsed(), (self.clock)());
        report
    }

    async fn mark_jobs(&self, report: &mut SweepReport) {
        match self.job_marker.mark_archived_jobs().await {
            Ok(n) => report.jobs_archived += n,
            Err(e) => {
                metrics::sweep_error(Step::MarkJobs, e.kind());
                report.problem(
                    "job_marker",
                    None,
                    ProblemKind::Failed(e.kind()),
                    error_text(&e),
                );
            }
        }
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
        metrics::source_swept(source.name());
        let mut tally = Tally::default();
        let claims = Claims::default();
        let work = async {
            match self
                .sweep_batches(source, stop, &claims, &mut tally, report)
                .await
            {
                // Blobs found in neither store are judged once the sweep has
                // seen everything it will try, and only if it ran to its end.
                Ok(true) => self.judge_missing(source, &mut tally, report).await,
                Ok(false) => {
                    self.hand_back_held(source, &mut tally, report).await;
                    Ok(())
                }
                Err(e) => {
                    self.hand_back_held(source, &mut tally, report).await;
                    Err(e)
                }
            }
        };
        // Claims are short leases kept alive by the heartbeat for as long
        // as this source's sweep runs; it stops with the sweep.
        let swept = tokio::select! {
            swept = work => swept,
            never = self.heartbeat(source, &claims) => match never {},
        };
        if let Err(e) = swept {
            self.stop_sweep(source.name(), &e, report);
        }
    }

    /// Claim and move batches until a short one: `Ok(true)` when the sweep
    /// ran to its end, `Ok(false)` when shutdown or a failed claim cut it
    /// short, `Err` when it must stop (a store unproven, implausibly many
    /// blobs missing).
    async fn sweep_batches(
        &self,
        source: &dyn ArchiveSource,
        stop: &CancellationToken,
        claims: &Claims,
        tally: &mut Tally,
        report: &mut SweepReport,
    ) -> Result<bool> {
        let batch_size = self.config.batch_size;
        // Rows whose lease or back-off ends after the sweep began wait for the
        // next sweep, so blobs failing during this one cannot keep it going.
        let sweep_start = (self.clock)();
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
                        error_text(&e),
                    );
                    return Ok(false);
                }
            };
            let claimed = claim.candidates.len() + claim.unreadable.len();
            claims.hold(claim.candidates.iter().chain(held(tally)));
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
            // No blob of a bucket is touched before the hot store proves it
            // sees that bucket: a wrong root, bucket, region or key must stop
            // the sweep, not make every blob look missing.
            if let Err(e) = self
                .prove_hot_buckets(&claim.candidates, &mut tally.proven)
                .await
            {
                self.hand_back(source, &claim.candidates, report).await;
                return Err(e);
            }
            let results: Vec<_> = futures::stream::iter(claim.candidates)
                .map(|candidate| async move {
                    let started = Instant::now();
                    let result = self.process(source, &candidate, stop).await;
                    (candidate, result, started.elapsed())
                })
                .buffer_unordered(self.config.concurrency)
                .collect()
                .await;
            let settled = self.settle(source, results, stop, tally, report).await;
            // Only the blobs held for judgement still need their claims kept.
            claims.hold(held(tally));
            settled?;
            if claimed < batch_size {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Ping every hot bucket of `candidates` not proven yet in this sweep.
    async fn prove_hot_buckets(
        &self,
        candidates: &[ArchiveCandidate],
        proven: &mut HashSet<String>,
    ) -> Result<()> {
        let buckets: BTreeSet<&str> = candidates
            .iter()
            .map(|c| c.storage_bucket.as_str())
            .filter(|b| !proven.contains(*b))
            .collect();
        for bucket in buckets {
            match self.hot.ping(bucket).await {
                Ok(()) => {
                    proven.insert(bucket.to_owned());
                }
                // A name no store accepts is the row's fault, not the store's:
                // its blobs are quarantined one by one, never judged missing.
                Err(e) if e.kind() == ErrorKind::InvalidInput => {}
                Err(e) => {
                    return Err(Error::new(
                        e.kind(),
                        format!(
                            "the hot store ({}) cannot prove it sees bucket {bucket:?} that the \
                             catalog references: {}; no blob was touched. Check {} and run \
                             `coldsweep check`",
                            self.hot.provider(),
                            error_text(&e),
                            hot_settings(self.hot.provider()),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Record a batch's results: failures released (or quarantined when a
    /// blob alone keeps failing), shutdown claims handed back, blobs found
    /// in neither store held for [`judge_missing`](Self::judge_missing). An
    /// `Err` (implausibly many held) stops the sweep.
    async fn settle(
        &self,
        source: &dyn ArchiveSource,
        results: Vec<(ArchiveCandidate, BlobResult, Duration)>,
        stop: &CancellationToken,
        tally: &mut Tally,
        report: &mut SweepReport,
    ) -> Result<()> {
        let mut suspects = Vec::new();
        let mut failures = Vec::new();
        let mut released = Vec::new();
        tally.tried += results
            .iter()
            .filter(|(_, result, _)| !matches!(result, BlobResult::Released))
            .count() as u64;
        for (candidate, result, elapsed) in results {
            match result {
                BlobResult::Done(Outcome::Missing { reason }) => {
                    suspects.push((candidate, reason, elapsed))
                }
                BlobResult::Failed(error) => failures.push((candidate, error, elapsed)),
                BlobResult::Released => released.push(candidate),
                BlobResult::Done(outcome) => {
                    if matches!(outcome, Outcome::Archived { .. } | Outcome::Completed) {
                        tally.moved.insert(candidate.storage_bucket.clone());
                    }
                    record(
                        report,
                        source.name(),
                        &candidate,
                        Settled::Done(outcome),
                        elapsed,
                    )
                }
            }
        }

        // Other blobs of the same hot bucket moved: the settings for it work
        // (a policy or proxy refusing one bucket refuses all of its blobs),
        // so a blob failing for good on its own is a problem of that blob.
        let moved = &tally.moved;
        let settled = futures::future::join_all(failures.into_iter().map(
            |(candidate, error, elapsed)| async move {
                let others_moved = moved.contains(&candidate.storage_bucket);
                let settled = self
                    .settle_failure(source, &candidate, error, others_moved)
                    .await;
                (candidate, settled, elapsed)
            },
        ));
        // At shutdown (the catalog may be down) the lease expiry covers what
        // a short wait could not record.
        let settled = if stop.is_cancelled() {
            tokio::time::timeout(SHUTDOWN_WRITES, settled)
                .await
                .unwrap_or_default()
        } else {
            settled.await
        };
        for (candidate, settled, elapsed) in settled {
            record(report, source.name(), &candidate, settled, elapsed);
        }
        self.hand_back(source, &released, report).await;

        // Suspects stay claimed until the end of the source's sweep, when
        // their share of everything tried is known (the claim order groups
        // a job's blobs, so an early share says little). Only a pile of
        // them that is implausible already stops the sweep before its end.
        tally.held.extend(suspects);
        if tally.held.len() >= EARLY_STOP_SUSPECTS {
            self.plausible(tally)?;
        }
        Ok(())
    }

    /// Judge the blobs this sweep found in neither store: when their
    /// number is plausible and both stores prove again that they see the
    /// buckets in question, record each (a suspicion or a verdict); else
    /// record nothing and stop. The held claims are handed back on an `Err`.
    async fn judge_missing(
        &self,
        source: &dyn ArchiveSource,
        tally: &mut Tally,
        report: &mut SweepReport,
    ) -> Result<()> {
        if tally.held.is_empty() {
            return Ok(());
        }
        let judged = match self.plausible(tally) {
            Ok(()) => self.prove_stores(&tally.held).await,
            Err(e) => Err(e),
        };
        if let Err(e) = judged {
            self.hand_back_held(source, tally, report).await;
            return Err(e);
        }
        for (candidate, reason, elapsed) in std::mem::take(&mut tally.held) {
            let settled = self.record_missing(source, &candidate, reason).await;
            record(report, source.name(), &candidate, settled, elapsed);
        }
        Ok(())
    }

    async fn hand_back_held(
        &self,
        source: &dyn ArchiveSource,
        tally: &mut Tally,
        report: &mut SweepReport,
    ) {
        let held: Vec<_> = std::mem::take(&mut tally.held)
            .into_iter()
            .map(|(candidate, _, _)| candidate)
            .collect();
        self.hand_back(source, &held, report).await;
    }

    /// `Err` when implausibly many of the blobs this sweep tried look
    /// missing: more than `missing_stop_count` and more than
    /// `missing_stop_percent` of them.
    fn plausible(&self, tally: &Tally) -> Result<()> {
        let suspects = tally.held.len() as u64;
        let stop_count = self.config.missing_stop_count;
        let stop_percent = u64::from(self.config.missing_stop_percent);
        if suspects > stop_count && suspects * 100 > stop_percent * tally.tried {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} of the {} blobs this sweep tried are in neither store: more than \
                     ARCHIVE_MISSING_STOP_COUNT ({stop_count}) and more than \
                     ARCHIVE_MISSING_STOP_PERCENT ({stop_percent}%). That is far more likely a \
                     wrong setting (the hot store's root, bucket, endpoint or key: {}; or the cold \
                     store's) than real loss, so nothing was recorded. Run `coldsweep check`; if \
                     these blobs are really gone, raise ARCHIVE_MISSING_STOP_COUNT for one sweep",
                    suspects,
                    tally.tried,
                    hot_settings(self.hot.provider()),
                ),
            ));
        }
        Ok(())
    }

    /// Both stores prove again that they see the buckets of `suspects`.
    async fn prove_stores(&self, suspects: &[(ArchiveCandidate, String, Duration)]) -> Result<()> {
        let buckets: BTreeSet<&str> = suspects
            .iter()
            .map(|(c, _, _)| c.storage_bucket.as_str())
            .collect();
        for bucket in buckets {
            self.hot.ping(bucket).await.map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "blobs look missing, but the hot store ({}) cannot prove it sees bucket \
                         {bucket:?}: {}; nothing was recorded. Check {}",
                        self.hot.provider(),
                        error_text(&e),
                        hot_settings(self.hot.provider()),
                    ),
                )
            })?;
        }
        self.cold.ping(&self.config.bucket).await.map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "blobs look missing, but the cold store ({}) cannot prove it sees bucket {:?}: \
                     {}; nothing was recorded. Check ARCHIVE_BUCKET, ARCHIVE_ENDPOINT and the \
                     ARCHIVE_* credentials",
                    self.cold.provider(),
                    self.config.bucket,
                    error_text(&e),
                ),
            )
        })
    }

    /// A blob in neither store, both stores healthy: a first sighting (or
    /// one too soon after it) is recorded as `missing` and looked at again
    /// after `lost_after`; a later one records the verdict `lost`.
    async fn record_missing(
        &self,
        source: &dyn ArchiveSource,
        candidate: &ArchiveCandidate,
        reason: String,
    ) -> Settled {
        let fence = self.fence();
        let now = fence.now;
        let lost_after =
            chrono::Duration::from_std(self.config.lost_after).unwrap_or(chrono::Duration::MAX);
        let written = match candidate.missing_since {
            Some(since) if now - since >= lost_after => {
                let reason = format!("{reason}; missing since {}", since.to_rfc3339());
                source
                    .mark_lost(candidate, fence, &reason)
                    .await
                    .map(|()| Settled::Lost(reason))
            }
            _ => source
                .mark_missing(candidate, fence, &reason, now, now + lost_after)
                .await
                .map(|()| Settled::Missing(reason)),
        };
        written.unwrap_or_else(|e| Settled::Failed(e.context("recording a missing blob")))
    }

    /// Release a failed blob to be retried after `interval`, or quarantine
    /// it when it failed `max_attempts` times for a reason of its own while
    /// `others_moved` (blobs of its hot bucket moved in this sweep) shows
    /// the settings work.
    async fn settle_failure(
        &self,
        source: &dyn ArchiveSource,
        candidate: &ArchiveCandidate,
        error: Error,
        others_moved: bool,
    ) -> Settled {
        // The row is another worker's now: there is nothing left to record.
        if error.kind() == ErrorKind::LeaseLost {
            tracing::warn!(task_id = %candidate.task_id, error = %error, "lost the claim to another worker or its expiry; left to the lease holder");
            return Settled::Failed(error);
        }
        let fence = self.fence();
        let now = fence.now;
        let attempts = i64::from(candidate.attempts) + 1;
        let own_fault = !error.is_retryable()
            && matches!(
                error.kind(),
                ErrorKind::InvalidInput | ErrorKind::Unexpected | ErrorKind::Integrity
            );
        if own_fault && others_moved && attempts >= i64::from(self.config.max_attempts) {
            let reason = format!(
                "failed {attempts} times while other blobs moved; last error: {}",
                error_text(&error)
            );
            return match source.mark_quarantined(candidate, fence, &reason).await {
                Ok(()) => Settled::Done(Outcome::Quarantined { reason }),
                Err(e) => {
                    tracing::warn!(task_id = %candidate.task_id, error = %e, "recording a quarantine failed; the claim expires with its lease");
                    Settled::Failed(error)
                }
            };
        }
        let retry_at =
            now + chrono::Duration::from_std(self.config.interval).unwrap_or(chrono::Duration::MAX);
        if let Err(e) = source
            .release(candidate, fence, &error_text(&error), retry_at)
            .await
        {
            tracing::warn!(task_id = %candidate.task_id, error = %e, "recording failure failed; the claim expires with its lease");
        }
        Settled::Failed(error)
    }

    /// Give claims back untouched in one write, under a short time limit
    /// (an unreturned claim expires with its lease anyway).
    async fn hand_back(
        &self,
        source: &dyn ArchiveSource,
        candidates: &[ArchiveCandidate],
        report: &mut SweepReport,
    ) {
        if candidates.is_empty() {
            return;
        }
        report.released += candidates.len() as u64;
        for _ in candidates {
            metrics::blob(source.name(), BlobOutcome::Released, Duration::ZERO);
        }
        let handed = tokio::time::timeout(
            SHUTDOWN_WRITES,
            source.hand_back(candidates, &self.worker_id),
        )
        .await;
        match handed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(source = source.name(), error = %e, "handing back claims failed; they expire with their lease")
            }
            Err(_) => {
                tracing::warn!(
                    source = source.name(),
                    "handing back claims timed out; they expire with their lease"
                )
            }
        }
    }

    fn stop_sweep(&self, source: &str, error: &Error, report: &mut SweepReport) {
        tracing::error!(source, kind = %error.kind(), "sweep stopped: {}", error.message());
        metrics::sweep_error(Step::Health, error.kind());
        report.problem(
            source,
            None,
            ProblemKind::Stopped,
            error.message().to_owned(),
        );
    }

    /// A short lease (`config.lease`, whatever the batch), claiming only
    /// rows free since `free_before`: the heartbeat keeps it alive while
    /// this worker lives, so a dead worker's rows free up within one lease.
    fn lease(&self, free_before: DateTime<Utc>) -> Lease {
        Lease {
            owner: self.worker_id.clone(),
            free_before,
            until: self.lease_end((self.clock)()),
        }
    }

    fn lease_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX)
    }

    /// The fence of this worker's writes, now.
    fn fence(&self) -> Fence<'_> {
        Fence {
            owner: &self.worker_id,
            now: (self.clock)(),
        }
    }

    /// Every third of a lease, extend the leases of the rows in `claims`
    /// (one write per beat). A beat that fails or hangs is only logged:
    /// the leases then run out, and the fenced writes of this worker's
    /// blobs fail instead of racing the next holder.
    async fn heartbeat(&self, source: &dyn ArchiveSource, claims: &Claims) -> Infallible {
        let every = (self.config.lease / 3).max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(every).await;
            let ids = claims.ids();
            if ids.is_empty() {
                continue;
            }
            let fence = self.fence();
            let until = self.lease_end(fence.now);
            match tokio::time::timeout(every, source.extend_leases(&ids, fence, until)).await {
                Ok(Ok(kept)) if kept < ids.len() as u64 => {
                    tracing::warn!(
                        source = source.name(),
                        held = ids.len(),
                        kept,
                        "some claims ran out or were taken over; their blobs will not be finished by this worker"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(source = source.name(), error = %e, "extending claims failed")
                }
                Err(_) => tracing::warn!(source = source.name(), "extending claims timed out"),
            }
        }
    }

    async fn process(
        &self,
        source: &dyn ArchiveSource,
        candidate: &ArchiveCandidate,
        stop: &CancellationToken,
    ) -> BlobResult {
        if stop.is_cancelled() {
            return BlobResult::Released;
        }
        let pipeline = pipeline::Pipeline {
            hot: self.hot.as_ref(),
            cold: self.cold.as_ref(),
            cold_bucket: &self.config.bucket,
            prefix: &self.config.path_prefix,
            verify: self.config.verify,
            stream_threshold: self.config.stream_threshold,
            source,
            owner: &self.worker_id,
            clock: &self.clock,
        };
        match self.run_with_retries(&pipeline, candidate, stop).await {
            Ok(outcome) => BlobResult::Done(outcome),
            Err(e) => BlobResult::Failed(e),
        }
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
            let error = match tokio::time::timeout_at(
                deadline,
                pipeline.run(candidate, retries == 0),
            )
            .await
            {
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

/// How one blob ended once its result is recorded in the catalog.
enum Settled {
    Done(Outcome),
    Missing(String),
    Lost(String),
    Failed(Error),
}

/// A sweep's running counts for one source.
#[derive(Default)]
struct Tally {
    /// Hot buckets proven reachable in this sweep.
    proven: HashSet<String>,
    /// Hot buckets from which this sweep moved a blob.
    moved: HashSet<String>,
    /// Blobs tried (released ones excluded).
    tried: u64,
    /// Blobs found in neither store, still claimed, awaiting judgement.
    held: Vec<(ArchiveCandidate, String, Duration)>,
}

/// The candidates a tally holds for judgement.
fn held(tally: &Tally) -> impl Iterator<Item = &ArchiveCandidate> {
    tally.held.iter().map(|(candidate, _, _)| candidate)
}

/// Task ids of the claims a sweep holds, shared with its heartbeat.
#[derive(Default)]
struct Claims(std::sync::Mutex<Vec<String>>);

impl Claims {
    /// Hold exactly `candidates` from now on.
    fn hold<'c>(&self, candidates: impl Iterator<Item = &'c ArchiveCandidate>) {
        let ids = candidates.map(|c| c.task_id.clone()).collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }

    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An error's message and causes, without the kind (problem lines show it apart).
fn error_text(error: &Error) -> String {
    let mut text = error.message().to_owned();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

/// The settings that point the archiver at a hot store of `provider`.
fn hot_settings(provider: &str) -> &'static str {
    match provider {
        "fs" => "HOT_FS_ROOT (and the catalog's html_storage_bucket)",
        "supabase" => {
            "SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (a service_role or sb_secret_ key), and \
             the catalog's html_storage_bucket"
        }
        _ => {
            "HOT_S3_ENDPOINT, HOT_S3_REGION, HOT_S3_ACCESS_KEY_ID, HOT_S3_SECRET_ACCESS_KEY and \
             the catalog's html_storage_bucket"
        }
    }
}

/// Count one blob's result in the report and the metrics, and log it.
fn record(
    report: &mut SweepReport,
    source: &str,
    candidate: &ArchiveCandidate,
    settled: Settled,
    elapsed: Duration,
) {
    let task = candidate.task_id.as_str();
    let outcome = match settled {
        Settled::Done(Outcome::Archived { bytes }) => {
            tracing::debug!(source, task_id = task, bytes, "archived");
            report.archived += 1;
            report.bytes += bytes;
            metrics::archived_bytes(source, bytes);
            BlobOutcome::Archived
        }
        Settled::Done(Outcome::Completed) => {
            tracing::info!(source, task_id = task, "finished an interrupted move");
            report.completed += 1;
            BlobOutcome::Completed
        }
        Settled::Done(Outcome::Quarantined { reason }) => {
            tracing::warn!(source, task_id = task, %reason, "quarantined: left hot");
            report.problem(source, Some(task), ProblemKind::Quarantined, reason);
            BlobOutcome::Quarantined
        }
        Settled::Done(Outcome::Missing { reason }) | Settled::Missing(reason) => {
            tracing::warn!(source, task_id = task, %reason, "missing from both stores: suspected, looked at again later");
            report.problem(source, Some(task), ProblemKind::Missing, reason);
            BlobOutcome::Missing
        }
        Settled::Lost(reason) => {
            tracing::error!(source, task_id = task, %reason, "LOST: blob is in neither store");
            report.problem(source, Some(task), ProblemKind::Lost, reason);
            BlobOutcome::Lost
        }
        Settled::Failed(e) => {
            tracing::warn!(source, task_id = task, kind = %e.kind(), error = %e, "move failed; will retry");
            metrics::blob_error(source, e.kind());
            report.problem(
                source,
                Some(task),
                ProblemKind::Failed(e.kind()),
                error_text(&e),
            );
            BlobOutcome::Failed
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
