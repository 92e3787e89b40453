//! `coldsweep`: the daemon and its tools.
//!
//! A thin layer over the library: parse arguments (every setting is a flag
//! and an environment variable), set up logging, build the library's
//! configuration through its own parsers, and call it. Output for people
//! goes to stdout; logs and errors go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use coldsweep::config::ConfigFile;

mod commands;
mod format;
mod progress;
mod settings;
mod terminal;

use settings::{DbArgs, MetricsArgs, Settings};

const ABOUT: &str = "Moves aged blobs from a hot object store to cold S3-compatible storage, \
                     with your database (the catalog) as the source of truth.";

const AFTER_HELP: &str = "\
How it works:
  The catalog's rows say where every blob lives. Each sweep claims blobs of finished jobs
  older than the newest ARCHIVE_RETENTION_JOBS jobs per (domain, organisation) (and, while the
  hot bytes exceed ARCHIVE_HOT_QUOTA, of the oldest others; none younger than ARCHIVE_MIN_AGE),
  copies them to cold storage, verifies the copy, switches the row to it, and only then deletes
  the hot copy. `coldsweep plan` shows which jobs the next sweep moves, and why.
  Tables of your own (uploads, images, …) are declared as [[sources]] in a --config file:
  each with its key, hot path, cold key template and rule (age, newest N per group, quota).

Try it without any setup:
  coldsweep demo
  coldsweep demo --example uploads

Run it for real:
  DATABASE_URL=postgres://… ARCHIVE_PROVIDER=r2 ARCHIVE_BUCKET=my-archive \\
  ARCHIVE_ENDPOINT=https://<account>.r2.cloudflarestorage.com \\
  ARCHIVE_ACCESS_KEY_ID=… ARCHIVE_SECRET_ACCESS_KEY=… coldsweep run";

const RESET_HELP: &str = "\
Select rows by state, job or task (the selectors combine: --state lost --job J resets the lost
blobs of job J), or every row in any of those states with --all. Rows a worker holds right now
are never touched. Without --yes it only prints what it would change.

What a reset clears: the state and its reason, the failed-attempt count, the missing-since time
and any retry back-off. The next sweep looks at the blob afresh: a blob still in neither store is
suspected missing again (and only recorded lost after ARCHIVE_LOST_AFTER), a quarantined blob
whose bytes still disagree with the catalog is quarantined again.

