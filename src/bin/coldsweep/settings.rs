//! Flags and environment variables, turned into the library's configuration.
//!
//! Every value is taken as text and handed to the library's `from_lookup`
//! parsers, so a bad value, from a flag or from the environment, fails with
//! the library's message naming the variable.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use coldsweep::config::{ColdConfig, Config, HotConfig, Provider, VARIABLES};
use coldsweep::store::Store;
use coldsweep::{Catalog, ErrorKind};

/// Help text for a variable: the library's description and its default.
fn help(name: &str) -> String {
    let var = VARIABLES
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in config::VARIABLES"));
    let mut text = var.help.to_owned();
    if let Some(default) = var.default {
        text.push_str(&format!(" [default: {default}]"));
    }
    if var.secret {
        // Arguments are visible to every user of the machine (`ps`).
        text.push_str("; prefer the environment variable to the flag");
    }
    text
}

/// A setting is missing or malformed: the user must fix it (exit code 2).
#[derive(Debug)]
pub(crate) struct BadSettings(pub(crate) String);

impl std::fmt::Display for BadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadSettings {}

/// A library error: [`BadSettings`] when it is about a value the user
/// gave (kind `InvalidInput`), else as is.
fn bad(err: coldsweep::Error) -> anyhow::Error {
    if err.kind() != ErrorKind::InvalidInput {
        return err.into();
    }
    // The message without the kind suffix `Display` adds, plus the causes.
    let text = match std::error::Error::source(&err) {
        Some(cause) => format!("{}: {}", err.message(), coldsweep::Chain(cause)),
        None => err.message().to_owned(),
    };
    BadSettings(text).into()
}

/// Where the catalog is.
#[derive(Args, Clone)]
pub(crate) struct DbArgs {
    /// The catalog: postgres://user:password@host/db or sqlite:path/to/file.db
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL",
        help_heading = "Catalog"
    )]
    pub(crate) database_url: Option<String>,
}

impl DbArgs {
    /// Connect to the catalog (migrations not checked).
    pub(crate) async fn connect(&self) -> anyhow::Result<Arc<dyn Catalog>> {
        let Some(url) = self
            .database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Err(BadSettings(
                "DATABASE_URL: expected the catalog's URL (postgres://… or sqlite:…), got nothing; \
                 set DATABASE_URL or pass --database-url"
                    .to_owned(),
            )
            .into());
        };
        let shown = redact_url(url);
        tracing::debug!(catalog = %shown, "connecting to the catalog");
        coldsweep::catalog::connect(url).await.map_err(|e| {
            if e.kind() == ErrorKind::InvalidInput {
                // A URL refused by its scheme, its path or the driver (a port
                // that is not a number, …): the setting is wrong.
                bad(e.context(format!("DATABASE_URL: connect to the catalog at {shown}")))
            } else {
                bad(e).context(format!("connect to the catalog at {shown}"))
            }
        })
    }

    /// Connect and make sure the schema is current.
    pub(crate) async fn connect_migrated(&self) -> anyhow::Result<Arc<dyn Catalog>> {
        let catalog = self.connect().await?;
        catalog.check_migrations().await.map_err(|e| {
            if e.kind() == ErrorKind::InvalidInput {
                bad(e)
            } else {
                bad(e).context("check the catalog's migrations")
            }
        })?;
        Ok(catalog)
    }
}

/// Where `run` serves Prometheus metrics (binary-only: an embedder installs
/// its own recorder).
#[derive(Args, Clone)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9187 (unset: no endpoint)
    #[arg(
        long,
        env = "COLDSWEEP_METRICS_ADDR",
        value_name = "ADDR",
        help_heading = "Metrics"
    )]
    metrics_addr: Option<String>,
}

impl MetricsArgs {
    /// The address to listen on; `None` when unset or empty.
    pub(crate) fn listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(text) = self
            .metrics_addr
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| {
            BadSettings(format!(
                "COLDSWEEP_METRICS_ADDR: expected an IP address and port to serve metrics on, \
                 e.g. 127.0.0.1:9187 or [::]:9187, got {text:?}"
            ))
            .into()
        })
    }
}

