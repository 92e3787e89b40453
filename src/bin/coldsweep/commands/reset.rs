//! `coldsweep reset`: put blobs back into play after their cause is fixed.

use std::process::ExitCode;

use clap::Args;
use coldsweep::catalog::{ResetFilter, ResetState};
use coldsweep::source::{ArchiveSource, ResetRow, TableResetFilter, TableSource};

use crate::commands::status::task_lines;
use crate::format;
use crate::format::out;
use crate::settings::{BadSettings, Settings, bad};

/// Rows listed at most before writing.
const SHOWN: usize = 20;

/// Which rows to reset, and whether to do it.
#[derive(Args, Clone)]
pub(crate) struct ResetArgs {
    /// Rows in this state: lost, missing, quarantined or failing (repeat for several)
    #[arg(long = "state", value_name = "STATE", value_parser = parse_state)]
    states: Vec<ResetState>,
    /// Rows of this job (repeat for several)
    #[arg(long = "job", value_name = "JOB_ID")]
    jobs: Vec<String>,
    /// This task (repeat for several)
    #[arg(long = "task", value_name = "TASK_ID")]
    tasks: Vec<String>,
    /// Only this declared source (the config file's [[sources]]); default: every one
    #[arg(long = "source", value_name = "NAME")]
    source: Option<String>,
    /// A declared source's row, by key (repeat for several; needs --source with several sources)
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Rows of this parent of a declared source (repeat for several)
    #[arg(long = "parent", value_name = "KEY")]
    parents: Vec<String>,
    /// Every row in any of those states
    #[arg(long, conflicts_with_all = ["states", "jobs", "tasks", "keys", "parents"])]
    all: bool,
    /// Write the change; without it, only show what would change
    #[arg(long)]
    yes: bool,
}

fn parse_state(text: &str) -> Result<ResetState, String> {
    text.parse()
        .map_err(|e: coldsweep::Error| e.message().to_owned())
}

/// `coldsweep reset`.
pub(crate) async fn reset(settings: Settings, args: ResetArgs) -> anyhow::Result<ExitCode> {
    if let Some(specs) = settings.source_specs()? {
        return reset_declared(&settings, specs, args).await;
    }
    if args.source.is_some() || !args.keys.is_empty() || !args.parents.is_empty() {
        return Err(BadSettings(
            "--source, --key and --parent select rows of sources declared in the config \
             file ([[sources]]); without them, select with --task and --job"
                .to_owned(),
        )
        .into());
    }
    if !args.all && args.states.is_empty() && args.jobs.is_empty() && args.tasks.is_empty() {
        return Err(BadSettings(
            "reset needs a selector: --state lost|missing|quarantined|failing, --job ID, \
             --task ID, or --all; see `coldsweep reset --help`"
                .to_owned(),
        )
        .into());
    }
    let filter = ResetFilter {
        states: args.states,
        jobs: args.jobs,
        tasks: args.tasks,
    };
    let catalog = settings.db.connect_migrated().await?;
    let now = chrono::Utc::now();
    let (count, rows) = catalog.reset_preview(&filter, now, SHOWN).await?;
    if count == 0 {
        out!("Nothing to reset: no row matches (rows a worker holds right now are left alone).");
        return Ok(ExitCode::SUCCESS);
    }
    let what = format::count(count, "row", "rows");
    out!(
        "{} {what}:",
        if args.yes { "Resetting" } else { "Would reset" }
    );
    out!("{}", with_states(&rows).trim_end());
    if count > rows.len() as u64 {
        out!("  … and {} more", count - rows.len() as u64);
    }
    if !args.yes {
        out!("Dry run: nothing was changed. Run again with --yes to reset {what}.");
        return Ok(ExitCode::SUCCESS);
    }
    let done = catalog.reset(&filter, now).await?;
    out!(
        "Reset {}: the next sweep looks at {} afresh.",
        format::count(done, "row", "rows"),
        if done == 1 { "it" } else { "them" }
    );
    Ok(ExitCode::SUCCESS)
}