With sources declared in the config file ([[sources]]), select with --key (a row's key, in the
key column's own type) and --parent instead of --task and --job, and --source NAME for one source
(needed with --key or --parent when several are declared); the side table's bookkeeping is reset.

Examples:
  coldsweep reset --state lost                 # what would change
  coldsweep reset --state lost --yes           # do it
  coldsweep reset --job 2024-05-crawl --yes    # every problem row of one job
  coldsweep reset --task t-123 --task t-124 --yes

Exit codes: 0 done (or nothing to do), 2 bad arguments or settings.";

const RESTORE_HELP: &str = "\
Copies archived blobs back to the hot store and points the catalog at them again. Select tasks
with --task and whole jobs with --job (both repeatable). Without --yes it only lists what it
would restore, and what it cannot (still hot, lost, missing, quarantined, unknown ids).

For each row, in this order: claim it (rows a sweep or another restore holds are left alone),
read the cold copy and check it against the catalog (size, SHA-256 of the page), put it in the
hot store at jobs/{job}/tasks/{task}/page-content.html.gz, read it back and check it again, then
switch the catalog back to hot. A job marked archived gets back the status it had before. A
copy that disagrees with the catalog is reported corrupt and nothing is written hot.

The cold copy is kept unless you add --delete-cold (deleted only after the switch). A restored
job counts as finished at the restore, so sweeps keep it hot until ARCHIVE_RETENTION_JOBS newer
jobs of its (domain, organisation) finish. Takes the same settings as `run`; the hot bucket is
--hot-bucket, or the one bucket the catalog's hot rows use.

With sources declared in the config file, select with --source NAME, --key KEY and --parent KEY:
each row goes back to the hot bucket and path recorded when it was archived, its path column is
set again (if the source clears it), the table's cold columns and the side table's cold location
are cleared, and the row ages from its restore. A marked parent gets its previous status back.

Examples:
  coldsweep restore --job 2024-05-crawl                  # what would be restored
  coldsweep restore --job 2024-05-crawl --yes            # do it
  coldsweep restore --task t-123 --task t-124 --yes --hot-bucket task-html
  coldsweep restore --job 2024-05-crawl --yes --delete-cold --json
  coldsweep --config coldsweep.toml restore --source documents --key 1042 --yes

Exit codes: 0 every restorable row restored (or a dry run), 1 any row failed or was corrupt
(re-run to retry; nothing is lost), 2 bad arguments or settings.";

const GET_HELP: &str = "\
Reads the page from where the catalog says it is: the hot store while the row has a hot path
(a hot copy a sweep just deleted is looked for in cold storage next), else the cold location
recorded in the row, which must be the configured cold store (ARCHIVE_PROVIDER, ARCHIVE_BUCKET).
The bytes are checked against the catalog as a sweep checks them (stored size, SHA-256 and size
of the decoded page) before anything is written; a page that disagrees is refused, as are lost,
missing and quarantined ones (with the reason recorded). Pages over 64 MiB are refused.

Examples:
  coldsweep get t-123 --decoded | less          # the HTML
  coldsweep get t-123 -o page.html.gz           # the stored gzip bytes, to a file
  coldsweep get t-123 --decoded -o page.html
  coldsweep get t-123 | gunzip | wc -c

Without -o or --decoded, gzip bytes are not written to a terminal (pipe them, or use -o -).

With [[sources]] in the config file, TASK_ID is a row key of the source --source NAME names
(needed when several are declared), read in the key column's own type (a bigint, a uuid, text);
a key not of that type is exit code 2. A row that records neither a digest nor a size is served
with a note on stderr that its bytes could not be checked.

Exit codes: 0 written, 1 not servable (no such task, lost, missing, quarantined, bytes that
disagree with the catalog) or a store or the catalog failed, 2 bad arguments or settings.";

#[derive(Parser)]
#[command(name = "coldsweep", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// TOML file: a [settings] table keyed by the variables' names in lower case (flags and
    /// environment variables override it), and [[sources]]: tables of your own to archive
    /// instead of the built-in crawler source (README, "Your own tables")
    #[arg(long, global = true, env = "COLDSWEEP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log line format (logs go to stderr; the level comes from RUST_LOG, default info).
    #[arg(
        long,
        global = true,
        env = "COLDSWEEP_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the archiver: sweep now, then every ARCHIVE_INTERVAL, until SIGINT or SIGTERM.
    #[command(
        after_help = "Archiving is off (exit code 2) until ARCHIVE_PROVIDER and \
                            ARCHIVE_BUCKET are set. Every flag can also be given as the \
                            environment variable shown next to it, or in the --config \
                            file (flag over environment over file)."
    )]
    Run {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        metrics: MetricsArgs,
    },

    /// Sweep once and print what happened; exit code 1 if any blob failed, was
    /// quarantined, missing or lost, blobs still wait for their retry time, or the sweep stopped.
    Sweep {
        /// Required: run one sweep and exit (for cron jobs and CI). The daemon is `coldsweep run`.
        #[arg(long)]
        once: bool,
        /// Try blobs whose last attempt failed now, instead of waiting ARCHIVE_INTERVAL after
        /// the failure.
        #[arg(long)]
        retry_failed: bool,
        #[command(flatten)]
        output: format::OutputArgs,
        #[command(flatten)]
        settings: Settings,
    },

    /// Dry run: show per job (per row or parent of each source declared in the config file)
    /// which rule (retention, hot quota, minimum age) moves it in the next sweep or keeps it
    /// hot, and the hot bytes before and after.
    Plan {
        /// Print one JSON object on stdout instead of the report (fields: README, "JSON output").
        #[arg(long)]
        json: bool,
        /// With [[sources]] in the config file: only this declared source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },

    /// Show where blobs are (per source declared in the config file): counts; hot and cold
    /// bytes per bucket; quarantined, missing and lost blobs with their reasons; failing blobs
    /// with their last error and retry time.
    Status {
        /// Print one JSON object on stdout instead of the report (fields: README, "JSON output").
        #[arg(long)]
        json: bool,
        /// With [[sources]] in the config file: only this declared source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[command(flatten)]
        settings: Settings,
    },

    /// Put blobs back into play: clear the lost, missing, quarantined or failing state of the
    /// rows selected (a dry run unless --yes).
    #[command(after_help = RESET_HELP)]
    Reset {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        reset: commands::ResetArgs,
    },

    /// Check the deployment: the catalog, the cold store (upload, read back, verify and delete
    /// a probe object) and the hot store (read only); exit code 1 if any check fails.
    #[command(
        after_help = "Takes the same settings as `run`; `run` and `sweep` refuse to start \
                      when the cold store's check fails. Exit codes: 0 all checks passed, \
                      1 a check failed, 2 bad settings."
    )]
    Check(Settings),

    /// Scrub the archive: read archived blobs back from the cold store and check size and
    /// digests against the catalog; read-only (changes neither the catalog nor any store).
    #[command(
        after_help = "Takes the same settings as `run`. Reports each blob that is missing, \
                      corrupt (size or digest disagree) or unreadable (by error kind), and \
                      the last checked task id to resume from with --after. With \
                      [[sources]] in the config file: --source NAME, and --after is a row \
                      key, walked in the key's own order. Exit codes: \
                      0 all checked blobs are good, 1 any problem, 2 bad settings."
    )]
    Verify {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        scrub: commands::VerifyArgs,
        #[command(flatten)]
        output: format::OutputArgs,
    },

    /// Bring archived blobs back to the hot store, verified, and point the catalog at them again
    /// (a dry run unless --yes).
    #[command(after_help = RESTORE_HELP)]
    Restore {
        #[command(flatten)]
        settings: Settings,
        #[command(flatten)]
        restore: commands::RestoreArgs,
    },

    /// Read one task's page (stored gzip or decoded HTML) from wherever the catalog says it
    /// lives, checked against the catalog; to stdout or a file.
    #[command(after_help = GET_HELP)]
    Get {
        #[command(flatten)]
        get: commands::GetArgs,
        #[command(flatten)]
        settings: Settings,
    },

    /// Create or update the catalog schema (safe to repeat).
    Migrate(DbArgs),

    /// Try coldsweep on a self-contained sample: SQLite catalog, folder stores, one sweep.
    Demo {
        /// Which sample: `crawler` (the built-in source: crawl jobs and their pages) or `uploads`
        /// (an application's `documents` table declared as a source in a config file).
        #[arg(long, value_enum, default_value_t = Example::Crawler)]
        example: Example,
        /// Folder for the demo's database, hot store (hot/) and cold store (cold/); default
        /// coldsweep-demo, or coldsweep-demo-uploads for --example uploads.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Delete the folder first and start from scratch.
        #[arg(long)]
        reset: bool,
    },
}