/// Every setting of the archiver and both stores.
#[derive(Args, Clone)]
pub(crate) struct Settings {
    #[command(flatten)]
    pub(crate) db: DbArgs,

    #[arg(long, env = "ARCHIVE_PROVIDER", value_name = "NAME", help = help("ARCHIVE_PROVIDER"), help_heading = "Cold store")]
    provider: Option<String>,
    #[arg(long, env = "ARCHIVE_BUCKET", value_name = "BUCKET", help = help("ARCHIVE_BUCKET"), help_heading = "Cold store")]
    bucket: Option<String>,
    #[arg(long, env = "ARCHIVE_ENDPOINT", value_name = "URL", help = help("ARCHIVE_ENDPOINT"), help_heading = "Cold store")]
    endpoint: Option<String>,
    #[arg(long, env = "ARCHIVE_REGION", value_name = "REGION", help = help("ARCHIVE_REGION"), help_heading = "Cold store")]
    region: Option<String>,
    #[arg(long, env = "ARCHIVE_CHECKSUM", value_name = "MODE", help = help("ARCHIVE_CHECKSUM"), help_heading = "Cold store")]
    checksum: Option<String>,
    #[arg(long, env = "ARCHIVE_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true, help = help("ARCHIVE_ACCESS_KEY_ID"), help_heading = "Cold store")]
    access_key_id: Option<String>,
    #[arg(long, env = "ARCHIVE_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true, help = help("ARCHIVE_SECRET_ACCESS_KEY"), help_heading = "Cold store")]
    secret_access_key: Option<String>,
    #[arg(long, env = "ARCHIVE_FS_ROOT", value_name = "DIR", help = help("ARCHIVE_FS_ROOT"), help_heading = "Cold store")]
    fs_root: Option<String>,
    #[arg(long, env = "ARCHIVE_PATH_PREFIX", value_name = "PREFIX", help = help("ARCHIVE_PATH_PREFIX"), help_heading = "Cold store")]
    path_prefix: Option<String>,
    #[arg(long, env = "ARCHIVE_PROBE_PREFIX", value_name = "PREFIX", help = help("ARCHIVE_PROBE_PREFIX"), help_heading = "Cold store")]
    probe_prefix: Option<String>,

    #[arg(long, env = "ARCHIVE_RETENTION_JOBS", value_name = "N", help = help("ARCHIVE_RETENTION_JOBS"), help_heading = "Archiver")]
    retention_jobs: Option<String>,
    #[arg(long, env = "ARCHIVE_INTERVAL", value_name = "DURATION", help = help("ARCHIVE_INTERVAL"), help_heading = "Archiver")]
    interval: Option<String>,
    #[arg(long, env = "ARCHIVE_BATCH_SIZE", value_name = "N", help = help("ARCHIVE_BATCH_SIZE"), help_heading = "Archiver")]
    batch_size: Option<String>,
    #[arg(long, env = "ARCHIVE_CONCURRENCY", value_name = "N", help = help("ARCHIVE_CONCURRENCY"), help_heading = "Archiver")]
    concurrency: Option<String>,
    #[arg(long, env = "ARCHIVE_BLOB_TIMEOUT", value_name = "DURATION", help = help("ARCHIVE_BLOB_TIMEOUT"), help_heading = "Archiver")]
    blob_timeout: Option<String>,
    #[arg(long, env = "ARCHIVE_STREAM_THRESHOLD", value_name = "BYTES", help = help("ARCHIVE_STREAM_THRESHOLD"), help_heading = "Archiver")]
    stream_threshold: Option<String>,
    #[arg(long, env = "ARCHIVE_LEASE", value_name = "DURATION", help = help("ARCHIVE_LEASE"), help_heading = "Archiver")]
    lease: Option<String>,
    #[arg(long, env = "ARCHIVE_VERIFY", value_name = "MODE", help = help("ARCHIVE_VERIFY"), help_heading = "Archiver")]
    verify: Option<String>,
    #[arg(long, env = "ARCHIVE_LOST_AFTER", value_name = "DURATION", help = help("ARCHIVE_LOST_AFTER"), help_heading = "Archiver")]
    lost_after: Option<String>,
    #[arg(long, env = "ARCHIVE_MISSING_STOP_COUNT", value_name = "N", help = help("ARCHIVE_MISSING_STOP_COUNT"), help_heading = "Archiver")]
    missing_stop_count: Option<String>,
    #[arg(long, env = "ARCHIVE_MISSING_STOP_PERCENT", value_name = "PERCENT", help = help("ARCHIVE_MISSING_STOP_PERCENT"), help_heading = "Archiver")]
    missing_stop_percent: Option<String>,
    #[arg(long, env = "ARCHIVE_MAX_ATTEMPTS", value_name = "N", help = help("ARCHIVE_MAX_ATTEMPTS"), help_heading = "Archiver")]
    max_attempts: Option<String>,