/// The task lines of `status`, each with the row's state in front.
fn with_states(rows: &[coldsweep::catalog::TaskRow]) -> String {
    rows.iter()
        .map(|row| {
            let state = row.html_archive_state.as_deref().unwrap_or("failing");
            format!(
                "  {state:<11}{}",
                task_lines(std::slice::from_ref(row)).trim_start()
            )
        })
        .collect()
}

/// `coldsweep reset` over the config file's declared sources.
async fn reset_declared(
    settings: &Settings,
    specs: Vec<coldsweep::source::spec::SourceSpec>,
    args: ResetArgs,
) -> anyhow::Result<ExitCode> {
    if !args.tasks.is_empty() || !args.jobs.is_empty() {
        return Err(BadSettings(
            "--task and --job select the built-in source's rows; the config file declares \
             sources: select with --key and --parent (and --source NAME)"
                .to_owned(),
        )
        .into());
    }
    if !args.all && args.states.is_empty() && args.keys.is_empty() && args.parents.is_empty() {
        return Err(BadSettings(
            "reset needs a selector: --state lost|missing|quarantined|failing, --key KEY, \
             --parent KEY, or --all; see `coldsweep reset --help`"
                .to_owned(),
        )
        .into());
    }
    let (_catalog, sources) = settings.open_sources(specs, true).await?;
    let sources = chosen(sources, args.source.as_deref())?;
    if (!args.keys.is_empty() || !args.parents.is_empty()) && sources.len() > 1 {
        return Err(BadSettings(format!(
            "--key and --parent are keys of one source: say which with --source ({})",
            names(&sources)
        ))
        .into());
    }
    let filter = TableResetFilter {
        states: args.states,
        keys: args.keys,
        parents: args.parents,
    };
    for source in &sources {
        source
            .check_keys(&filter.keys, &filter.parents)
            .map_err(bad)?;
    }
    let now = chrono::Utc::now();
    let mut total = 0;
    for source in &sources {
        let (count, rows) = source.reset_preview(&filter, now, SHOWN).await?;
        if count == 0 {
            continue;
        }
        total += count;
        let what = format::count(count, "row", "rows");
        out!(
            "Source {}: {} {what}:",
            source.name(),
            if args.yes { "resetting" } else { "would reset" }
        );
        out!("{}", row_lines(&rows).trim_end());
        if count > rows.len() as u64 {
            out!("  … and {} more", count - rows.len() as u64);
        }
    }
    if total == 0 {
        out!("Nothing to reset: no row matches (rows a worker holds right now are left alone).");
        return Ok(ExitCode::SUCCESS);
    }
    let what = format::count(total, "row", "rows");
    if !args.yes {
        out!("Dry run: nothing was changed. Run again with --yes to reset {what}.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut done = 0;
    for source in &sources {
        done += source.reset(&filter, now).await?;
    }
    out!(
        "Reset {}: the next sweep looks at {} afresh.",
        format::count(done, "row", "rows"),
        if done == 1 { "it" } else { "them" }
    );
    Ok(ExitCode::SUCCESS)
}

/// The source `--source` names, or every one.
pub(crate) fn chosen(
    sources: Vec<TableSource>,
    name: Option<&str>,
) -> anyhow::Result<Vec<TableSource>> {
    let Some(name) = name else {
        return Ok(sources);
    };
    let all = names(&sources);
    match sources.into_iter().find(|s| s.name() == name) {
        Some(source) => Ok(vec![source]),
        None => Err(BadSettings(format!(
            "--source {name:?}: the config file declares no such source (it declares {all})"
        ))
        .into()),
    }
}

/// The sources' names, for messages.
pub(crate) fn names(sources: &[TableSource]) -> String {
    sources
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per row: state, key, hot path and the recorded reason.
fn row_lines(rows: &[ResetRow]) -> String {
    rows.iter()
        .map(|row| {
            let mut line = format!("  {:<11} row {}", row.state, row.key);
            if let Some(path) = &row.path {
                line.push_str(&format!(" ({path})"));
            }
            if let Some(error) = &row.error {
                line.push_str(&format!(": {error}"));
            }
            line.push('\n');
            line
        })
        .collect()
}