/// The samples `coldsweep demo` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Example {
    /// Crawl jobs and their pages, the built-in source.
    Crawler,
    /// An application's uploads, a declared source.
    Uploads,
}

impl Command {
    /// Read what flags and the environment leave unset from `file`.
    fn use_file(&mut self, file: &Arc<ConfigFile>) {
        match self {
            Command::Run { settings, metrics } => {
                settings.use_file(file);
                metrics.use_file(file);
            }
            Command::Sweep { settings, .. }
            | Command::Plan { settings, .. }
            | Command::Status { settings, .. }
            | Command::Check(settings)
            | Command::Verify { settings, .. }
            | Command::Restore { settings, .. }
            | Command::Get { settings, .. } => settings.use_file(file),
            Command::Reset { db, .. } | Command::Migrate(db) => db.use_file(file),
            Command::Demo { .. } => {}
        }
    }
}

/// The log format: the flag or `COLDSWEEP_LOG_FORMAT`, else the config file's,
/// else text. The file's value is checked even when overridden.
fn log_format(
    matches: &clap::ArgMatches,
    given: LogFormat,
    file: Option<&ConfigFile>,
) -> anyhow::Result<LogFormat> {
    let Some((file, text)) = file.and_then(|f| Some((f, f.get(settings::LOG_FORMAT)?))) else {
        return Ok(given);
    };
    let from_file = LogFormat::from_str(text.trim(), true).map_err(|_| {
        let err = settings::BadSettings(format!(
            "{}: expected text or json, got {text:?}",
            settings::LOG_FORMAT
        ));
        settings::at(file, settings::LOG_FORMAT, err)
    })?;
    match matches.value_source("log_format") {
        Some(ValueSource::DefaultValue) | None => Ok(from_file),
        Some(_) => Ok(given),
    }
}

