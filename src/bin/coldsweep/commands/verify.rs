//! `coldsweep verify`: scrub the archive — read archived blobs back from the
//! cold store and check them against the catalog. Read-only.
//!
//! Exit codes for cron: 0 every checked blob is good, 1 any is missing,
//! corrupt or unreadable (or the walk stopped early), 2 bad settings.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use coldsweep::progress::Progress;
use coldsweep::scrub::{ScrubOptions, ScrubReport, scrub_with_progress};
use serde::Serialize;

use crate::format::{self, OutputArgs, out};
use crate::settings::{BadSettings, Settings, cold_store};

/// A progress line at least every this many objects …
const PROGRESS_EVERY_OBJECTS: u64 = 1000;
/// … or this often, whichever comes first.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What `verify` checks (the stores and catalog come from [`Settings`];
/// `--concurrency`/`ARCHIVE_CONCURRENCY` sets how many objects are read at once).
#[derive(Args, Clone)]
pub(crate) struct VerifyArgs {
    /// Only this job's tasks.
    #[arg(
        long,
        value_name = "JOB_ID",
        conflicts_with = "sample",
        help_heading = "Scrub"
    )]
    job: Option<String>,
    /// Only about PCT percent of the tasks (0.01–100), the same ones every run.
    #[arg(long, value_name = "PCT", help_heading = "Scrub")]
    sample: Option<f64>,
    /// Start after this task id, e.g. the one a stopped run printed.
    #[arg(long, value_name = "TASK_ID", help_heading = "Scrub")]
    after: Option<String>,
}

/// `coldsweep verify --json`: the report and what was asked.
#[derive(Serialize)]
struct VerifyJson<'a> {
    /// `provider:bucket` of the cold store.
    target: &'a str,
    /// `--job`, else null.
    job: Option<&'a str>,
    /// `--sample`, else null.
    sample_percent: Option<f64>,
    /// `--after` (where this run started), else null.
    started_after: Option<&'a str>,
    started_at: String,
    finished_at: String,
    #[serde(flatten)]
    report: &'a ScrubReport,
}

