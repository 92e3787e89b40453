//! `coldsweep restore`: bring archived blobs back to the hot store.
//!
//! Exit codes: 0 every restorable row selected was restored (or a dry
//! run), 1 any row failed or was corrupt, 2 bad arguments or settings.

use std::process::ExitCode;

use clap::Args;
use coldsweep::ErrorKind;
use coldsweep::progress::Progress;
use coldsweep::restore::{
    self, Failure, RestoreOptions, RestorePlan, RestoreReport, RestoreRequest, Restorer, Skipped,
    TableRestoreOptions, TableRestorePlan, TableRestoreRequest, TableRestorer,
};
use coldsweep::source::ArchiveSource;
use coldsweep::source::spec::SourceSpec;
use serde::Serialize;

use crate::commands::reset::{chosen, names};
use crate::format;
use crate::format::out;
use crate::settings::{BadSettings, Settings, bad, cold_store, restore_hot_store};

/// What to restore, and whether to do it.
#[derive(Args, Clone)]
pub(crate) struct RestoreArgs {
    /// This task (repeat for several)
    #[arg(long = "task", value_name = "TASK_ID", help_heading = "Restore")]
    tasks: Vec<String>,
    /// Every archived task of this job (repeat for several)
    #[arg(long = "job", value_name = "JOB_ID", help_heading = "Restore")]
    jobs: Vec<String>,
    /// The declared source to restore from (the config file's [[sources]]; needed with several)
    #[arg(long = "source", value_name = "NAME", help_heading = "Restore")]
    source: Option<String>,
    /// A declared source's row, by key (repeat for several)
    #[arg(long = "key", value_name = "KEY", help_heading = "Restore")]
    keys: Vec<String>,
    /// Every archived row of this parent of a declared source (repeat for several)
    #[arg(long = "parent", value_name = "KEY", help_heading = "Restore")]
    parents: Vec<String>,
    /// Hot bucket to restore into; default: the one bucket the catalog's hot rows use
    #[arg(long, value_name = "BUCKET", help_heading = "Restore")]
    hot_bucket: Option<String>,
    /// Delete each cold copy once its row points hot again (kept by default)
    #[arg(long, help_heading = "Restore")]
    delete_cold: bool,
    /// Do it; without it, only list what would be restored
    #[arg(long, help_heading = "Restore")]
    yes: bool,
    #[command(flatten)]
    output: format::OutputArgs,
}