/// What `main` prints for an error, and its exit code (2: a bad setting).
fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", format::error_chain(err));
    if err.is::<settings::BadSettings>() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The file comes before logging, which it may configure; its errors are
    // printed as every other start-up error is.
    let file = match settings::load_file(cli.config.as_deref()) {
        Ok(file) => file,
        Err(err) => return fail(&err),
    };
    let format = match log_format(&matches, cli.log_format, file.as_deref()) {
        Ok(format) => format,
        Err(err) => return fail(&err),
    };
    // The demo prints its own report; the archiver's log lines (including
    // the deliberate quarantine and loss) would only repeat it.
    let default_level = match cli.command {
        Command::Demo { .. } => "off",
        _ => "info",
    };
    init_tracing(format, default_level);
    if let Some(file) = &file {
        settings::warn_if_exposed(file);
        tracing::debug!(config_file = %file.path().display(), "read the config file");
        cli.command.use_file(file);
    }

    let result = match cli.command {
        Command::Run { settings, metrics } => commands::run(settings, metrics).await,
        Command::Sweep {
            once,
            retry_failed,
            output,
            settings,
        } => commands::sweep(once, retry_failed, output, settings).await,
        Command::Plan {
            json,
            source,
            settings,
        } => commands::plan(settings, json, source.as_deref()).await,
        Command::Status {
            json,
            source,
            settings,
        } => commands::status(settings, json, source.as_deref()).await,
        Command::Check(settings) => commands::check(settings).await,
        Command::Verify {
            settings,
            scrub,
            output,
        } => commands::verify(settings, scrub, output).await,
        Command::Reset { db, reset } => {
            commands::reset(Settings::for_db(db, file.clone()), reset).await
        }
        Command::Restore { settings, restore } => commands::restore(settings, restore).await,
        Command::Get { get, settings } => commands::get(settings, get).await,
        Command::Migrate(db) => commands::migrate(Settings::for_db(db, file.clone())).await,
        Command::Demo {
            example: Example::Crawler,
            dir,
            reset,
        } => commands::demo(&dir.unwrap_or_else(|| commands::DEMO_DIR.into()), reset).await,
        Command::Demo {
            example: Example::Uploads,
            dir,
            reset,
        } => {
            let dir = dir.unwrap_or_else(|| commands::DEMO_UPLOADS_DIR.into());
            commands::demo_uploads(&dir, reset).await
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    use tracing_subscriber::filter::{EnvFilter, filter_fn};
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // reqsign (OpenDAL's request signer, targets `reqsign_core::…` and the
    // like) logs the credentials it tries, secret included, at DEBUG. A
    // directive (`reqsign=info`) is not enough: a more specific one in
    // RUST_LOG (`reqsign_core=debug`) would win over it. This filter runs
    // whatever RUST_LOG says.
    let no_credentials = filter_fn(|meta| {
        !(meta.target().starts_with("reqsign") && *meta.level() > tracing::Level::INFO)
    });
    // Stderr, with a progress bar erased before each line; colours only on
    // a terminal, so that a log file or a pipe gets plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(terminal::Stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(no_credentials)
        .with(layer)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_variable_is_a_flag_of_every_settings_command() {
        let cli = Cli::command();
        for name in [
            "run", "sweep", "plan", "status", "check", "verify", "restore", "get",
        ] {
            let sub = cli.find_subcommand(name).unwrap();
            let envs: Vec<_> = sub
                .get_arguments()
                .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
                .collect();
            for var in coldsweep::config::VARIABLES {
                assert!(
                    envs.iter().any(|e| e == var.name),
                    "`{name}` has no flag for {}",
                    var.name
                );
            }
            assert!(envs.iter().any(|e| e == "DATABASE_URL"));
        }
    }

    #[test]
    fn secrets_hide_their_env_values() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        for arg in run.get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
                continue;
            };
            let secret = env == "DATABASE_URL"
                || coldsweep::config::VARIABLES
                    .iter()
                    .any(|v| v.name == env && v.secret);
            if secret {
                assert!(
                    arg.is_hide_env_values_set(),
                    "{env} shows its value in --help"
                );
            }
        }
    }
}