    #[arg(long, env = "HOT_STORE", value_name = "KIND", help = help("HOT_STORE"), help_heading = "Hot store")]
    hot_store: Option<String>,
    #[arg(long, env = "HOT_FS_ROOT", value_name = "DIR", help = help("HOT_FS_ROOT"), help_heading = "Hot store")]
    hot_fs_root: Option<String>,
    #[arg(long, env = "HOT_S3_ENDPOINT", value_name = "URL", help = help("HOT_S3_ENDPOINT"), help_heading = "Hot store")]
    hot_s3_endpoint: Option<String>,
    #[arg(long, env = "HOT_S3_REGION", value_name = "REGION", help = help("HOT_S3_REGION"), help_heading = "Hot store")]
    hot_s3_region: Option<String>,
    #[arg(long, env = "HOT_S3_ACCESS_KEY_ID", value_name = "ID", hide_env_values = true, help = help("HOT_S3_ACCESS_KEY_ID"), help_heading = "Hot store")]
    hot_s3_access_key_id: Option<String>,
    #[arg(long, env = "HOT_S3_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true, help = help("HOT_S3_SECRET_ACCESS_KEY"), help_heading = "Hot store")]
    hot_s3_secret_access_key: Option<String>,
    #[arg(long, env = "SUPABASE_URL", value_name = "URL", help = help("SUPABASE_URL"), help_heading = "Hot store")]
    supabase_url: Option<String>,
    #[arg(long, env = "SUPABASE_SERVICE_ROLE_KEY", value_name = "KEY", hide_env_values = true, help = help("SUPABASE_SERVICE_ROLE_KEY"), help_heading = "Hot store")]
    supabase_service_role_key: Option<String>,
    #[arg(long, env = "SUPABASE_SECRET_KEY", value_name = "KEY", hide_env_values = true, help = help("SUPABASE_SECRET_KEY"), help_heading = "Hot store")]
    supabase_secret_key: Option<String>,
    #[arg(long, env = "SUPABASE_PUBLISHABLE_KEY", value_name = "KEY", hide_env_values = true, help = help("SUPABASE_PUBLISHABLE_KEY"), help_heading = "Hot store")]
    supabase_publishable_key: Option<String>,
}

/// What a command needs to sweep.
pub(crate) struct Ready {
    pub(crate) config: Config,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) hot: Arc<dyn Store>,
    pub(crate) cold: Arc<dyn Store>,
}

