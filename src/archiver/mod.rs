//! The sweep loop and the per-blob pipeline.
//!
//! A sweep marks fully-archived jobs, then for each source claims batches of
//! candidates (until a short batch) and moves them with bounded concurrency,
//! each blob under a time limit within which transient failures are retried.
//! [`Archiver::run`] sweeps at once, then after every `interval`, and on
//! shutdown stops claiming, lets in-flight blobs finish, and hands unstarted
//! claims back.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{self, BlobOutcome, Step};
use crate::model::{ArchiveCandidate, Claim, Fence, Lease};
use crate::progress::Progress;
use crate::source::{ArchiveSource, TableSource, TaskHtmlSource};
use crate::store::Store;
use crate::store::retry::Retry;

pub(crate) mod lease;
mod pipeline;
mod stream;
mod verify;

pub use pipeline::Outcome;
use pipeline::{Ran, Verified};

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

/// The parent markers of declared sources ([`TableSource::mark_parents`]).
#[derive(Debug, Clone)]
pub struct SourceMarkers(pub Vec<TableSource>);

#[async_trait]
impl JobMarker for SourceMarkers {
    async fn mark_archived_jobs(&self) -> Result<u64> {
        let mut marked = 0;
        for source in &self.0 {
            marked += source.mark_parents().await?;
        }
        Ok(marked)
    }
}

/// Source of the current time, injectable so lease expiry is testable.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Something that went wrong for one blob or one step of a sweep.
///
/// Serialized (`coldsweep sweep --once --json`) as `source`, `task_id`,
/// `kind`, `error_kind` (see [`ProblemKind`]) and `message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Source name.
    pub source: String,
    /// The blob's task, or `None` for a sweep-level step (claim, job marker).
    pub task_id: Option<String>,
    /// What happened: `quarantined`, `missing`, `lost`, `stopped`, or an error kind.
    #[serde(flatten)]
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

impl ProblemKind {
    /// `quarantined`, `missing`, `lost`, `failed` or `stopped`, without the
    /// error kind of a failure (see [`ProblemKind::error_kind`]).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Quarantined => "quarantined",
            ProblemKind::Missing => "missing",
            ProblemKind::Lost => "lost",
            ProblemKind::Failed(_) => "failed",
            ProblemKind::Stopped => "stopped",
        }
    }

    /// The error kind of a failure; `None` for every other kind.
    pub fn error_kind(self) -> Option<ErrorKind> {
        match self {
            ProblemKind::Failed(kind) => Some(kind),
            _ => None,
        }
    }
}

/// Two fields: `kind` ([`ProblemKind::as_str`]) and `error_kind` (the
/// [`ErrorKind`] of a failure, else null), so a script matches on strings.
impl Serialize for ProblemKind {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("ProblemKind", 2)?;
        s.serialize_field("kind", self.as_str())?;
        s.serialize_field("error_kind", &self.error_kind().map(ErrorKind::as_str))?;
        s.end()
    }
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
///
/// Serializes with the field names below (`coldsweep sweep --once --json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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

    /// Why the sweep failed as a whole, if it did: it stopped (a store could
    /// not prove it sees its bucket, implausibly many blobs looked missing)
    /// or a sweep-level step failed (the job marker or a claim: a catalog
    /// error). Problems of single blobs (quarantined, missing, lost, failed)
    /// are not a failure of the sweep.
    pub fn failure(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.what == ProblemKind::Stopped)
            .or_else(|| self.problems.iter().find(|p| p.task_id.is_none()))
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

/// How the latest sweep ended, published by every sweep (see
/// [`Archiver::last_sweep`]): small, so a watcher (a readiness check, a
/// dashboard) can look at it as often as it likes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastSweep {
    /// When the sweep ended (the archiver's clock).
    pub ended_at: DateTime<Utc>,
    /// Why it failed as a whole, if it did ([`SweepReport::failure`]).
    pub failure: Option<Problem>,
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
    progress: Progress,
    last_sweep: watch::Sender<Option<LastSweep>>,
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
    /// The copy is proven; the bookkeeping is left to a chunk.
    Verified(Verified),
    Failed(Error),
    Released,
}

