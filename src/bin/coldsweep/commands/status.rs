//! `coldsweep status`: where blobs are, and which need a person.

use std::process::ExitCode;

use coldsweep::catalog::{BlobState, Catalog, TaskRow};

use crate::format::out;
use crate::settings::Settings;

/// Quarantined and lost tasks listed at most.
const LIST_LIMIT: usize = 20;

/// `coldsweep status`.
pub(crate) async fn status(settings: Settings) -> anyhow::Result<ExitCode> {
    let catalog = settings.db.connect_migrated().await?;
    let counts = catalog.status(chrono::Utc::now()).await?;

    out!("Catalog ({}):", catalog.backend());
    let rows = [
        ("hot", counts.hot, "blobs in hot storage"),
        (
            "pending hot delete",
            counts.pending_hot_delete,
            "in cold already; the next sweep deletes the hot copy",
        ),
        ("archived", counts.archived, "blobs in cold storage"),
        (
            "quarantined",
            counts.quarantined,
            "bytes disagree with the catalog; kept hot",
        ),
        ("lost", counts.lost, "in neither store"),
        ("leased", counts.leased, "being moved by a worker right now"),
        (
            "failing",
            counts.failing,
            "last attempt failed; retried later",
        ),
        (
            "jobs archived",
            counts.archived_jobs,
            "jobs with nothing left hot",
        ),
    ];
    for (name, n, meaning) in rows {
        out!("  {name:<20} {n:>8}   {meaning}");
    }

    list(catalog.as_ref(), BlobState::Quarantined, counts.quarantined).await?;
    list(catalog.as_ref(), BlobState::Lost, counts.lost).await?;
    Ok(ExitCode::SUCCESS)
}

async fn list(catalog: &dyn Catalog, state: BlobState, total: i64) -> anyhow::Result<()> {
    if total == 0 {
        return Ok(());
    }
    let tasks = catalog.tasks_in_state(state, LIST_LIMIT).await?;
    out!("\n{} ({total}):", capitalised(state.as_str()));
    out!("{}", task_lines(&tasks).trim_end());
    let shown = tasks.len() as i64;
    if total > shown {
        out!("  … and {} more", total - shown);
    }
    Ok(())
}

/// One line per task: id, job, reason.
pub(crate) fn task_lines(tasks: &[TaskRow]) -> String {
    let mut out = String::new();
    for task in tasks {
        out.push_str(&format!(
            "  task {} (job {}): {}\n",
            task.id,
            task.job_id,
            task.html_archive_error
                .as_deref()
                .unwrap_or("no reason recorded")
        ));
    }
    out
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
