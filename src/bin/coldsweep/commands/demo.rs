//! `coldsweep demo`: a self-contained sample, swept once, explained.
//!
//! SQLite catalog at `<dir>/catalog.db`, hot folder store at `<dir>/hot`,
//! cold folder store at `<dir>/cold`. A new catalog is migrated and seeded
//! with [`coldsweep::demo::seed`]; then one sweep runs and the outcome is
//! told in words. Run again, it converges: nothing is seeded or moved.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use coldsweep::archiver::{Problem, ProblemKind};
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{ARCHIVED_STATUS, BlobState, Catalog, JobRetention, SqliteCatalog};
use coldsweep::config::Config;
use coldsweep::demo::{self, DemoSpec, MISSING_TASK, TAMPERED_TASK};
use coldsweep::store::{FsStore, Store};
use coldsweep::{Archiver, SweepReport};

use crate::format::{self, count, out};

/// The folder `--dir` defaults to.
pub(crate) const DEFAULT_DIR: &str = "coldsweep-demo";
const COLD_BUCKET: &str = "cold-archive";
const RETENTION_JOBS: &str = "3";
const BATCH_SIZE: &str = "50";
const CONCURRENCY: &str = "5";

/// What the folder may hold for `--reset` to delete it.
const DEMO_ENTRIES: [&str; 6] = [
    "catalog.db",
    "catalog.db-wal",
    "catalog.db-shm",
    "catalog.db-journal",
    "hot",
    "cold",
];