/// What the sweep's flow waits on.
enum Event {
    /// A blob's run ended; `first` unless it was a re-run alone.
    Blob {
        candidate: Box<ArchiveCandidate>,
        result: BlobResult,
        started: Instant,
        first: bool,
    },
    Claimed(Result<Claim>),
    Committed(Vec<(Pending, Committed)>),
    /// Time to look at the chunk waiting for bookkeeping.
    Tick,
}

/// A blob whose copy is proven, waiting for its chunk's bookkeeping.
struct Pending {
    candidate: ArchiveCandidate,
    verified: Verified,
    started: Instant,
    verified_at: Instant,
}

/// How a blob's bookkeeping in a chunk ended.
enum Committed {
    Archived,
    Failed(Error),
    /// The bulk step missed this blob for a passing reason: it is run
    /// again alone, with its own retries.
    Alone,
}

/// Longest wait for the writes that hand claims back or record failures at
/// shutdown: with the catalog down, shutdown must still finish in seconds.
const SHUTDOWN_WRITES: Duration = Duration::from_secs(5);

/// Fewest and most blobs whose bookkeeping is done in one chunk (one
/// switch, one bulk delete, one clear); between, the concurrency.
const MIN_CHUNK: usize = 16;
const MAX_CHUNK: usize = 500;

