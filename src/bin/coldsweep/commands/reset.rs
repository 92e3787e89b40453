//! `coldsweep reset`: put blobs back into play after their cause is fixed.

use std::process::ExitCode;

use clap::Args;
use coldsweep::catalog::{ResetFilter, ResetState};

use crate::commands::status::task_lines;
use crate::format;
use crate::format::out;
use crate::settings::{BadSettings, DbArgs};

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
    /// Every row in any of those states
    #[arg(long, conflicts_with_all = ["states", "jobs", "tasks"])]
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
pub(crate) async fn reset(db: DbArgs, args: ResetArgs) -> anyhow::Result<ExitCode> {
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
    let catalog = db.connect_migrated().await?;
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
