//! Flags, environment variables and the config file, turned into the
//! library's configuration.
//!
//! Every value is taken as text and handed to the library's `from_lookup`
//! parsers, so a bad value, from a flag, the environment or the file, fails
//! with the library's message naming the variable. Precedence: flag, then
//! environment (clap merges the two), then the file (`--config`, read by
//! `coldsweep::config::file`), then the library's default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use clap::{Arg, ArgAction, ArgMatches, Args, Command};
use coldsweep::config::file::{ExtraKey, Secrecy, layered};
use coldsweep::config::{ColdConfig, Config, ConfigFile, HotConfig, Provider, VARIABLES, Variable};
use coldsweep::source::spec::{SourceSpec, SpecErrors, SpecProblem, parse_sources};
use coldsweep::source::{ArchiveSource, TableSource, open_declared};
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
pub(crate) fn bad(err: coldsweep::Error) -> anyhow::Error {
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

/// The binary's own settings a config file may hold besides the library's.
pub(crate) const FILE_KEYS: &[ExtraKey] = &[
    ExtraKey {
        name: DATABASE_URL,
        secrecy: Secrecy::UrlPassword,
    },
    ExtraKey {
        name: LOG_FORMAT,
        secrecy: Secrecy::Public,
    },
    ExtraKey {
        name: METRICS_ADDR,
        secrecy: Secrecy::Public,
    },
];

const DATABASE_URL: &str = "DATABASE_URL";
pub(crate) const LOG_FORMAT: &str = "COLDSWEEP_LOG_FORMAT";
const METRICS_ADDR: &str = "COLDSWEEP_METRICS_ADDR";

/// Read and check the config file at `path`, if one is given: a file that
/// cannot be read or holds a bad value is a [`BadSettings`] error naming the
/// file, line and column.
pub(crate) fn load_file(path: Option<&Path>) -> anyhow::Result<Option<Arc<ConfigFile>>> {
    // An empty COLDSWEEP_CONFIG is unset, as every other empty variable is.
    let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let file = ConfigFile::load(path, FILE_KEYS).map_err(bad)?;
    if let Some(text) = file.get(METRICS_ADDR) {
        parse_metrics_addr(text).map_err(|e| at(&file, METRICS_ADDR, e))?;
    }
    Ok(Some(Arc::new(file)))
}

/// `err` about variable `name`, prefixed with where `file` sets it.
pub(crate) fn at(file: &ConfigFile, name: &str, err: BadSettings) -> anyhow::Error {
    match file.location(name) {
        Some(location) => BadSettings(format!("{location}: {}", err.0)).into(),
        None => err.into(),
    }
}

/// Warn when `file` holds secrets that other users of the machine can read
/// (names only, never a value).
pub(crate) fn warn_if_exposed(file: &ConfigFile) {
    if let Some(exposed) = file.exposed_secrets() {
        tracing::warn!(
            config_file = %file.path().display(),
            mode = %format!("{:o}", exposed.mode),
            secrets = %exposed.secrets.join(", "),
            "the config file holds secrets and other users can read it: make it private \
             (chmod 600) or set the secrets as environment variables instead"
        );
    }
}

/// The problems of the source declarations in `path`, one per line.
fn spec_errors(path: &Path, problems: &[SpecProblem]) -> anyhow::Error {
    let n = problems.len();
    let mut text = format!(
        "{}: {n} problem{} in the source declarations:",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str(&format!("\n  - {problem}"));
    }
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

    /// Where the config file set the URL, when it did.
    #[arg(skip)]
    from_file: Option<String>,
}

impl DbArgs {
    /// Take the URL from `file` when no flag or environment variable gave one.
    pub(crate) fn use_file(&mut self, file: &ConfigFile) {
        let given = self.database_url.take();
        let given_here = given.as_deref().is_some_and(|v| !v.trim().is_empty());
        self.database_url = layered(given, file.get(DATABASE_URL));
        if !given_here && self.database_url.is_some() {
            self.from_file = file.location(DATABASE_URL);
        }
    }

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
                 set DATABASE_URL, pass --database-url or set database_url in the --config file"
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
                let from = self
                    .from_file
                    .as_deref()
                    .map(|location| format!("{location}: "))
                    .unwrap_or_default();
                bad(e.context(format!(
                    "{from}DATABASE_URL: connect to the catalog at {shown}"
                )))
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
    /// Serve Prometheus metrics at http://ADDR/metrics and health checks at /healthz and /readyz,
    /// e.g. 127.0.0.1:9187 (unset: no endpoint)
    #[arg(
        long,
        env = "COLDSWEEP_METRICS_ADDR",
        value_name = "ADDR",
        help_heading = "Metrics"
    )]
    metrics_addr: Option<String>,
}

impl MetricsArgs {
    /// Take the address from `file` when no flag or environment variable gave one.
    pub(crate) fn use_file(&mut self, file: &ConfigFile) {
        self.metrics_addr = layered(self.metrics_addr.take(), file.get(METRICS_ADDR));
    }