/// `coldsweep verify`.
pub(crate) async fn verify(
    settings: Settings,
    args: VerifyArgs,
    output: OutputArgs,
) -> anyhow::Result<ExitCode> {
    // Every setting first: a bad one is exit code 2 before anything is contacted.
    let config = settings.enabled_config()?;
    let (cold_config, _) = settings.store_configs(&config)?;
    let options = ScrubOptions {
        job: args.job.clone(),
        sample_percent: args.sample,
        after: args.after.clone(),
        concurrency: config.concurrency,
        ..ScrubOptions::default()
    };
    options
        .validate()
        .map_err(|e| BadSettings(e.message().to_owned()))?;
    let cold = cold_store(config.provider, &cold_config)?;
    let catalog = settings.db.connect_migrated().await?;
    let target = format!("{}:{}", config.provider, config.bucket);
    // Reachability only: unlike `run`, no probe object is written.
    cold.ping(&config.bucket)
        .await
        .with_context(|| format!("cold bucket {target} is not reachable"))?;

    let scope = match (&options.job, options.sample_percent) {
        (Some(job), _) => format!("job {job}"),
        (None, Some(pct)) => format!("a {pct}% sample"),
        (None, None) => "every archived blob".to_owned(),
    };
    let start = match &options.after {
        Some(after) => format!(", after task {after}"),
        None => String::new(),
    };
    if !output.json {
        out!(
            "Verifying {scope}{start} in {target} ({} at once; read-only)…",
            options.concurrency
        );
    }

    let started_at = chrono::Utc::now();
    let began = Instant::now();
    let progress = Progress::new();
    let bar = crate::progress::bar(&progress, "verify", output.quiet);
    if bar.is_drawn()
        && let Some(total) = scrub_total(catalog.as_ref(), &options).await
    {
        progress.set_total(total);
    }
    let mut last_line = Instant::now();
    let mut last_count = 0;
    let report = scrub_with_progress(
        catalog.as_ref(),
        cold.as_ref(),
        &options,
        &progress,
        |report| {
            if output.quiet
                || (report.checked < last_count + PROGRESS_EVERY_OBJECTS
                    && last_line.elapsed() < PROGRESS_EVERY)
            {
                return;
            }
            last_line = Instant::now();
            last_count = report.checked;
            // The resume point, should the run be cut short: on stdout in
            // the text report, on stderr (a log line) beside JSON.
            if output.json {
                tracing::info!(
                    checked = report.checked,
                    problems = report.problem_count(),
                    after = report.last_checked.as_deref(),
                    "verify progress"
                );
            } else {
                out!("  … {}", progress_line(report));
            }
        },
    )
    .await?;
    drop(bar);

    if output.json {
        format::json(&VerifyJson {
            target: &target,
            job: options.job.as_deref(),
            sample_percent: options.sample_percent,
            started_after: options.after.as_deref(),
            started_at: format::timestamp(started_at),
            finished_at: format::timestamp(chrono::Utc::now()),
            report: &report,
        })?;
        return Ok(exit_code(&report));
    }

    out!(
        "Checked {} in {:.1}s: {}.",
        format::count(report.checked, "archived blob", "archived blobs"),
        began.elapsed().as_secs_f64(),
        summary(&report)
    );
    if !report.problems.is_empty() {
        out!("Problems ({}):", report.problem_count());
        for p in &report.problems {
            out!(
                "  task {} (job {}) {} {}/{}: {}",
                p.task_id,
                p.job_id,
                p.kind,
                p.bucket,
                p.key,
                p.reason
            );
        }
        let unlisted = report.problem_count() - report.problems.len() as u64;
        if unlisted > 0 {
            out!("  … and {unlisted} more (see the log)");
        }
    }
    match &report.last_checked {
        Some(id) => out!("Last checked task: {id} (resume with --after {id})"),
        None => out!("No archived blob matched."),
    }
    if let Some(err) = &report.aborted {
        out!("Stopped early: {}", err.chain());
    }
    Ok(exit_code(&report))
}

fn exit_code(report: &ScrubReport) -> ExitCode {
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Objects this scrub will check, for its progress bar: every archived blob
/// (the catalog's count), or that share of them for a sample; `None` for one
/// job or a resumed run, and when the catalog cannot say.
async fn scrub_total(catalog: &dyn coldsweep::Catalog, options: &ScrubOptions) -> Option<u64> {
    if options.job.is_some() || options.after.is_some() {
        return None;
    }
    let archived = match catalog.status(chrono::Utc::now()).await {
        Ok(status) => status.archived.max(0) as u64,
        Err(e) => {
            tracing::debug!(error = %e.chain(), "no total for the progress bar");
            return None;
        }
    };
    Some(match options.sample_percent {
        Some(pct) => (archived as f64 * pct / 100.0).round() as u64,
        None => archived,
    })
}

/// The counts so far, one line.
fn progress_line(report: &ScrubReport) -> String {
    let mut line = format!("checked {}: {}", report.checked, summary(report));
    if let Some(id) = &report.last_checked {
        line.push_str(&format!("; resume with --after {id}"));
    }
    line
}

/// `8 ok, 1 missing, 1 corrupt, 0 unreadable, 12.0 KiB read`.
fn summary(report: &ScrubReport) -> String {
    let mut unreadable = report.unreadable.to_string();
    if !report.unreadable_by_kind.is_empty() {
        let kinds: Vec<String> = report
            .unreadable_by_kind
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        unreadable.push_str(&format!(" ({})", kinds.join(", ")));
    }
    let mut text = format!(
        "{} ok, {} missing, {} corrupt, {unreadable} unreadable, {} read",
        report.ok,
        report.missing,
        report.corrupt,
        format::bytes(report.bytes_read)
    );
    if report.skipped > 0 {
        text.push_str(&format!(", {} outside the sample", report.skipped));
    }
    text
}