/// `coldsweep demo`.
pub(crate) async fn demo(dir: &Path, reset: bool) -> anyhow::Result<ExitCode> {
    if reset {
        reset_dir(dir, &DEMO_ENTRIES)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let paths = Paths::new(dir);

    let catalog = Arc::new(
        SqliteCatalog::open(&paths.catalog)
            .await
            .with_context(|| format!("open the demo catalog {}", paths.catalog.display()))?,
    );
    catalog
        .migrate()
        .await
        .context("migrate the demo catalog")?;
    // A folder store's bucket is a folder that must exist, as a real bucket would.
    std::fs::create_dir_all(paths.hot_root.join(demo::HOT_BUCKET))
        .context("create the hot bucket folder")?;
    std::fs::create_dir_all(paths.cold_bucket()).context("create the cold bucket folder")?;
    // The application's pages are written the way a restore writes them,
    // beside each object: nothing of coldsweep's own lands in the hot root,
    // which the sweep then opens as a deployment does, read and delete only.
    let seeder: Arc<dyn Store> = Arc::new(FsStore::open_for_restore(&paths.hot_root)?);
    let hot: Arc<dyn Store> = Arc::new(FsStore::open_existing(&paths.hot_root)?);
    let cold: Arc<dyn Store> = Arc::new(FsStore::new(&paths.cold_root)?);

    out!("coldsweep demo: everything lives in {}", dir.display());
    out!("  catalog  {}  (SQLite)", paths.catalog.display());
    out!(
        "  hot      {}  (folder store, bucket {})",
        paths.hot_root.display(),
        demo::HOT_BUCKET
    );
    out!(
        "  cold     {}  (folder store, provider fs, bucket {COLD_BUCKET})",
        paths.cold_root.display()
    );
    out!();
    seed_if_new(catalog.as_ref(), seeder.as_ref()).await?;
    out!();

    let config = demo_config()?;
    cold.ping(&config.bucket).await?;
    out!(
        "Sweeping once: retention {} jobs, batch {}, concurrency {}, cold provider fs, bucket {}.",
        config.retention_jobs,
        config.batch_size,
        config.concurrency,
        config.bucket
    );
    let retention = config.retention_jobs;
    let before = catalog.job_retention().await?;
    let archiver = Archiver::task_html(config, catalog.clone(), hot, cold);
    let started = Instant::now();
    let report = archiver.sweep().await;
    let took = started.elapsed();
    // The archiver marks finished jobs at the start of a sweep; marking again
    // now shows this sweep's result instead of waiting for the next one.
    let marked_now = catalog.mark_archived_jobs().await?;
    let after = catalog.job_retention().await?;
    out!();

    let outcome = Outcome {
        retention,
        report,
        took,
        marked_now,
        before,
        after,
    };
    outcome.print_moved();
    outcome.print_kept();
    let unexpected = outcome.print_problems(catalog.as_ref()).await?;
    paths.print_files();

    if unexpected == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Seed an empty catalog, or say why not.
async fn seed_if_new(catalog: &dyn Fixtures, hot: &dyn Store) -> anyhow::Result<()> {
    let existing = catalog.job_retention().await?;
    if !existing.is_empty() {
        out!(
            "The catalog already holds the demo data ({}); seeding nothing. \
             (--reset starts over.)",
            count(existing.len() as u64, "job", "jobs")
        );
        return Ok(());
    }
    let seeded = demo::seed(catalog, hot, &DemoSpec::default())
        .await
        .context("seed the demo catalog")?;
    out!(
        "Seeded a sample crawler catalog: {}, {}, {} of gzip'd HTML ({}) in the hot store,",
        count(seeded.jobs as u64, "job", "jobs"),
        count(seeded.tasks as u64, "task", "tasks"),
        count(seeded.uploaded as u64, "page", "pages"),
        format::bytes(seeded.stored_bytes),
    );
    out!(
        "across 3 domains and 2 organisations (domain 103 has no organisation); \
         most jobs completed, some failed or cancelled, one still running."
    );
    out!("Two tasks are broken ON PURPOSE, to show what coldsweep does with bad data:");
    out!(
        "  {}: its stored page was changed after the crawler recorded html_sha256 -> expect QUARANTINED",
        seeded.tampered_task
    );
    out!(
        "  {}: its page was never uploaded to the hot store -> expect LOST",
        seeded.missing_task
    );
    Ok(())
}

/// The demo's settings, through the same parser as the environment's.
fn demo_config() -> coldsweep::Result<Config> {
    let config = Config::from_lookup(|name| {
        let value = match name {
            "ARCHIVE_PROVIDER" => "fs",
            "ARCHIVE_BUCKET" => COLD_BUCKET,
            "ARCHIVE_RETENTION_JOBS" => RETENTION_JOBS,
            "ARCHIVE_BATCH_SIZE" => BATCH_SIZE,
            "ARCHIVE_CONCURRENCY" => CONCURRENCY,
            _ => return None,
        };
        Some(value.to_owned())
    })?;
    Ok(config.expect("provider and bucket are set"))
}

/// The catalog before and after the sweep, and the sweep's report.
struct Outcome {
    retention: u32,
    report: SweepReport,
    took: Duration,
    marked_now: u64,
    before: Vec<JobRetention>,
    after: Vec<JobRetention>,
}

impl Outcome {
    fn before(&self, job_id: &str) -> Option<&JobRetention> {
        self.before.iter().find(|j| j.job.id == job_id)
    }

    /// What moved, per job, and which jobs are now archived.
    fn print_moved(&self) {
        let report = &self.report;
        if report.archived + report.completed > 0 {
            out!(
                "Moved to cold: {} ({}) in {:.1?}; each copy verified before its hot copy was deleted.",
                count(report.archived + report.completed, "blob", "blobs"),
                format::bytes(report.bytes),
                self.took
            );
            let mut rows: Vec<(&str, String)> = self
                .after
                .iter()
                .filter_map(|job| self.moved_row(job))
                .collect();
            rows.sort();
            for (_, row) in rows {
                out!("{row}");
            }
        } else {
            let already: i64 = self.after.iter().map(|j| j.archived_tasks).sum();
            out!(
                "Nothing was left to move: every eligible blob is already in cold storage \
                 ({} from earlier runs).",
                count(already as u64, "blob", "blobs")
            );
        }
        let jobs_archived = report.jobs_archived + self.marked_now;
        if jobs_archived > 0 {
            let names: Vec<&str> = self
                .after
                .iter()
                .filter(|j| {
                    j.job.status == ARCHIVED_STATUS
                        && self
                            .before(&j.job.id)
                            .is_none_or(|w| w.job.status != ARCHIVED_STATUS)
                })
                .map(|j| j.job.id.as_str())
                .collect();
            out!(
                "Marked {} archived (none of their HTML is left hot): {}",
                count(jobs_archived, "job", "jobs"),
                names.join(", ")
            );
        }
        out!();
    }

    /// One line for a job some of whose blobs moved in this sweep.
    fn moved_row<'a>(&self, job: &'a JobRetention) -> Option<(&'a str, String)> {
        let id = job.job.id.as_str();
        let was = self.before(id);
        let moved = job.archived_tasks - was.map_or(0, |w| w.archived_tasks);
        if moved <= 0 {
            return None;
        }
        let bytes = u64::try_from(was.map_or(0, |w| w.hot_bytes) - job.hot_bytes).unwrap_or(0);
        let mut why = was.map_or(job.job.status.clone(), |w| w.job.status.clone());
        if let Some(rank) = was.and_then(|w| w.rank) {
            why.push_str(&format!(", #{rank} newest"));
        }
        if job.job.completed_at.is_none() {
            why.push_str(", no completed_at: ranked by created_at");
        }
        Some((
            id,
            format!(
                "  {id:<8} {:<48} {:>9} {:>10}   ({why})",
                group_name(job),
                count(moved as u64, "blob", "blobs"),
                format::bytes(bytes),
            ),
        ))
    }

    /// What stayed hot, and why.
    fn print_kept(&self) {
        let retention = self.retention;
        out!(
            "Kept hot by retention (the newest {retention} finished jobs of each domain/organisation):"
        );
        for job in &self.after {
            if let Some(rank) = job.rank
                && !job.eligible(retention)
            {
                out!(
                    "  {} is #{rank} newest of {}; the newest {retention} are kept ({} hot)",
                    job.job.id,
                    group_name(job),
                    count(job.hot_tasks as u64, "blob", "blobs"),
                );
            }
        }
        let running: Vec<&JobRetention> = self
            .after
            .iter()
            .filter(|j| j.job.status == "running")
            .collect();
        if !running.is_empty() {
            out!("Kept hot because the job is still running (only finished jobs move):");
            for job in running {
                out!(
                    "  {} of {} ({} hot)",
                    job.job.id,
                    group_name(job),
                    count(job.hot_tasks as u64, "blob", "blobs"),
                );
            }
        }
        out!();
    }

    /// Quarantined and lost blobs (the deliberate ones, and any other,
    /// which would be a bug); returns how many problems were unexpected.
    async fn print_problems(&self, catalog: &dyn Catalog) -> anyhow::Result<usize> {
        let quarantined = catalog.tasks_in_state(BlobState::Quarantined, 20).await?;
        let missing = catalog.tasks_in_state(BlobState::Missing, 20).await?;
        let lost = catalog.tasks_in_state(BlobState::Lost, 20).await?;
        if !quarantined.is_empty() || !missing.is_empty() || !lost.is_empty() {
            let when = if self.report.quarantined + self.report.missing + self.report.lost > 0 {
                "found by this sweep"
            } else {
                "found by an earlier run; they stay put until someone fixes them"
            };
            out!("Problems ({when}):");
            for (label, tasks) in [
                ("QUARANTINED", &quarantined),
                ("MISSING", &missing),
                ("LOST", &lost),
            ] {
                for task in tasks {
                    let note = if task.id == TAMPERED_TASK || task.id == MISSING_TASK {
                        " (deliberate)"
                    } else {
                        ""
                    };
                    out!(
                        "  {label:<11} task {} of job {}{note}: {}",
                        task.id,
                        task.job_id,
                        task.html_archive_error
                            .as_deref()
                            .unwrap_or("no reason recorded")
                    );
                }
            }
            out!(
                "  Quarantined blobs stay hot and are not retried. A missing blob is only \
                 suspected lost: a sweep at least ARCHIVE_LOST_AFTER later looks again and records \
                 it lost if it is still in neither store. `coldsweep status` lists them, and \
                 `coldsweep reset` puts them back into play once fixed."
            );
            out!();
        }

        let unexpected: Vec<&Problem> = self
            .report
            .problems
            .iter()
            .filter(|p| {
                let task = p.task_id.as_deref();
                let deliberate = match p.what {
                    ProblemKind::Quarantined => task == Some(TAMPERED_TASK),
                    ProblemKind::Missing | ProblemKind::Lost => task == Some(MISSING_TASK),
                    ProblemKind::Failed(_) | ProblemKind::Stopped => false,
                };
                !deliberate
            })
            .collect();
        if !unexpected.is_empty() {
            out!("UNEXPECTED problems (not part of the demo; please report):");
            for problem in &unexpected {
                out!(
                    "  {} {}: {}",
                    problem.what,
                    problem.task_id.as_deref().unwrap_or("(sweep)"),
                    problem.message
                );
            }
            out!();
        }
        Ok(unexpected.len())
    }
}

struct Paths {
    dir: PathBuf,
    catalog: PathBuf,
    hot_root: PathBuf,
    cold_root: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            catalog: dir.join("catalog.db"),
            hot_root: dir.join("hot"),
            cold_root: dir.join("cold"),
        }
    }

    fn cold_bucket(&self) -> PathBuf {
        self.cold_root.join(COLD_BUCKET)
    }

    fn hot_bucket(&self) -> PathBuf {
        self.hot_root.join(demo::HOT_BUCKET)
    }

    /// Where the files are, and what to try next.
    fn print_files(&self) {
        out!("Where the files are:");
        for (name, bucket) in [("cold:", self.cold_bucket()), ("hot: ", self.hot_bucket())] {
            out!(
                "  {name} {}/jobs/<job>/tasks/<task>/page-content.html.gz  ({})",
                bucket.display(),
                count(count_files(&bucket), "file", "files")
            );
        }
        out!();
        let again = if self.dir == Path::new(DEFAULT_DIR) {
            "coldsweep demo".to_owned()
        } else {
            format!("coldsweep demo --dir {}", self.dir.display())
        };
        let url = format!("sqlite:{}", self.catalog.display());
        out!("Next:");
        out!("  {again}    # again: seeds nothing, moves nothing");
        out!("  DATABASE_URL={url} coldsweep status");
        out!("  DATABASE_URL={url} ARCHIVE_RETENTION_JOBS=1 coldsweep plan");
    }
}

/// "shop.example.com (domain 101) / Acme".
fn group_name(job: &JobRetention) -> String {
    let domain = match demo::domain_name(job.job.domain_id) {
        Some(name) => format!("{name} (domain {})", job.job.domain_id),
        None => format!("domain {}", job.job.domain_id),
    };
    let org = match (
        job.job.organisation_id,
        demo::organisation_name(job.job.organisation_id),
    ) {
        (_, Some(name)) => name.to_owned(),
        (Some(id), None) => format!("organisation {id}"),
        (None, None) => "no organisation".to_owned(),
    };
    format!("{domain} / {org}")
}

/// Delete `dir` if it holds nothing but what the demo creates.
pub(super) fn reset_dir(dir: &Path, created: &[&str]) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        if !created.iter().any(|d| name == *d) {
            anyhow::bail!(
                "refusing to --reset {}: it holds {:?}, which the demo did not create",
                dir.display(),
                name
            );
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("delete {}", dir.display()))
}

/// Regular files under `dir`, recursively (0 if it is missing).
fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => count_files(&entry.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
