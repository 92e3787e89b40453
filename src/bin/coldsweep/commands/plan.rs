//! `coldsweep plan`: what the next sweep would move, and why the rest stays.

use std::collections::BTreeMap;
use std::process::ExitCode;

use coldsweep::catalog::JobRetention;
use uuid::Uuid;

use crate::format;
use crate::format::out;
use crate::settings::Settings;

/// Jobs of one (domain, organisation), newest first.
pub(crate) type Groups = BTreeMap<(i32, Option<Uuid>), Vec<JobRetention>>;

/// Group `jobs` by (domain, organisation), keeping the catalog's order.
pub(crate) fn groups(jobs: Vec<JobRetention>) -> Groups {
    let mut groups = Groups::new();
    for job in jobs {
        groups
            .entry((job.job.domain_id, job.job.organisation_id))
            .or_default()
            .push(job);
    }
    groups
}

/// Hot blobs the next sweep would move for `job`.
pub(crate) fn movable(job: &JobRetention, retention_jobs: u32) -> i64 {
    if job.eligible(retention_jobs) {
        (job.hot_tasks - job.quarantined_tasks).max(0)
    } else {
        0
    }
}

/// Why `job`'s HTML stays hot or moves, in words.
pub(crate) fn decision(job: &JobRetention, retention_jobs: u32) -> String {
    let mut text = match job.rank {
        None if job.job.status == coldsweep::catalog::ARCHIVED_STATUS => {
            "archived: every blob has left hot storage".to_owned()
        }
        None => format!(
            "kept hot: job is {}; only finished jobs (completed, failed, cancelled) move",
            job.job.status
        ),
        Some(rank) if !job.eligible(retention_jobs) => format!(
            "kept hot: #{rank} newest finished job of its domain and organisation \
             (retention keeps {retention_jobs})"
        ),
        Some(rank) => {
            let n = movable(job, retention_jobs);
            if n > 0 {
                format!(
                    "moves: #{rank} newest, beyond retention ({retention_jobs}); {}",
                    format::count(n as u64, "blob", "blobs")
                )
            } else {
                format!("eligible (#{rank} newest), nothing left to move")
            }
        }
    };
    if job.quarantined_tasks > 0 {
        text.push_str(&format!(
            "; {} quarantined (stays hot)",
            job.quarantined_tasks
        ));
    }
    if job.lost_tasks > 0 {
        text.push_str(&format!("; {} lost", job.lost_tasks));
    }
    text
}

/// "domain 101 / organisation 0a11…" or "domain 103 / no organisation".
pub(crate) fn group_label(domain_id: i32, organisation_id: Option<Uuid>) -> String {
    match organisation_id {
        Some(org) => format!("domain {domain_id} / organisation {org}"),
        None => format!("domain {domain_id} / no organisation"),
    }
}

/// `coldsweep plan`.
pub(crate) async fn plan(settings: Settings) -> anyhow::Result<ExitCode> {
    let (config, enabled) = settings.config_even_if_disabled()?;
    let catalog = settings.db.connect_migrated().await?;
    let retention = config.retention_jobs;
    let jobs = catalog.job_retention().await?;

    out!("Plan (dry run: nothing is moved)");
    if !enabled {
        out!(
            "Note: archiving is disabled (ARCHIVE_PROVIDER/ARCHIVE_BUCKET unset); \
             this is what a sweep would move once it is switched on."
        );
    }
    out!(
        "Retention: the newest {retention} finished jobs of each (domain, organisation) stay hot.\n"
    );
    if jobs.is_empty() {
        out!("The catalog has no jobs.");
        return Ok(ExitCode::SUCCESS);
    }

    let mut total_blobs = 0i64;
    let mut total_bytes = 0u64;
    let mut moving_jobs = 0usize;
    // As wide as the longest job id (uuids are 36 characters) or status.
    let id_width = jobs
        .iter()
        .map(|j| j.job.id.chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let status_width = jobs
        .iter()
        .map(|j| j.job.status.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    for ((domain_id, organisation_id), jobs) in groups(jobs) {
        out!("{}", group_label(domain_id, organisation_id));
        out!(
            "  {:>4}  {:<id_width$} {:<status_width$} {:>6} {:>8}  decision",
            "rank",
            "job",
            "status",
            "hot",
            "archived"
        );
        for job in &jobs {
            let rank = job.rank.map_or("-".to_owned(), |r| r.to_string());
            out!(
                "  {rank:>4}  {:<id_width$} {:<status_width$} {:>6} {:>8}  {}",
                job.job.id,
                job.job.status,
                job.hot_tasks,
                job.archived_tasks,
                decision(job, retention)
            );
            let n = movable(job, retention);
            if n > 0 {
                moving_jobs += 1;
                total_blobs += n;
                total_bytes += u64::try_from(job.hot_bytes).unwrap_or(0);
            }
        }
        out!();
    }

    let size = format!(" ({})", format::bytes(total_bytes));
    if total_blobs == 0 {
        out!("The next sweep would move nothing.");
    } else {
        out!(
            "The next sweep would move {}{size} from {}.",
            format::count(total_blobs as u64, "blob", "blobs"),
            format::count(moving_jobs as u64, "job", "jobs")
        );
    }
    Ok(ExitCode::SUCCESS)
}