/// Longest a proven blob waits for its chunk to fill while others are in flight.
const FLUSH_AFTER: Duration = Duration::from_secs(1);

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
            progress: Progress::new(),
            last_sweep: watch::Sender::new(None),
        }
    }

    /// The usual set-up: task HTML from `catalog`, jobs marked in `catalog`.
    pub fn task_html(
        config: Config,
        catalog: Arc<dyn Catalog>,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
    ) -> Self {
        let source = Arc::new(TaskHtmlSource::with_rules(catalog.clone(), config.rules()));
        Self::new(
            cold,
            hot,
            config,
            Arc::new(CatalogJobMarker(catalog)),
            vec![source],
        )
    }

    /// Declared sources ([`TableSource`]), each source's parents marked
    /// by its own marker.
    pub fn declared(
        config: Config,
        sources: Vec<TableSource>,
        hot: Arc<dyn Store>,
        cold: Arc<dyn Store>,
    ) -> Self {
        let moving = sources
            .iter()
            .map(|s| Arc::new(s.clone()) as Arc<dyn ArchiveSource>)
            .collect();
        Self::new(cold, hot, config, Arc::new(SourceMarkers(sources)), moving)
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

    /// Count every blob a sweep settles in `progress` (for a progress bar
    /// or a status page): each one archived, finished, quarantined, found
    /// missing or lost, or failed, as it is settled, with the stored bytes
    /// it moved. Claims handed back untouched are not counted. The counts
    /// add up over every sweep of this archiver; the total is left to the
    /// caller ([`Progress::set_total`]). Without it, the counters are
    /// private and nobody reads them.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// How the latest sweep ended (`None` until the first one ends),
    /// updated at the end of every sweep, whoever runs it ([`run`](Self::run),
    /// [`sweep`](Self::sweep)). Watching costs the sweep nothing: it never
    /// waits for a reader.
    pub fn last_sweep(&self) -> watch::Receiver<Option<LastSweep>> {
        self.last_sweep.subscribe()
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
        let ended_at = (self.clock)();
        metrics::sweep(started.elapsed(), ended_at);
        self.last_sweep.send_replace(Some(LastSweep {
            ended_at,
            failure: report.failure().cloned(),
        }));
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
            Err(e) => {
                tracing::warn!(error = %e.chain(), "reading catalog counts for the metrics failed")
            }
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
                .sweep_flow(source, stop, &claims, &mut tally, report)
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

    /// Claim and move blobs until the backlog is empty: `Ok(true)` when the
    /// sweep ran to its end, `Ok(false)` when shutdown or a failed claim cut
    /// it short, `Err` when it must stop (a store unproven, implausibly many
    /// blobs missing).
    ///
    /// Workers are fed continuously: the next claim is made while blobs are
    /// in flight, and a blob starts as soon as a slot frees. Blobs whose
    /// copy is proven wait for the bookkeeping of a chunk ([`commit`](Self::commit)),
    /// which runs beside the moves.
    async fn sweep_flow(
        &self,
        source: &dyn ArchiveSource,
        stop: &CancellationToken,
        claims: &Claims,
        tally: &mut Tally,
        report: &mut SweepReport,
    ) -> Result<bool> {
        let batch_size = self.config.batch_size;
        let concurrency = self.config.concurrency.max(1);
        let chunk = concurrency.clamp(MIN_CHUNK, MAX_CHUNK);
        // Rows whose lease or back-off ends after the sweep began wait for the
        // next sweep, so blobs failing during this one cannot keep it going.
        let sweep_start = (self.clock)();
        let mut events: FuturesUnordered<BoxFuture<'_, Event>> = FuturesUnordered::new();
        let mut queue: VecDeque<ArchiveCandidate> = VecDeque::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut failures = Vec::new();
        let mut released = Vec::new();
        let (mut blobs, mut claiming, mut committing, mut ticking) = (0, false, false, false);
        // Whether the backlog may hold more, and whether nothing cut the sweep short.
        let (mut more, mut complete) = (true, true);
        let mut halt: Option<Error> = None;
        loop {
            let halted = halt.is_some() || stop.is_cancelled();
            if halted {
                more = false;
                released.extend(queue.drain(..));
            }
            // Back-pressure: blobs proven but not yet recorded stay bounded,
            // so a slow catalog or bulk delete slows the moves instead of
            // piling up proven blobs (and memory) behind it.
            while blobs < concurrency && pending.len() < 2 * chunk {
                let Some(candidate) = queue.pop_front() else {
                    break;
                };
                blobs += 1;
                events.push(Box::pin(self.blob(source, candidate, stop, true)));
            }
            // Prefetch: the next claim is on its way before the queue runs dry.
            if more && !claiming && queue.len() <= concurrency {
                claiming = true;
                let lease = self.lease(sweep_start);
                events.push(Box::pin(async move {
                    Event::Claimed(source.claim(batch_size, &lease).await)
                }));
            }
            if !committing && !pending.is_empty() {
                let waited = pending.first().map(|p: &Pending| p.verified_at.elapsed());
                if pending.len() >= chunk || blobs == 0 || halted || waited >= Some(FLUSH_AFTER) {
                    committing = true;
                    let batch: Vec<_> = pending.drain(..pending.len().min(chunk)).collect();
                    events.push(Box::pin(async move {
                        Event::Committed(self.commit(source, batch, stop).await)
                    }));
                } else if !ticking {
                    ticking = true;
                    events.push(Box::pin(async {
                        tokio::time::sleep(FLUSH_AFTER).await;
                        Event::Tick
                    }));
                }
            }
            if failures.len() >= batch_size {
                let settling = std::mem::take(&mut failures);
                self.settle_failures(source, settling, stop, claims, tally, report)
                    .await;
            }
            let working = blobs > 0 || claiming || committing;
            if !working && pending.is_empty() && queue.is_empty() {
                break;
            }
            let Some(event) = events.next().await else {
                break;
            };
            match event {
                Event::Tick => ticking = false,
                Event::Blob {
                    candidate,
                    result,
                    started,
                    first,
                } => {
                    blobs -= 1;
                    let candidate = *candidate;
                    if first && !matches!(result, BlobResult::Released) {
                        tally.tried += 1;
                    }
                    match result {
                        BlobResult::Verified(verified) => pending.push(Pending {
                            candidate,
                            verified,
                            started,
                            verified_at: Instant::now(),
                        }),
                        BlobResult::Released => released.push(candidate),
                        BlobResult::Failed(error) => {
                            failures.push((candidate, error, started.elapsed()))
                        }
                        BlobResult::Done(Outcome::Missing { reason }) => {
                            // Held, still claimed, until the end of the
                            // source's sweep, when their share of everything
                            // tried is known (the claim order groups a job's
                            // blobs, so an early share says little). Only an
                            // implausible pile stops the sweep before its end.
                            tally.held.push((candidate, reason, started.elapsed()));
                            if tally.held.len() >= EARLY_STOP_SUSPECTS && halt.is_none() {
                                halt = self.plausible(tally).err();
                            }
                        }
                        BlobResult::Done(outcome) => {
                            if matches!(outcome, Outcome::Archived { .. } | Outcome::Completed) {
                                tally.moved.insert(candidate.storage_bucket.clone());
                            }
                            claims.release(&candidate);
                            let settled = Settled::Done(outcome);
                            record(
                                &self.progress,
                                report,
                                source.name(),
                                &candidate,
                                settled,
                                started.elapsed(),
                            );
                        }
                    }
                }
                Event::Claimed(claimed) => {
                    claiming = false;
                    let claim = match claimed {
                        Ok(claim) => claim,
                        Err(e) => {
                            tracing::warn!(source = source.name(), error = %e.chain(), "claiming candidates failed");
                            metrics::sweep_error(Step::Claim, e.kind());
                            report.problem(
                                source.name(),
                                None,
                                ProblemKind::Failed(e.kind()),
                                error_text(&e),
                            );
                            (more, complete) = (false, false);
                            continue;
                        }
                    };
                    if claim.candidates.len() + claim.unreadable.len() < batch_size {
                        more = false;
                    }
                    claims.hold(&claim.candidates);
                    // Rows the catalog could not read were quarantined by the claim.
                    for row in claim.unreadable {
                        tracing::warn!(source = source.name(), task_id = %row.task_id, reason = %row.reason, "quarantined: left hot");
                        metrics::blob(source.name(), BlobOutcome::Quarantined, Duration::ZERO);
                        self.progress.object_done(0, false);
                        report.problem(
                            source.name(),
                            Some(&row.task_id),
                            ProblemKind::Quarantined,
                            row.reason,
                        );
                    }
                    if halt.is_some() || stop.is_cancelled() {
                        released.extend(claim.candidates);
                        continue;
                    }
                    // No blob of a bucket is touched before the hot store
                    // proves it sees that bucket: a wrong root, bucket,
                    // region or key must stop the sweep, not make every blob
                    // look missing.
                    match self
                        .prove_hot_buckets(&claim.candidates, &mut tally.proven)
                        .await
                    {
                        Ok(()) => queue.extend(claim.candidates),
                        Err(e) => {
                            released.extend(claim.candidates);
                            halt = Some(e);
                        }
                    }
                }
                Event::Committed(results) => {
                    committing = false;
                    for (pending, committed) in results {
                        let Pending {
                            candidate,
                            verified,
                            started,
                            ..
                        } = pending;
                        match committed {
                            Committed::Archived => {
                                tally.moved.insert(candidate.storage_bucket.clone());
                                claims.release(&candidate);
                                let settled = Settled::Done(Outcome::Archived {
                                    bytes: verified.bytes,
                                });
                                record(
                                    &self.progress,
                                    report,
                                    source.name(),
                                    &candidate,
                                    settled,
                                    started.elapsed(),
                                );
                            }
                            Committed::Failed(error) => {
                                failures.push((candidate, error, started.elapsed()))
                            }
                            Committed::Alone => {
                                blobs += 1;
                                events.push(Box::pin(self.blob(source, candidate, stop, false)));
                            }
                        }
                    }
                }
            }
        }
        self.settle_failures(source, failures, stop, claims, tally, report)
            .await;
        self.hand_back(source, &released, report).await;
        for candidate in &released {
            claims.release(candidate);
        }
        match halt {
            Some(e) => Err(e),
            None => Ok(complete && !stop.is_cancelled()),
        }
    }

    /// One blob through the pipeline, as an event of the sweep's flow: on
    /// its `first` run batched, else (a blob whose bulk bookkeeping failed)
    /// finished alone.
    async fn blob<'s>(
        &'s self,
        source: &'s dyn ArchiveSource,
        candidate: ArchiveCandidate,
        stop: &'s CancellationToken,
        first: bool,
    ) -> Event {
        let started = Instant::now();
        let result = self.process(source, &candidate, stop, first).await;
        Event::Blob {
            candidate: Box::new(candidate),
            result,
            started,
            first,
        }
    }

    /// The bookkeeping of a chunk of blobs whose cold copies are proven, in
    /// the order of invariants 1–2 for every row: one write switches them
    /// all to cold; the hot copies of the rows switched are deleted in bulk;
    /// one write clears the hot references of exactly those deleted. A crash
    /// anywhere leaves each row hot, switched with hot present, or archived.
    async fn commit(
        &self,
        source: &dyn ArchiveSource,
        batch: Vec<Pending>,
        stop: &CancellationToken,
    ) -> Vec<(Pending, Committed)> {
        let mut results = Vec::with_capacity(batch.len());
        let switches: Vec<(&ArchiveCandidate, &str)> = batch
            .iter()
            .map(|p| (&p.candidate, p.verified.cold.key.as_str()))
            .collect();
        let written = self
            .catalog_write(stop, || {
                source.record_archived_many(
                    &switches,
                    self.fence(),
                    self.cold.provider(),
                    &self.config.bucket,
                )
            })
            .await;
        drop(switches);
        let switched: HashSet<String> = match written {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                let e = e.context("recording cold copies");
                return batch
                    .into_iter()
                    .map(|p| (p, Committed::Failed(same_error(&e))))
                    .collect();
            }
        };
        let (switched, lost): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|p| switched.contains(&p.candidate.task_id));
        results.extend(lost.into_iter().map(|p| {
            let e = lease_lost(&p.candidate);
            (p, Committed::Failed(e))
        }));

        let locations: Vec<_> = switched.iter().map(|p| p.verified.hot.clone()).collect();
        let deletes = self.hot.delete_many(&locations).await;
        let mut deleted = Vec::with_capacity(switched.len());
        for (pending, result) in switched.into_iter().zip(deletes) {
            match result {
                Ok(()) => deleted.push(pending),
                // A transient failure gets the blob's own retries, alone;
                // any other is the blob's problem, settled as a failure.
                Err(e) if e.is_retryable() => {
                    tracing::debug!(task_id = %pending.candidate.task_id, error = %e.chain(), "bulk delete missed a key; finishing the blob alone");
                    results.push((pending, Committed::Alone));
                }
                Err(e) => {
                    let e = e.context(format!("delete hot {}", pending.verified.hot));
                    results.push((pending, Committed::Failed(e)));
                }
            }
        }

        let refs: Vec<&ArchiveCandidate> = deleted.iter().map(|p| &p.candidate).collect();
        let cleared = self
            .catalog_write(stop, || source.clear_hot_many(&refs, self.fence()))
            .await;
        drop(refs);
        match cleared {
            Ok(ids) => {
                let cleared: HashSet<String> = ids.into_iter().collect();
                for pending in deleted {
                    let committed = if cleared.contains(&pending.candidate.task_id) {
                        Committed::Archived
                    } else {
                        Committed::Failed(lease_lost(&pending.candidate))
                    };
                    results.push((pending, committed));
                }
            }
            // The hot copies are gone and the rows point at cold: the next
            // claim finds hot missing, proves cold and clears.
            Err(e) => {
                let e = e.context("clearing hot references");
                results.extend(
                    deleted
                        .into_iter()
                        .map(|p| (p, Committed::Failed(same_error(&e)))),
                );
            }
        }
        results
    }

    /// A bookkeeping write, repeated after a transient error with back-off
    /// for up to a blob's time limit (at shutdown: a few seconds).
    async fn catalog_write<T, F, Fut>(&self, stop: &CancellationToken, mut write: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let limit = if stop.is_cancelled() {
            SHUTDOWN_WRITES
        } else {
            self.config.blob_timeout
        };
        retrying(limit, stop, |_| write(), |_, _, _| {}).await
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

    /// Record failed blobs: each released (or quarantined when it alone
    /// keeps failing) in the catalog.
    async fn settle_failures(
        &self,
        source: &dyn ArchiveSource,
        failures: Vec<(ArchiveCandidate, Error, Duration)>,
        stop: &CancellationToken,
        claims: &Claims,
        tally: &Tally,
        report: &mut SweepReport,
    ) {
        if failures.is_empty() {
            return;
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
            claims.release(&candidate);
            record(
                &self.progress,
                report,
                source.name(),
                &candidate,
                settled,
                elapsed,
            );
        }
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
            record(
                &self.progress,
                report,
                source.name(),
                &candidate,
                settled,
                elapsed,
            );
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
            tracing::warn!(task_id = %candidate.task_id, error = %error.chain(), "lost the claim to another worker or its expiry; left to the lease holder");
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
                    tracing::warn!(task_id = %candidate.task_id, error = %e.chain(), "recording a quarantine failed; the claim expires with its lease");
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
            tracing::warn!(task_id = %candidate.task_id, error = %e.chain(), "recording failure failed; the claim expires with its lease");
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
                tracing::warn!(source = source.name(), error = %e.chain(), "handing back claims failed; they expire with their lease")
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

    /// Keep the leases of the rows in `claims` alive (see [`lease::heartbeat`]).
    async fn heartbeat(&self, source: &dyn ArchiveSource, claims: &Claims) -> Infallible {
        lease::heartbeat(
            self.config.lease,
            &claims.0,
            source.name(),
            |ids| async move {
                let fence = self.fence();
                let until = self.lease_end(fence.now);
                source.extend_leases(&ids, fence, until).await
            },
        )
        .await
    }

    async fn process(
        &self,
        source: &dyn ArchiveSource,
        candidate: &ArchiveCandidate,
        stop: &CancellationToken,
        first: bool,
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
        match self
            .run_with_retries(&pipeline, candidate, stop, first)
            .await
        {
            Ok(Ran::Finished(outcome)) => BlobResult::Done(outcome),
            Ok(Ran::Verified(verified)) => BlobResult::Verified(verified),
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
        first: bool,
    ) -> Result<Ran> {
        let attempt = |retries| pipeline.run(candidate, first && retries == 0, first);
        let retried = |retries, delay, error: &Error| {
            metrics::blob_retry(pipeline.source.name());
            tracing::debug!(task_id = %candidate.task_id, retries, ?delay, error = %error.chain(), "retrying blob");
        };
        retrying(self.config.blob_timeout, stop, attempt, retried).await
    }
}

/// Run `attempt` (given the retries so far) until it succeeds, fails with
/// an error not worth repeating, or `limit`, the retries or the sweep
/// (`stop`) run out; a transient failure is repeated after a back-off with
/// jitter, told to `retried` first.
async fn retrying<T, F, Fut>(
    limit: Duration,
    stop: &CancellationToken,
    mut attempt: F,
    retried: impl Fn(u32, Duration, &Error),
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let retry = blob_retry(limit);
    let mut retries = 0;
    loop {
        let error = match tokio::time::timeout_at(deadline, attempt(retries)).await {
            Ok(Ok(done)) => return Ok(done),
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
        retried(retries, delay, &error);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(error),
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

/// Task ids of the claims a sweep holds (queued, in flight, waiting for
/// bookkeeping or judgement), shared with its heartbeat.
#[derive(Default)]
struct Claims(lease::Held);

impl Claims {
    fn hold(&self, candidates: &[ArchiveCandidate]) {
        self.0.hold(candidates.iter().map(|c| c.task_id.clone()));
    }

    /// The claim is settled: recorded, handed back, or lost.
    fn release(&self, candidate: &ArchiveCandidate) {
        self.0.release(&candidate.task_id);
    }
}

/// `error` again, for each of the rows one bulk write failed for.
fn same_error(error: &Error) -> Error {
    let copy = Error::new(error.kind(), error_text(error));
    if error.is_retryable() {
        copy.set_retryable()
    } else {
        copy
    }
}

/// A bulk write left this row alone: another worker, or the lease's expiry, took it.
fn lease_lost(candidate: &ArchiveCandidate) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!(
            "task {}: the claim ran out or was taken over before its bookkeeping",
            candidate.task_id
        ),
    )
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

/// Count one blob's result in the report, the progress counters and the
/// metrics, and log it.
fn record(
    progress: &Progress,
    report: &mut SweepReport,
    source: &str,
    candidate: &ArchiveCandidate,
    settled: Settled,
    elapsed: Duration,
) {
    let task = candidate.task_id.as_str();
    let mut moved = 0;
    let outcome = match settled {
        Settled::Done(Outcome::Archived { bytes }) => {
            tracing::debug!(source, task_id = task, bytes, "archived");
            report.archived += 1;
            report.bytes += bytes;
            moved = bytes;
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
            tracing::warn!(source, task_id = task, kind = %e.kind(), error = %e.chain(), "move failed; will retry");
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
    let ok = matches!(outcome, BlobOutcome::Archived | BlobOutcome::Completed);
    progress.object_done(moved, ok);
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

pub(crate) fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{suffix}", std::process::id())
}
