//! `coldsweep verify`: scrub the archive — read archived blobs back from the
//! cold store and check them against the catalog. Read-only.
//!
//! With `[[sources]]` in the config file, the archived rows of the source
//! `--source` names (may be left out when there is one), in the order of
//! its key column's own type; `--after` is a key of that type.
//!
//! Exit codes for cron: 0 every checked blob is good, 1 any is missing,
//! corrupt or unreadable (or the walk stopped early), 2 bad settings.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use coldsweep::progress::Progress;
use coldsweep::scrub::{
    ScrubOptions, ScrubReport, scrub_source_with_progress, scrub_with_progress,
};
use coldsweep::source::{ArchiveSource as _, TableSource};
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
    /// Start after this task id, e.g. the one a stopped run printed (with declared sources, a
    /// row key, in the key's own order).
    #[arg(long, value_name = "TASK_ID", help_heading = "Scrub")]
    after: Option<String>,
    /// With declared [[sources]]: the source to scrub (needed when there are several).
    #[arg(long, value_name = "NAME", help_heading = "Scrub")]
    source: Option<String>,
}

/// `coldsweep verify --json`: the report and what was asked.
#[derive(Serialize)]
struct VerifyJson<'a> {
    /// `provider:bucket` of the cold store.
    target: &'a str,
    /// The declared source scrubbed; left out for the built-in task source.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
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
    let (catalog, source): (_, Option<TableSource>) = match settings.source_specs()? {
        Some(specs) => {
            let (catalog, sources) = settings.open_sources(specs, true).await?;
            let source = super::pick_source(sources, args.source.as_deref())?;
            if options.job.is_some() {
                return Err(BadSettings(format!(
                    "--job: source {} has no jobs; a declared source is scrubbed whole \
                     (or resumed with --after, or sampled with --sample)",
                    source.name()
                ))
                .into());
            }
            if let Some(after) = &options.after {
                source
                    .parse_key(after)
                    .map_err(|e| BadSettings(format!("--after: {}", e.message())))?;
            }
            (catalog, Some(source))
        }
        None => {
            super::no_sources_for(args.source.as_deref())?;
            (settings.db.connect_migrated().await?, None)
        }
    };
    let source_name = source.as_ref().map(|s| s.name().to_owned());
    let row = if source.is_some() { "row" } else { "task" };
    let target = format!("{}:{}", config.provider, config.bucket);
    // Reachability only: unlike `run`, no probe object is written.
    cold.ping(&config.bucket)
        .await
        .with_context(|| format!("cold bucket {target} is not reachable"))?;

    let scope = match (&options.job, options.sample_percent) {
        (Some(job), _) => format!("job {job}"),
        (None, Some(pct)) => format!("a {pct}% sample"),
        (None, None) => match &source_name {
            Some(name) => format!("every archived blob of source {name}"),
            None => "every archived blob".to_owned(),
        },
    };
    let start = match &options.after {
        Some(after) => format!(", after {row} {after}"),
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
        && source.is_none()
        && let Some(total) = scrub_total(catalog.as_ref(), &options).await
    {
        progress.set_total(total);
    }
    let mut last_line = Instant::now();
    let mut last_count = 0;
    let on_object = |report: &ScrubReport| {
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
    };
    let report = match &source {
        Some(source) => {
            scrub_source_with_progress(source, cold.as_ref(), &options, &progress, on_object)
                .await?
        }
        None => {
            scrub_with_progress(
                catalog.as_ref(),
                cold.as_ref(),
                &options,
                &progress,
                on_object,
            )
            .await?
        }
    };
    drop(bar);

    if output.json {
        format::json(&VerifyJson {
            target: &target,
            source: source_name.as_deref(),
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
            match &source_name {
                Some(_) => out!(
                    "  row {} {} {}/{}: {}",
                    p.task_id,
                    p.kind,
                    p.bucket,
                    p.key,
                    p.reason
                ),
                None => out!(
                    "  task {} (job {}) {} {}/{}: {}",
                    p.task_id,
                    p.job_id,
                    p.kind,
                    p.bucket,
                    p.key,
                    p.reason
                ),
            }
        }
        let unlisted = report.problem_count() - report.problems.len() as u64;
        if unlisted > 0 {
            out!("  … and {unlisted} more (see the log)");
        }
    }
    match &report.last_checked {
        Some(id) => out!("Last checked {row}: {id} (resume with --after {id})"),
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