impl Settings {
    /// The value of variable `name`: the flag, else the environment (clap
    /// already merged the two for every variable declared above; the
    /// fallback covers a variable the library adds later).
    fn lookup(&self, name: &str) -> Option<String> {
        let value = match name {
            "ARCHIVE_PROVIDER" => &self.provider,
            "ARCHIVE_BUCKET" => &self.bucket,
            "ARCHIVE_ENDPOINT" => &self.endpoint,
            "ARCHIVE_REGION" => &self.region,
            "ARCHIVE_CHECKSUM" => &self.checksum,
            "ARCHIVE_ACCESS_KEY_ID" => &self.access_key_id,
            "ARCHIVE_SECRET_ACCESS_KEY" => &self.secret_access_key,
            "ARCHIVE_FS_ROOT" => &self.fs_root,
            "ARCHIVE_PATH_PREFIX" => &self.path_prefix,
            "ARCHIVE_PROBE_PREFIX" => &self.probe_prefix,
            "ARCHIVE_RETENTION_JOBS" => &self.retention_jobs,
            "ARCHIVE_INTERVAL" => &self.interval,
            "ARCHIVE_BATCH_SIZE" => &self.batch_size,
            "ARCHIVE_CONCURRENCY" => &self.concurrency,
            "ARCHIVE_BLOB_TIMEOUT" => &self.blob_timeout,
            "ARCHIVE_STREAM_THRESHOLD" => &self.stream_threshold,
            "ARCHIVE_LEASE" => &self.lease,
            "ARCHIVE_VERIFY" => &self.verify,
            "ARCHIVE_LOST_AFTER" => &self.lost_after,
            "ARCHIVE_MISSING_STOP_COUNT" => &self.missing_stop_count,
            "ARCHIVE_MISSING_STOP_PERCENT" => &self.missing_stop_percent,
            "ARCHIVE_MAX_ATTEMPTS" => &self.max_attempts,
            "HOT_STORE" => &self.hot_store,
            "HOT_FS_ROOT" => &self.hot_fs_root,
            "HOT_S3_ENDPOINT" => &self.hot_s3_endpoint,
            "HOT_S3_REGION" => &self.hot_s3_region,
            "HOT_S3_ACCESS_KEY_ID" => &self.hot_s3_access_key_id,
            "HOT_S3_SECRET_ACCESS_KEY" => &self.hot_s3_secret_access_key,
            "SUPABASE_URL" => &self.supabase_url,
            "SUPABASE_SERVICE_ROLE_KEY" => &self.supabase_service_role_key,
            "SUPABASE_SECRET_KEY" => &self.supabase_secret_key,
            "SUPABASE_PUBLISHABLE_KEY" => &self.supabase_publishable_key,
            _ => return std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
        };
        value.clone()
    }

    /// The archiver configuration; `None` when archiving is switched off.
    pub(crate) fn config(&self) -> anyhow::Result<Option<Config>> {
        Config::from_lookup(|name| self.lookup(name)).map_err(bad)
    }

    /// The configuration with archiving switched on, or a [`BadSettings`]
    /// error saying what to set.
    pub(crate) fn enabled_config(&self) -> anyhow::Result<Config> {
        self.config()?
            .ok_or_else(|| BadSettings(self.disabled_message()).into())
    }

    /// The configuration as it would be if archiving were on: unset
    /// `ARCHIVE_PROVIDER`/`ARCHIVE_BUCKET` are filled with placeholders so
    /// the other values are still read and checked (for `plan`).
    pub(crate) fn config_even_if_disabled(&self) -> anyhow::Result<(Config, bool)> {
        if let Some(config) = self.config()? {
            return Ok((config, true));
        }
        let config = Config::from_lookup(|name| {
            let value = self.lookup(name).filter(|v| !v.trim().is_empty());
            match name {
                "ARCHIVE_PROVIDER" => value.or_else(|| Some("fs".to_owned())),
                "ARCHIVE_BUCKET" => value.or_else(|| Some("placeholder".to_owned())),
                _ => value,
            }
        })
        .map_err(bad)?
        .expect("provider and bucket are set");
        Ok((config, false))
    }

    /// What to set to switch archiving on.
    pub(crate) fn disabled_message(&self) -> String {
        let unset: Vec<&str> = [
            ("ARCHIVE_PROVIDER", "--provider"),
            ("ARCHIVE_BUCKET", "--bucket"),
        ]
        .into_iter()
        .filter(|(name, _)| self.lookup(name).is_none_or(|v| v.trim().is_empty()))
        .map(|(name, _)| name)
        .collect();
        format!(
            "archiving is disabled: {} {} not set.\n\
             Set ARCHIVE_PROVIDER (one of {}) and ARCHIVE_BUCKET, or pass --provider and --bucket, \
             to switch it on; `coldsweep run --help` lists every setting.\n\
             To see coldsweep work without any setup, run `coldsweep demo`.",
            unset.join(" and "),
            if unset.len() == 1 { "is" } else { "are" },
            Provider::ALL.map(Provider::as_str).join(", "),
        )
    }