/// `coldsweep restore`.
pub(crate) async fn restore(settings: Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if let Some(specs) = settings.source_specs()? {
        return restore_declared(&settings, specs, args).await;
    }
    if args.source.is_some() || !args.keys.is_empty() || !args.parents.is_empty() {
        return Err(BadSettings(
            "--source, --key and --parent select rows of sources declared in the config \
             file ([[sources]]); without them, select with --task and --job"
                .to_owned(),
        )
        .into());
    }
    let request = RestoreRequest {
        tasks: args.tasks.clone(),
        jobs: args.jobs.clone(),
    };
    request
        .validate()
        .map_err(|e| BadSettings(format!("{}; see `coldsweep restore --help`", e.message())))?;
    // Every setting first: a bad one is exit code 2 before anything is contacted.
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = restore_hot_store(&hot_config)?;
    let catalog = settings.db.connect_migrated().await?;
    let hot_bucket = restore::hot_bucket(catalog.as_ref(), args.hot_bucket.as_deref())
        .await
        .map_err(bad)?;
    let options = RestoreOptions {
        hot_bucket,
        delete_cold: args.delete_cold,
        concurrency: config.concurrency,
        lease: config.lease,
        blob_timeout: config.blob_timeout,
    };
    let restorer = Restorer::new(catalog, cold, hot, options);

    if !args.yes {
        let plan = restorer.plan(&request).await?;
        if args.output.json {
            format::json(&Json::dry_run(restorer.options(), &plan))?;
        } else {
            print_plan(&restorer, &plan);
        }
        return Ok(ExitCode::SUCCESS);
    }

    let progress = Progress::new();
    let bar = crate::progress::bar(&progress, "restore", args.output.quiet);
    let report = restorer.run(&request, &progress).await;
    drop(bar);
    let report = match report {
        Ok(report) => report,
        // A hot bucket that is not there is a setting (or --hot-bucket) to fix.
        Err(e) if e.kind() == ErrorKind::BucketNotFound => {
            return Err(BadSettings(format!(
                "{}; check --hot-bucket and the hot store's settings",
                e.chain()
            ))
            .into());
        }
        Err(e) => return Err(bad(e)),
    };
    if args.output.json {
        format::json(&Json::done(restorer.options(), &report))?;
    } else {
        print_report(&restorer, &report);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(restorer: &Restorer, plan: &RestorePlan) {
    let options = restorer.options();
    let what = format::count(plan.rows.len() as u64, "task", "tasks");
    if plan.rows.is_empty() {
        out!("Nothing to restore: no selected task is archived.");
    } else {
        out!(
            "Would restore {what} ({}) to hot bucket {}:",
            format::bytes(plan.bytes()),
            options.hot_bucket
        );
        for row in &plan.rows {
            out!(
                "  task {} (job {}): {}{} → {}{}",
                row.task_id,
                row.job_id,
                row.cold_provider
                    .as_deref()
                    .map(|p| format!("{p}:"))
                    .unwrap_or_default(),
                row.cold,
                row.hot,
                row.size
                    .map(|n| format!(" ({})", format::bytes(n)))
                    .unwrap_or_default()
            );
        }
    }
    print_skipped(&plan.skipped);
    if !plan.rows.is_empty() {
        out!(
            "Dry run: nothing was changed. Run again with --yes to restore {what}{}.",
            if options.delete_cold {
                " and then delete their cold copies"
            } else {
                " (their cold copies are kept; add --delete-cold to delete them afterwards)"
            }
        );
    }
}

fn print_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    out!("Not restorable ({}):", skipped.len());
    for skip in skipped {
        let who = match (&skip.task_id, &skip.job_id) {
            (Some(task), Some(job)) => format!("task {task} (job {job})"),
            (Some(task), None) => format!("task {task}"),
            (None, Some(job)) => format!("job {job}"),
            (None, None) => "?".to_owned(),
        };
        out!("  {who}: {}", skip.reason);
    }
}

fn print_failures(title: &str, failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    out!("{title} ({}):", failures.len());
    for f in failures {
        out!(
            "  task {} (job {}) {}: {}",
            f.task_id,
            f.job_id,
            f.kind,
            f.error
        );
    }
}

fn print_report(restorer: &Restorer, report: &RestoreReport) {
    let options = restorer.options();
    out!(
        "Restored {} ({}) to hot bucket {}; {} failed.",
        format::count(report.restored.len() as u64, "task", "tasks"),
        format::bytes(report.bytes),
        options.hot_bucket,
        report.failed.len()
    );
    for row in &report.restored {
        out!("  task {} (job {}) → {}", row.task_id, row.job_id, row.hot);
    }
    print_failures("Not restored, still archived", &report.failed);
    print_skipped(&report.skipped);
    if !report.jobs_reopened.is_empty() {
        out!(
            "Jobs no longer archived (status as before archiving): {}",
            report.jobs_reopened.join(", ")
        );
    }
    if options.delete_cold {
        out!(
            "Cold copies deleted: {}.",
            format::count(report.cold_deleted, "object", "objects")
        );
        print_failures(
            "Cold copies not deleted (unreferenced now; delete them by hand or re-run)",
            &report.cold_delete_failed,
        );
    } else if !report.restored.is_empty() {
        out!(
            "Cold copies kept (the catalog no longer points at them; a later archive reuses them)."
        );
    }
    if !report.failed.is_empty() {
        out!("Run the same command again to retry the rows not restored.");
    }
}

/// The `--json` object; every field is documented in README's "JSON output".
#[derive(Serialize)]
struct Json {
    dry_run: bool,
    hot_bucket: String,
    delete_cold: bool,
    planned: Vec<JsonPlanned>,
    restored: Vec<JsonRestored>,
    failed: Vec<JsonFailure>,
    skipped: Vec<JsonSkipped>,
    cold_deleted: u64,
    cold_delete_failed: Vec<JsonFailure>,
    jobs_reopened: Vec<String>,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonPlanned {
    task_id: String,
    job_id: String,
    cold_provider: Option<String>,
    cold_bucket: String,
    cold_key: String,
    hot_bucket: String,
    hot_key: String,
    size_bytes: Option<u64>,
}

#[derive(Serialize)]
struct JsonRestored {
    task_id: String,
    job_id: String,
    hot_bucket: String,
    hot_key: String,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonFailure {
    task_id: String,
    job_id: String,
    kind: &'static str,
    error: String,
}

#[derive(Serialize)]
struct JsonSkipped {
    task_id: Option<String>,
    job_id: Option<String>,
    reason: &'static str,
    detail: String,
}

impl Json {
    fn dry_run(options: &RestoreOptions, plan: &RestorePlan) -> Self {
        Self {
            dry_run: true,
            hot_bucket: options.hot_bucket.clone(),
            delete_cold: options.delete_cold,
            planned: plan
                .rows
                .iter()
                .map(|row| JsonPlanned {
                    task_id: row.task_id.clone(),
                    job_id: row.job_id.clone(),
                    cold_provider: row.cold_provider.clone(),
                    cold_bucket: row.cold.bucket.clone(),
                    cold_key: row.cold.key.as_str().to_owned(),
                    hot_bucket: row.hot.bucket.clone(),
                    hot_key: row.hot.key.as_str().to_owned(),
                    size_bytes: row.size,
                })
                .collect(),
            restored: Vec::new(),
            failed: Vec::new(),
            skipped: skipped(&plan.skipped),
            cold_deleted: 0,
            cold_delete_failed: Vec::new(),
            jobs_reopened: Vec::new(),
            bytes: plan.bytes(),
        }
    }

    fn done(options: &RestoreOptions, report: &RestoreReport) -> Self {
        Self {
            dry_run: false,
            hot_bucket: options.hot_bucket.clone(),
            delete_cold: options.delete_cold,
            planned: Vec::new(),
            restored: report
                .restored
                .iter()
                .map(|row| JsonRestored {
                    task_id: row.task_id.clone(),
                    job_id: row.job_id.clone(),
                    hot_bucket: row.hot.bucket.clone(),
                    hot_key: row.hot.key.as_str().to_owned(),
                    bytes: row.bytes,
                })
                .collect(),
            failed: failures(&report.failed),
            skipped: skipped(&report.skipped),
            cold_deleted: report.cold_deleted,
            cold_delete_failed: failures(&report.cold_delete_failed),
            jobs_reopened: report.jobs_reopened.clone(),
            bytes: report.bytes,
        }
    }
}

fn skipped(skipped: &[Skipped]) -> Vec<JsonSkipped> {
    skipped
        .iter()
        .map(|s| JsonSkipped {
            task_id: s.task_id.clone(),
            job_id: s.job_id.clone(),
            reason: s.reason.as_str(),
            detail: s.reason.to_string(),
        })
        .collect()
}

fn failures(failures: &[Failure]) -> Vec<JsonFailure> {
    failures
        .iter()
        .map(|f| JsonFailure {
            task_id: f.task_id.clone(),
            job_id: f.job_id.clone(),
            kind: f.kind.as_str(),
            error: f.error.clone(),
        })
        .collect()
}

/// `coldsweep restore` of a source the config file declares.
async fn restore_declared(
    settings: &Settings,
    specs: Vec<SourceSpec>,
    args: RestoreArgs,
) -> anyhow::Result<ExitCode> {
    if !args.tasks.is_empty() || !args.jobs.is_empty() {
        return Err(BadSettings(
            "--task and --job select the built-in source's rows; the config file declares \
             sources: select with --key and --parent (and --source NAME)"
                .to_owned(),
        )
        .into());
    }
    if args.hot_bucket.is_some() {
        return Err(BadSettings(
            "--hot-bucket: a declared source's rows go back to the hot bucket and path \
             recorded when they were archived"
                .to_owned(),
        )
        .into());
    }
    if args.keys.is_empty() && args.parents.is_empty() {
        return Err(BadSettings(
            "restore needs at least one --key KEY or --parent KEY; see `coldsweep restore --help`"
                .to_owned(),
        )
        .into());
    }
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = restore_hot_store(&hot_config)?;
    let (_catalog, sources) = settings.open_sources(specs, true).await?;
    let mut sources = chosen(sources, args.source.as_deref())?;
    if sources.len() > 1 {
        return Err(BadSettings(format!(
            "restore: say which source with --source ({})",
            names(&sources)
        ))
        .into());
    }
    let source = sources.remove(0);
    source.check_keys(&args.keys, &args.parents).map_err(bad)?;
    let name = source.name().to_owned();
    let request = TableRestoreRequest {
        keys: args.keys.clone(),
        parents: args.parents.clone(),
    };
    let options = TableRestoreOptions {
        delete_cold: args.delete_cold,
        concurrency: config.concurrency,
        lease: config.lease,
        blob_timeout: config.blob_timeout,
    };
    let restorer = TableRestorer::new(source, cold, hot, options);
    if !args.yes {
        let plan = restorer.plan(&request).await.map_err(bad)?;
        if args.output.json {
            format::json(&TableJson::dry_run(&name, args.delete_cold, &plan))?;
        } else {
            print_table_plan(&name, args.delete_cold, &plan);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let progress = Progress::new();
    let bar = crate::progress::bar(&progress, "restore", args.output.quiet);
    let report = restorer.run(&request, &progress).await;
    drop(bar);
    let report = match report {
        Ok(report) => report,
        Err(e) if e.kind() == ErrorKind::BucketNotFound => {
            return Err(
                BadSettings(format!("{}; check the hot store's settings", e.chain())).into(),
            );
        }
        Err(e) => return Err(bad(e)),
    };
    if args.output.json {
        format::json(&TableJson::done(&name, args.delete_cold, &report))?;
    } else {
        print_table_report(&name, args.delete_cold, &report);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_table_plan(source: &str, delete_cold: bool, plan: &TableRestorePlan) {
    let what = format::count(plan.rows.len() as u64, "row", "rows");
    if plan.rows.is_empty() {
        out!("Nothing to restore: no selected row of source {source} is archived.");
    } else {
        out!(
            "Would restore {what} of source {source} ({}) to where each was hot:",
            format::bytes(plan.bytes())
        );
        for row in &plan.rows {
            out!(
                "  row {}: {}{} → {}{}",
                row.key,
                row.cold_provider
                    .as_deref()
                    .map(|p| format!("{p}:"))
                    .unwrap_or_default(),
                row.cold,
                row.hot,
                row.size
                    .map(|n| format!(" ({})", format::bytes(n)))
                    .unwrap_or_default()
            );
        }
    }
    print_table_skipped(&plan.skipped);
    if !plan.rows.is_empty() {
        out!(
            "Dry run: nothing was changed. Run again with --yes to restore {what}{}.",
            if delete_cold {
                " and then delete their cold copies"
            } else {
                " (their cold copies are kept; add --delete-cold to delete them afterwards)"
            }
        );
    }
}

fn print_table_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    out!("Not restorable ({}):", skipped.len());
    for skip in skipped {
        let who = match (&skip.task_id, &skip.job_id) {
            (Some(key), _) => format!("row {key}"),
            (None, Some(parent)) => format!("parent {parent}"),
            (None, None) => "?".to_owned(),
        };
        out!("  {who}: {}", skip.reason);
    }
}

fn print_table_failures(title: &str, failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    out!("{title} ({}):", failures.len());
    for f in failures {
        out!("  row {} {}: {}", f.task_id, f.kind, f.error);
    }
}

fn print_table_report(source: &str, delete_cold: bool, report: &RestoreReport) {
    out!(
        "Restored {} of source {source} ({}); {} failed.",
        format::count(report.restored.len() as u64, "row", "rows"),
        format::bytes(report.bytes),
        report.failed.len()
    );
    for row in &report.restored {
        out!("  row {} → {}", row.task_id, row.hot);
    }
    print_table_failures("Not restored, still archived", &report.failed);
    print_table_skipped(&report.skipped);
    if !report.jobs_reopened.is_empty() {
        out!(
            "Parents no longer marked (status as before): {}",
            report.jobs_reopened.join(", ")
        );
    }
    if delete_cold {
        out!(
            "Cold copies deleted: {}.",
            format::count(report.cold_deleted, "object", "objects")
        );
        print_table_failures(
            "Cold copies not deleted (unreferenced now; delete them by hand or re-run)",
            &report.cold_delete_failed,
        );
    } else if !report.restored.is_empty() {
        out!(
            "Cold copies kept (the catalog no longer points at them; a later archive reuses them)."
        );
    }
    if !report.failed.is_empty() {
        out!("Run the same command again to retry the rows not restored.");
    }
}

/// The `--json` object of a declared source's restore; fields in README's "JSON output".
#[derive(Serialize)]
struct TableJson {
    dry_run: bool,
    source: String,
    delete_cold: bool,
    planned: Vec<TableJsonPlanned>,
    restored: Vec<TableJsonRestored>,
    failed: Vec<TableJsonFailure>,
    skipped: Vec<TableJsonSkipped>,
    cold_deleted: u64,
    cold_delete_failed: Vec<TableJsonFailure>,
    parents_reopened: Vec<String>,
    bytes: u64,
}

#[derive(Serialize)]
struct TableJsonPlanned {
    key: String,
    parent: Option<String>,
    cold_provider: Option<String>,
    cold_bucket: String,
    cold_key: String,
    hot_bucket: String,
    hot_key: String,
    size_bytes: Option<u64>,
}

#[derive(Serialize)]
struct TableJsonRestored {
    key: String,
    parent: Option<String>,
    hot_bucket: String,
    hot_key: String,
    bytes: u64,
}

#[derive(Serialize)]
struct TableJsonFailure {
    key: String,
    parent: Option<String>,
    kind: &'static str,
    error: String,
}

#[derive(Serialize)]
struct TableJsonSkipped {
    key: Option<String>,
    parent: Option<String>,
    reason: &'static str,
    detail: String,
}

/// The parent of a report row (kept in `job_id`, empty without one).
fn parent(job_id: &str) -> Option<String> {
    (!job_id.is_empty()).then(|| job_id.to_owned())
}

impl TableJson {
    fn dry_run(source: &str, delete_cold: bool, plan: &TableRestorePlan) -> Self {
        Self {
            dry_run: true,
            source: source.to_owned(),
            delete_cold,
            planned: plan
                .rows
                .iter()
                .map(|row| TableJsonPlanned {
                    key: row.key.clone(),
                    parent: row.parent.clone(),
                    cold_provider: row.cold_provider.clone(),
                    cold_bucket: row.cold.bucket.clone(),
                    cold_key: row.cold.key.as_str().to_owned(),
                    hot_bucket: row.hot.bucket.clone(),
                    hot_key: row.hot.key.as_str().to_owned(),
                    size_bytes: row.size,
                })
                .collect(),
            restored: Vec::new(),
            failed: Vec::new(),
            skipped: table_skipped(&plan.skipped),
            cold_deleted: 0,
            cold_delete_failed: Vec::new(),
            parents_reopened: Vec::new(),
            bytes: plan.bytes(),
        }
    }

    fn done(source: &str, delete_cold: bool, report: &RestoreReport) -> Self {
        Self {
            dry_run: false,
            source: source.to_owned(),
            delete_cold,
            planned: Vec::new(),
            restored: report
                .restored
                .iter()
                .map(|row| TableJsonRestored {
                    key: row.task_id.clone(),
                    parent: parent(&row.job_id),
                    hot_bucket: row.hot.bucket.clone(),
                    hot_key: row.hot.key.as_str().to_owned(),
                    bytes: row.bytes,
                })
                .collect(),
            failed: table_failures(&report.failed),
            skipped: table_skipped(&report.skipped),
            cold_deleted: report.cold_deleted,
            cold_delete_failed: table_failures(&report.cold_delete_failed),
            parents_reopened: report.jobs_reopened.clone(),
            bytes: report.bytes,
        }
    }
}

fn table_skipped(skipped: &[Skipped]) -> Vec<TableJsonSkipped> {
    skipped
        .iter()
        .map(|s| TableJsonSkipped {
            key: s.task_id.clone(),
            parent: s.job_id.clone(),
            reason: s.reason.as_str(),
            detail: s.reason.to_string(),
        })
        .collect()
}

fn table_failures(failures: &[Failure]) -> Vec<TableJsonFailure> {
    failures
        .iter()
        .map(|f| TableJsonFailure {
            key: f.task_id.clone(),
            parent: parent(&f.job_id),
            kind: f.kind.as_str(),
            error: f.error.clone(),
        })
        .collect()
}
