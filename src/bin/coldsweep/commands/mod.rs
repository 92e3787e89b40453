//! One function per subcommand; each returns the process exit code.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use coldsweep::config::Config;
use coldsweep::progress::Progress;
use coldsweep::source::{ArchiveSource, TableSource};
use coldsweep::store::Store;
use coldsweep::{Archiver, Catalog, SweepReport};
use serde::Serialize;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::format::{self, OutputArgs, out};
use crate::settings::{BadSettings, MetricsArgs, Settings, cold_store, hot_store, redact_url};

mod check;
mod demo;
mod demo_uploads;
mod get;
mod health;
mod plan;
mod reset;
mod restore;
mod status;
mod verify;

pub(crate) use check::check;
use check::probe_cold;
pub(crate) use demo::{DEFAULT_DIR as DEMO_DIR, demo};
pub(crate) use demo_uploads::{DEFAULT_DIR as DEMO_UPLOADS_DIR, demo_uploads};
pub(crate) use get::{GetArgs, get};
pub(crate) use plan::plan;
pub(crate) use reset::{ResetArgs, reset};
pub(crate) use restore::{RestoreArgs, restore};
pub(crate) use status::status;
pub(crate) use verify::{VerifyArgs, verify};

/// What a command needs to sweep.
struct Ready {
    config: Config,
    catalog: Arc<dyn Catalog>,
    hot: Arc<dyn Store>,
    cold: Arc<dyn Store>,
    /// The declared sources; `None`: the built-in task HTML source.
    sources: Option<Vec<TableSource>>,
}

impl Ready {
    fn archiver(self) -> Archiver {
        match self.sources {
            Some(sources) => Archiver::declared(self.config, sources, self.hot, self.cold),
            None => Archiver::task_html(self.config, self.catalog, self.hot, self.cold),
        }
    }
}

/// Check every setting, connect the catalog (migrated), build both stores
/// and prove the cold bucket takes uploads (the start-up probe).
async fn ready(settings: &Settings) -> anyhow::Result<Ready> {
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let (catalog, sources) = match settings.source_specs()? {
        Some(specs) => {
            let (catalog, sources) = settings.open_sources(specs, true).await?;
            (catalog, Some(sources))
        }
        None => (settings.db.connect_migrated().await?, None),
    };
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = hot_store(&hot_config)?;
    probe_cold(cold.as_ref(), &config).await?;
    Ok(Ready {
        config,
        catalog,
        hot,
        cold,
        sources,
    })
}

/// The declared sources a command reads (`None`: no `[[sources]]`, the
/// built-in source), all or only the one `--source` names, side tables
/// required; an unknown name is a [`BadSettings`] error listing the names.
async fn declared(
    settings: &Settings,
    only: Option<&str>,
) -> anyhow::Result<Option<(Arc<dyn Catalog>, Vec<TableSource>)>> {
    let Some(mut specs) = settings.source_specs()? else {
        no_sources_for(only)?;
        return Ok(None);
    };
    if let Some(name) = only {
        let names: Vec<String> = specs.iter().map(|s| s.name.value.clone()).collect();
        specs.retain(|s| s.name.value == name);
        if specs.is_empty() {
            return Err(BadSettings(format!(
                "--source {name:?}: no such source; the config file declares {}",
                names.join(", ")
            ))
            .into());
        }
    }
    Ok(Some(settings.open_sources(specs, true).await?))
}

/// The declared source `name` names, or the only one when `name` is
/// `None`; a missing or unknown name is a bad setting listing the names.
fn pick_source(sources: Vec<TableSource>, name: Option<&str>) -> anyhow::Result<TableSource> {
    let names: Vec<String> = sources.iter().map(|s| s.name().to_owned()).collect();
    let found = match name {
        Some(name) => sources.into_iter().find(|s| s.name() == name),
        None if names.len() == 1 => sources.into_iter().next(),
        None => {
            return Err(BadSettings(format!(
                "--source: the config file declares {} sources; name one of: {}",
                names.len(),
                names.join(", ")
            ))
            .into());
        }
    };
    found.ok_or_else(|| {
        BadSettings(format!(
            "--source {}: no such source; the config file declares: {}",
            name.unwrap_or_default(),
            names.join(", ")
        ))
        .into()
    })
}

/// `--source` without `[[sources]]` in the config file is a bad setting.
fn no_sources_for(name: Option<&str>) -> anyhow::Result<()> {
    match name {
        Some(name) => Err(BadSettings(format!(
            "--source {name}: the config file declares no [[sources]] (the built-in task \
             source takes no --source)"
        ))
        .into()),
        None => Ok(()),
    }
}

/// SIGINT and SIGTERM, listened to from creation on so that a signal during
/// start-up is not lost (nor kills the process mid-step).
pub(crate) struct Shutdown {
    term: Signal,
    int: Signal,
}

impl Shutdown {
    pub(crate) fn listen() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("listen for SIGINT")?,
        })
    }

    /// Completes at the next SIGINT or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// `coldsweep run`.
