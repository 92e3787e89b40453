//! One function per subcommand; each returns the process exit code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use coldsweep::config::Config;
use coldsweep::store::Store;
use coldsweep::{Archiver, Catalog, SweepReport};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::format;
use crate::format::out;
use crate::settings::{
    BadSettings, DbArgs, MetricsArgs, Settings, cold_store, hot_store, redact_url,
};

mod check;
mod demo;
mod plan;
mod reset;
mod status;
mod verify;

pub(crate) use check::check;
use check::probe_cold;
pub(crate) use demo::{DEFAULT_DIR as DEMO_DIR, demo};
pub(crate) use plan::plan;
pub(crate) use reset::{ResetArgs, reset};
pub(crate) use status::status;
pub(crate) use verify::{VerifyArgs, verify};

/// What a command needs to sweep.
struct Ready {
    config: Config,
    catalog: Arc<dyn Catalog>,
    hot: Arc<dyn Store>,
    cold: Arc<dyn Store>,
}

/// Check every setting, connect the catalog (migrated), build both stores
/// and prove the cold bucket takes uploads (the start-up probe).
async fn ready(settings: &Settings) -> anyhow::Result<Ready> {
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let catalog = settings.db.connect_migrated().await?;
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = hot_store(&hot_config)?;
    probe_cold(cold.as_ref(), &config).await?;
    Ok(Ready {
        config,
        catalog,
        hot,
        cold,
    })
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
    if let Some(addr) = metrics_addr {
        serve_metrics(addr)?;
    }
    let catalog_url = settings.db.database_url.as_deref().map(redact_url);
    tracing::info!(
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
    let mut archiver = Archiver::task_html(ready.config, ready.catalog, ready.hot, ready.cold);
    if metrics_addr.is_some() {
        archiver = archiver.with_status_gauges(catalog);
    }
    archiver.run(shutdown.recv()).await;
    Ok(ExitCode::SUCCESS)
}

/// Install the Prometheus recorder and serve it on `addr` (any path; `/metrics` by convention).
fn serve_metrics(addr: SocketAddr) -> anyhow::Result<()> {
    use metrics_exporter_prometheus::PrometheusBuilder;

    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(coldsweep::metrics::DURATION_BUCKETS)
        .context("configure the metrics exporter")?
        .install()
        .with_context(|| format!("COLDSWEEP_METRICS_ADDR: serve metrics on {addr}"))?;
    coldsweep::metrics::describe();
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(())
}

/// `coldsweep sweep --once`.
pub(crate) async fn sweep(
    once: bool,
    retry_failed: bool,
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
    let target = format!("{}:{}", ready.config.provider, ready.config.bucket);
    let catalog = ready.catalog.clone();
    if retry_failed {
        let n = catalog.retry_failing_now(chrono::Utc::now()).await?;
        out!(
            "Retrying now: {} whose back-off had not ended.",
            format::count(n, "failing blob", "failing blobs")
        );
    }
    // Blobs that failed in an earlier sweep and wait for their back-off are
    // not tried at all: the work is not done. Counted before the sweep, as
    // blobs failing during it back off too but were tried.
    let waiting = match catalog.status(chrono::Utc::now()).await {
        Ok(status) => status.waiting,
        Err(e) => {
            tracing::warn!(error = %e.chain(), "counting blobs waiting for a retry failed");
            0
        }
    };
    let archiver = Archiver::task_html(ready.config, ready.catalog, ready.hot, ready.cold);

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

/// `coldsweep migrate`.
pub(crate) async fn migrate(db: DbArgs) -> anyhow::Result<ExitCode> {
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