    /// The cold and hot store settings for `config`'s provider.
    pub(crate) fn store_configs(&self, config: &Config) -> anyhow::Result<(ColdConfig, HotConfig)> {
        let lookup = |name: &str| self.lookup(name);
        let cold_config = ColdConfig::from_lookup(config.provider, lookup).map_err(bad)?;
        let hot_config = HotConfig::from_lookup(lookup).map_err(bad)?;
        Ok((cold_config, hot_config))
    }

    /// Check every setting, connect the catalog (migrated), build both stores
    /// and prove the cold bucket takes uploads (the start-up probe).
    pub(crate) async fn ready(&self) -> anyhow::Result<Ready> {
        let config = self.enabled_config()?;
        let lookup = |name: &str| self.lookup(name);
        let cold_config = ColdConfig::from_lookup(config.provider, lookup).map_err(bad)?;
        let hot_config = HotConfig::from_lookup(lookup).map_err(bad)?;
        let catalog = self.db.connect_migrated().await?;
        let cold = cold_store(config.provider, &cold_config)?;
        let hot = hot_store(&hot_config)?;
        crate::commands::probe_cold(cold.as_ref(), &config).await?;
        Ok(Ready {
            config,
            catalog,
            hot,
            cold,
        })
    }
}

/// The cold store `config` describes, recording `provider` in the catalog.
pub(crate) fn cold_store(
    provider: Provider,
    config: &ColdConfig,
) -> anyhow::Result<Arc<dyn Store>> {
    coldsweep::store::cold_store(provider, config).map_err(bad)
}

/// The hot store `config` describes.
pub(crate) fn hot_store(config: &HotConfig) -> anyhow::Result<Arc<dyn Store>> {
    coldsweep::store::hot_store(config).map_err(bad)
}

/// `url` with any password replaced by `***`: in the user-info part
/// (`scheme://user:password@host`) and in a `password=` query parameter.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let at = rest_start + at;
            if let Some(colon) = out[rest_start..at].find(':') {
                out.replace_range(rest_start + colon + 1..at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cr3t@db.example.com:5432/app"),
            "postgres://app:***@db.example.com:5432/app"
        );
        assert_eq!(
            redact_url("postgresql://app:p%40ss:w@db/app?sslmode=require"),
            "postgresql://app:***@db/app?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/app?user=app&password=hunter2&sslmode=require"),
            "postgres://db/app?user=app&password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact_url("sqlite:catalog.db"), "sqlite:catalog.db");
        assert_eq!(
            redact_url("sqlite://data/c.db?mode=rwc"),
            "sqlite://data/c.db?mode=rwc"
        );
    }

    #[test]
    fn every_variable_has_help_with_its_default() {
        for var in VARIABLES {
            let text = help(var.name);
            if let Some(default) = var.default {
                assert!(text.contains(&format!("[default: {default}]")), "{text}");
            }
        }
    }

    #[test]
    fn lookup_reads_flags_for_every_variable() {
        use clap::Parser;

        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            settings: Settings,
        }

        let cmd = <Wrapper as clap::CommandFactory>::command();
        let mut argv = vec!["x".to_owned()];
        for arg in cmd.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            argv.push(format!("--{long}"));
            argv.push(format!("value-of-{}", env.to_string_lossy()));
        }
        let parsed = Wrapper::parse_from(argv);
        for var in VARIABLES {
            assert_eq!(
                parsed.settings.lookup(var.name).as_deref(),
                Some(format!("value-of-{}", var.name).as_str()),
                "{}",
                var.name
            );
        }
    }
}