pub(crate) async fn run(settings: Settings, metrics: MetricsArgs) -> anyhow::Result<ExitCode> {
    let mut shutdown = Shutdown::listen()?;
    let metrics_addr = metrics.listen_addr()?;
    let ready = tokio::select! {
        ready = ready(&settings) => ready?,
        () = shutdown.recv() => {
            tracing::info!("stopped during start-up");
            return Ok(ExitCode::SUCCESS);
        }
    };
    // The port is taken before the first sweep: a port in use stops start-up.
    let listener = match metrics_addr {
        Some(addr) => Some((health::bind(addr).await?, install_recorder()?, addr)),
        None => None,
    };
    let catalog_url = settings.db.database_url.as_deref().map(redact_url);
    let source_names: Vec<String> = match &ready.sources {
        Some(sources) => sources.iter().map(|s| s.name().to_owned()).collect(),
        None => vec!["task_html".to_owned()],
    };
    tracing::info!(
        config_file = settings.config_file().map(|p| p.display().to_string()),
        sources = %source_names.join(", "),
        catalog = catalog_url.as_deref().unwrap_or_default(),
        backend = ready.catalog.backend(),
        provider = %ready.config.provider,
        bucket = %ready.config.bucket,
        retention_jobs = ready.config.retention_jobs,
        hot_quota_bytes = ready.config.hot_quota,
        min_age = ready.config.min_age.map(|d| humantime::format_duration(d).to_string()),
        interval = %humantime::format_duration(ready.config.interval),
        batch_size = ready.config.batch_size,
        concurrency = ready.config.concurrency,
        "coldsweep started"
    );
    let catalog = ready.catalog.clone();
    let built_in = ready.sources.is_none();
    let mut archiver = ready.archiver();
    if let Some((listener, handle, addr)) = listener {
        // The gauges count the built-in source's rows.
        if built_in {
            archiver = archiver.with_status_gauges(catalog.clone());
        }
        health::serve(
            listener,
            health::Health::new(catalog, archiver.last_sweep(), handle),
        );
        tracing::info!(%addr, "serving Prometheus metrics at /metrics, health at /healthz and /readyz");
    }
    archiver.run(shutdown.recv()).await;
    Ok(ExitCode::SUCCESS)
}

/// Install the Prometheus recorder; the endpoint renders it through the handle.
fn install_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::PrometheusBuilder;

    let handle = PrometheusBuilder::new()
        .set_buckets(coldsweep::metrics::DURATION_BUCKETS)
        .context("configure the metrics exporter")?
        .install_recorder()
        .context("install the metrics recorder")?;
    coldsweep::metrics::describe();
    Ok(handle)
}

/// `coldsweep sweep --once --json`: the report and what the command adds.
#[derive(Serialize)]
struct SweepJson<'a> {
    /// `provider:bucket` of the cold store.
    target: &'a str,
    started_at: String,
    finished_at: String,
    /// With `--retry-failed`: failing blobs made due now; else null.
    retried_now: Option<u64>,
    /// Blobs waiting for their retry time, not tried (null if the count failed).
    waiting: Option<i64>,
    #[serde(flatten)]
    report: &'a SweepReport,
}