    /// The address to listen on; `None` when unset or empty.
    pub(crate) fn listen_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        parse_metrics_addr(self.metrics_addr.as_deref().unwrap_or_default()).map_err(Into::into)
    }
}

/// `COLDSWEEP_METRICS_ADDR`'s value; `None` when empty.
fn parse_metrics_addr(text: &str) -> Result<Option<SocketAddr>, BadSettings> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        BadSettings(format!(
            "{METRICS_ADDR}: expected an IP address and port to serve metrics on, \
             e.g. 127.0.0.1:9187 or [::]:9187, got {text:?}"
        ))
    })
}

/// Every setting of the archiver and both stores.
#[derive(Args, Clone)]
pub(crate) struct Settings {
    #[command(flatten)]
    pub(crate) db: DbArgs,

    #[command(flatten)]
    values: Values,

    /// The config file, under flags and the environment.
    #[arg(skip)]
    file: Option<Arc<ConfigFile>>,
}

/// The values of [`VARIABLES`], one flag each, built from the table so the
/// flags, `--help` and the lookup cannot drift from what the library reads.
#[derive(Clone, Default)]
struct Values(BTreeMap<&'static str, String>);

/// The flag of `var`: `--{flag}`, read from the environment variable too.
fn flag(var: &Variable) -> Arg {
    Arg::new(var.name)
        .long(var.flag)
        .env(var.name)
        .value_name(var.value_name)
        .hide_env_values(var.hide_value)
        .help(help(var.name))
        .help_heading(var.group.heading())
        .action(ArgAction::Set)
        .value_parser(clap::value_parser!(String))
}

impl clap::Args for Values {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(VARIABLES.iter().map(flag))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Values {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = Values::default();
        values.update_from_arg_matches(matches)?;
        Ok(values)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for var in VARIABLES {
            if let Some(value) = matches.get_one::<String>(var.name) {
                self.0.insert(var.name, value.clone());
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Read what flags and the environment leave unset from `file`.
    pub(crate) fn use_file(&mut self, file: &Arc<ConfigFile>) {
        self.db.use_file(file);
        self.file = Some(file.clone());
    }

    /// Settings for a command that takes only the catalog (`migrate`),
    /// with the config file's source declarations.
    pub(crate) fn for_db(db: DbArgs, file: Option<Arc<ConfigFile>>) -> Settings {
        Settings {
            db,
            values: Values::default(),
            file,
        }
    }

    /// The sources the config file declares (`None`: none, the built-in
    /// task HTML source runs); every mistake is a [`BadSettings`] error
    /// naming the file, the source, the setting and the line.
    pub(crate) fn source_specs(&self) -> anyhow::Result<Option<Vec<SourceSpec>>> {
        let Some(file) = self.file.as_deref() else {
            return Ok(None);
        };
        if file.sources().is_none() {
            return Ok(None);
        }
        parse_sources(file.text())
            .map(Some)
            .map_err(|errors| spec_errors(file.path(), errors.problems()))
    }

    /// Connect to the catalog and open the declared `specs`, checked
    /// against its live schema; with `need_side_tables`, each side table
    /// must exist (`coldsweep migrate` creates them).
    pub(crate) async fn open_sources(
        &self,
        specs: Vec<SourceSpec>,
        need_side_tables: bool,
    ) -> anyhow::Result<(Arc<dyn Catalog>, Vec<TableSource>)> {
        let catalog = self.db.connect().await?;
        let path = self.config_file().unwrap_or(Path::new("config"));
        let (sources, notes) = match open_declared(catalog.clone(), specs).await {
            Ok(opened) => opened,
            Err(e) => {
                return Err(match SpecErrors::of(&e) {
                    Some(errors) => spec_errors(path, errors.problems()),
                    None if e.kind() == ErrorKind::InvalidInput => bad(e),
                    None => bad(e).context("check the source declarations against the catalog"),
                });
            }
        };
        for note in notes {
            // `check` shows them; every other command only under RUST_LOG=debug.
            tracing::debug!(source = %note.source, setting = %note.setting, column = %note.column, "{}", note.message);
        }
        if need_side_tables {
            for source in &sources {
                if !source.side_table_exists().await.map_err(bad)? {
                    return Err(BadSettings(format!(
                        "source {:?}: its side table {} does not exist yet; run `coldsweep \
                         migrate` (with the same --config) to create it",
                        source.name(),
                        source
                            .spec()
                            .side_table
                            .as_ref()
                            .map(|s| s.value.to_string())
                            .unwrap_or_default()
                    ))
                    .into());
                }
            }
        }
        Ok((catalog, sources))
    }

    /// The config file read, if any.
    pub(crate) fn config_file(&self) -> Option<&Path> {
        self.file.as_deref().map(ConfigFile::path)
    }

    /// The value of variable `name`: the flag, else the environment (clap
    /// merges the two for every variable of the table; a name outside it is
    /// read from the environment), else the config file.
    fn lookup(&self, name: &str) -> Option<String> {
        let given = if VARIABLES.iter().any(|v| v.name == name) {
            self.values.0.get(name).cloned()
        } else {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        };
        layered(given, self.file.as_deref().and_then(|f| f.get(name)))
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
             Set ARCHIVE_PROVIDER (one of {}) and ARCHIVE_BUCKET (or archive_provider and \
             archive_bucket in the --config file), or pass --provider and --bucket, to switch it on; `coldsweep run --help` lists every setting.\n\
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

/// The hot store `config` describes, opened for `coldsweep restore` (the one
/// command that writes to it).
pub(crate) fn restore_hot_store(config: &HotConfig) -> anyhow::Result<Arc<dyn Store>> {
    coldsweep::store::restore_hot_store(config).map_err(bad)
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
    fn an_empty_config_path_reads_no_file() {
        assert!(load_file(None).unwrap().is_none());
        assert!(load_file(Some(Path::new(""))).unwrap().is_none());
        let err = load_file(Some(Path::new("/nonexistent/coldsweep.toml"))).unwrap_err();
        assert!(err.is::<BadSettings>(), "{err}");
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

    /// README.md, read when the test runs (so a rewrite is seen).
    fn readme_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
    }

    /// The rows of the README's configuration table, whole, as
    /// `(line index, line)`.
    fn readme_rows(readme: &str) -> Vec<(usize, &str)> {
        let start = readme
            .lines()
            .position(|line| line == "## Configuration")
            .expect("README has a Configuration section");
        readme
            .lines()
            .enumerate()
            .skip(start + 1)
            .take_while(|(_, line)| !line.starts_with("## "))
            .filter(|(_, line)| line.starts_with("| `"))
            .collect()
    }

    /// The first cell of a table row, backticks kept.
    fn first_cell(row: &str) -> &str {
        row.trim_start_matches('|')
            .split(" | ")
            .next()
            .unwrap_or_default()
            .trim()
    }

    fn is_variable_row(row: &str) -> bool {
        VARIABLES
            .iter()
            .any(|v| first_cell(row) == format!("`{}`", v.name))
    }

    /// The README's rows for [`VARIABLES`] are produced from the table
    /// (`Variable::readme_row`), in its order. After changing the table, run
    /// `UPDATE_README=1 cargo test readme_configuration_table` to rewrite them.
    #[test]
    fn readme_configuration_table_matches_the_variables() {
        use clap::CommandFactory;

        let path = readme_path();
        let readme = std::fs::read_to_string(&path).unwrap();
        let rows = readme_rows(&readme);
        let want: Vec<String> = VARIABLES.iter().map(Variable::readme_row).collect();
        let listed: Vec<&str> = rows
            .iter()
            .map(|&(_, row)| row)
            .filter(|row| is_variable_row(row))
            .collect();
        if listed != want {
            assert!(
                std::env::var_os("UPDATE_README").is_some(),
                "README.md's configuration rows differ from config::VARIABLES (rewrite them \
                 with UPDATE_README=1 cargo test readme_configuration_table):\n  \
                 README: {listed:#?}\n  table: {want:#?}"
            );
            // The variables' rows, wherever they were, go where the first was.
            let at = rows
                .iter()
                .find(|(_, row)| is_variable_row(row))
                .map_or(rows.last().map_or(0, |(i, _)| *i), |(i, _)| *i);
            let mut lines: Vec<String> = Vec::new();
            for (i, line) in readme.lines().enumerate() {
                if i == at {
                    lines.extend(want.iter().cloned());
                }
                if !(rows.iter().any(|(r, _)| *r == i) && is_variable_row(line)) {
                    lines.push(line.to_owned());
                }
            }
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        }

        // The other rows are the binary's own flags (and RUST_LOG).
        let cli = crate::Cli::command();
        let flags: Vec<(String, String)> = cli
            .get_subcommands()
            .flat_map(|sub| sub.get_arguments().cloned().collect::<Vec<_>>())
            .chain(cli.get_arguments().cloned())
            .filter_map(|a| {
                let env = a.get_env()?.to_string_lossy().into_owned();
                Some((format!("`{env}`"), format!("`--{}`", a.get_long()?)))
            })
            .collect();
        for &(_, row) in rows.iter().filter(|(_, row)| !is_variable_row(row)) {
            let mut cells = row.trim_start_matches('|').split(" | ").map(str::trim);
            let (name, flag) = (
                cells.next().unwrap_or_default(),
                cells.next().unwrap_or_default(),
            );
            if name == "`RUST_LOG`" {
                continue;
            }
            assert!(
                flags.iter().any(|(n, f)| n == name && f == flag),
                "README row {name} {flag} is not a flag of the CLI"
            );
        }
    }
}