/// `coldsweep sweep --once`.
pub(crate) async fn sweep(
    once: bool,
    retry_failed: bool,
    output: OutputArgs,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    if !once {
        return Err(BadSettings(
            "`coldsweep sweep` runs a single pass and needs --once; \
             to keep sweeping every ARCHIVE_INTERVAL, use `coldsweep run`"
                .to_owned(),
        )
        .into());
    }
    let mut shutdown = Shutdown::listen()?;
    let ready = ready(&settings).await?;
    let started_at = chrono::Utc::now();
    let target = format!("{}:{}", ready.config.provider, ready.config.bucket);
    let catalog = ready.catalog.clone();
    let declared = ready.sources.clone();
    let mut retried_now = None;
    if retry_failed {
        let n = match &declared {
            Some(sources) => {
                let mut n = 0;
                for source in sources {
                    n += source.retry_failing_now(chrono::Utc::now()).await?;
                }
                n
            }
            None => catalog.retry_failing_now(chrono::Utc::now()).await?,
        };
        retried_now = Some(n);
        if !output.json {
            out!(
                "Retrying now: {} whose back-off had not ended.",
                format::count(n, "failing blob", "failing blobs")
            );
        }
    }
    // Blobs that failed in an earlier sweep and wait for their back-off are
    // not tried at all: the work is not done. Counted before the sweep, as
    // blobs failing during it back off too but were tried.
    let counted_waiting = match waiting_blobs(catalog.as_ref(), declared.as_deref()).await {
        Ok(waiting) => Some(waiting),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "counting blobs waiting for a retry failed");
            None
        }
    };
    let waiting = counted_waiting.unwrap_or(0);
    let progress = Progress::new();
    let bar = crate::progress::bar(&progress, "sweep", output.quiet);
    if bar.is_drawn() {
        // Only for a bar someone watches: reading every job's counts is
        // about as costly as the status count above.
        // Blobs waiting for their retry are not claimable, so not counted.
        if let Some(total) =
            sweep_estimate(catalog.as_ref(), &ready.config.rules(), declared.as_deref()).await
        {
            progress.set_total(total);
        }
    }
    let archiver = ready.archiver().with_progress(progress);

    // A signal stops new blobs; blobs in flight finish and are reported.
    let stop = CancellationToken::new();
    let report: SweepReport = {
        let sweep = archiver.sweep_until(&stop);
        tokio::pin!(sweep);
        tokio::select! {
            report = &mut sweep => report,
            () = shutdown.recv() => {
                stop.cancel();
                sweep.await
            }
        }
    };

    drop(bar);

    if output.json {
        format::json(&SweepJson {
            target: &target,
            started_at: format::timestamp(started_at),
            finished_at: format::timestamp(chrono::Utc::now()),
            retried_now,
            waiting: counted_waiting,
            report: &report,
        })?;
        return Ok(if report.is_clean() && waiting == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    out!("Sweep to {target}: {}", format::report_summary(&report));
    if !report.problems.is_empty() {
        out!("Problems ({}):", report.problems.len());
        out!("{}", format::report_problems(&report).trim_end());
    }
    if waiting > 0 {
        out!(
            "{} for its retry time (ARCHIVE_INTERVAL after its last failure) and {} not tried; \
             `coldsweep status` lists them, `coldsweep sweep --once --retry-failed` tries them now.",
            format::count(waiting as u64, "blob waits", "blobs wait"),
            if waiting == 1 { "was" } else { "were" }
        );
    }
    if report.is_clean() && waiting == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if report.stopped {
        out!(
            "The sweep stopped before recording anything for the blobs it could not account for; \
             fix the setting named above and run it again."
        );
    } else if !report.is_clean() {
        out!(
            "Quarantined, missing and lost blobs stay where they are until fixed (`coldsweep \
             reset` puts them back into play); failed ones are retried next sweep. `coldsweep \
             status` lists them."
        );
    }
    Ok(ExitCode::FAILURE)
}

/// Blobs the next sweep would move as `plan` counts them (the sweep's total
/// for its progress bar); `None` when the catalog cannot say.
async fn sweep_estimate(
    catalog: &dyn Catalog,
    rules: &coldsweep::rules::Rules,
    declared: Option<&[TableSource]>,
) -> Option<u64> {
    use coldsweep::rules::{self, Decisions, Scope};

    let now = chrono::Utc::now();
    let movable = |decisions: Decisions| -> u64 {
        decisions
            .moving()
            .iter()
            .filter_map(|unit| unit.standing.bytes)
            .map(|bytes| bytes.movable_blobs)
            .sum()
    };
    let estimate = match declared {
        Some(sources) => {
            let mut total = 0;
            for source in sources {
                match source.decisions(now).await {
                    Ok(decisions) => total += movable(decisions),
                    Err(e) => {
                        tracing::debug!(error = %e.chain(), "no total for the progress bar");
                        return None;
                    }
                }
            }
            Ok(total)
        }
        None => catalog
            .job_standings(Scope::Counted, now)
            .await
            .map(|standings| movable(rules::decide(&standings, rules, now))),
    };
    match estimate {
        Ok(total) => Some(total),
        Err(e) => {
            tracing::debug!(error = %e.chain(), "no total for the progress bar");
            None
        }
    }
}

/// Blobs failing and waiting for their retry time now.
async fn waiting_blobs(
    catalog: &dyn Catalog,
    declared: Option<&[TableSource]>,
) -> coldsweep::Result<i64> {
    let now = chrono::Utc::now();
    match declared {
        Some(sources) => {
            let mut waiting = 0;
            for source in sources {
                waiting += source.waiting(now).await?;
            }
            Ok(i64::try_from(waiting).unwrap_or(i64::MAX))
        }
        None => Ok(catalog.status(now).await?.waiting),
    }
}

/// `coldsweep migrate`: with declared sources, only their side tables.
pub(crate) async fn migrate(settings: Settings) -> anyhow::Result<ExitCode> {
    if let Some(specs) = settings.source_specs()? {
        let (_, sources) = settings.open_sources(specs, false).await?;
        for source in &sources {
            let existed = source.side_table_exists().await?;
            source.migrate().await?;
            let side = source
                .spec()
                .side_table
                .as_ref()
                .map(|s| s.value.to_string())
                .unwrap_or_default();
            if existed {
                out!(
                    "Source {}: side table {side} already in place.",
                    source.name()
                );
            } else {
                out!("Source {}: created side table {side}.", source.name());
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let db = &settings.db;
    let catalog = db.connect().await?;
    let was_current = catalog.check_migrations().await.is_ok();
    catalog
        .migrate()
        .await
        .context("apply the catalog migrations")?;
    let url = db
        .database_url
        .as_deref()
        .map(redact_url)
        .unwrap_or_default();
    if was_current {
        out!(
            "The {} catalog at {url} was already up to date; nothing to do.",
            catalog.backend()
        );
    } else {
        out!(
            "Migrated the {} catalog at {url}: jobs/tasks schema and coldsweep's columns and \
             indexes are in place.",
            catalog.backend()
        );
    }
    Ok(ExitCode::SUCCESS)
}
