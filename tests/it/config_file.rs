//! `coldsweep --config FILE`: the binary configured by a TOML file, with
//! flags and environment variables over it, and the file's mistakes reported
//! where they are (exit code 2).

use std::path::{Path, PathBuf};

use crate::cli::{Daemon, Ran, Setup, coldsweep, json_of, run};

const SECRET: &str = "file-secret-do-not-print-4711";

/// Write `text` to `name` beside the setup's catalog, with permission bits `mode`.
fn write_file(setup: &Setup, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;

    let path = setup.db().parent().unwrap().join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Every setting the setup needs, as a `[settings]` table.
fn settings_of(setup: &Setup) -> String {
    format!(
        "# coldsweep, configured by file\n\
         [settings]\n\
         database_url = \"sqlite:{}\"\n\
         archive_provider = \"fs\"\n\
         archive_bucket = \"cold-archive\"\n\
         archive_fs_root = \"{}\"\n\
         hot_store = \"fs\"\n\
         hot_fs_root = \"{}\"\n",
        setup.db().display(),
        setup.cold_root().display(),
        setup.hot_root().display(),
    )
}

/// `coldsweep --config FILE ARGS…` with an empty environment.
fn with_file(path: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = coldsweep();
    cmd.arg("--config").arg(path).args(args);
    cmd
}

fn plan_rules(ran: &Ran) -> (u64, u64) {
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let plan = json_of(ran);
    (
        plan["rules"]["retention_jobs"].as_u64().unwrap(),
        plan["moving"]["blobs"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_file_alone_configures_the_commands() {
    let setup = Setup::new();
    setup.seed_clean(2).await;
    // Four finished jobs, the oldest with two pages: retention 3 moves them.
    let text = settings_of(&setup) + "archive_retention_jobs = 3\n";
    let path = write_file(&setup, "coldsweep.toml", &text, 0o600);

    let ran = run(&mut with_file(&path, &["plan", "--json"]));
    assert_eq!(plan_rules(&ran), (3, 2));
    assert!(!ran.stderr.contains("WARN"), "{}", ran.show());

    // `check` says which file it read; COLDSWEEP_CONFIG names it as well as the flag.
    let ran = run(coldsweep().env("COLDSWEEP_CONFIG", &path).arg("check"));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let first = ran.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "Settings from config file {} (flags and environment variables override it)",
            path.display()
        ),
        "{}",
        ran.show()
    );

    // The sweep moves what the plan said.
    let ran = run(&mut with_file(&path, &["sweep", "--once", "--json"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert_eq!(json_of(&ran)["archived"], 2, "{}", ran.show());
}

#[tokio::test]
async fn the_environment_overrides_the_file_and_a_flag_overrides_both() {
    let setup = Setup::new();
    setup.seed_clean(2).await;
    let text = settings_of(&setup) + "archive_retention_jobs = 1\n";
    let path = write_file(&setup, "coldsweep.toml", &text, 0o600);

    let ran = run(&mut with_file(&path, &["plan", "--json"]));
    assert_eq!(plan_rules(&ran), (1, 2));
    // Retention 4 keeps all four jobs hot: nothing moves.
    let ran = run(with_file(&path, &["plan", "--json"]).env("ARCHIVE_RETENTION_JOBS", "4"));
    assert_eq!(plan_rules(&ran), (4, 0));
    let ran = run(
        with_file(&path, &["plan", "--json", "--retention-jobs", "2"])
            .env("ARCHIVE_RETENTION_JOBS", "4"),
    );
    assert_eq!(plan_rules(&ran), (2, 2));
    // An empty environment variable is unset: the file's value holds.
    let ran = run(with_file(&path, &["plan", "--json"]).env("ARCHIVE_RETENTION_JOBS", ""));
    assert_eq!(plan_rules(&ran), (1, 2));

    // The binary's own settings too: the environment's catalog wins over the file's.
    let elsewhere = text.replace(
        &format!("sqlite:{}", setup.db().display()),
        "sqlite:/nonexistent/elsewhere.db",
    );
    let path = write_file(&setup, "elsewhere.toml", &elsewhere, 0o600);
    let ran = run(&mut with_file(&path, &["plan", "--json"]));
    assert_ne!(ran.code, Some(0), "{}", ran.show());
    let ran = run(with_file(&path, &["plan", "--json"])
        .env("DATABASE_URL", format!("sqlite:{}", setup.db().display())));
    assert_eq!(plan_rules(&ran), (1, 2));
}

#[test]
fn mistakes_in_the_file_exit_2_naming_file_line_and_column() {
    let setup = Setup::new();
    let base = settings_of(&setup);
    // Line 9 is the first line after the base settings.
    for (extra, expected) in [
        (
            "archive_bach_size = 5\n",
            ":9:1: unknown setting `archive_bach_size` in [settings]; did you mean `archive_batch_size`?",
        ),
        (
            "archive_batch_size = \"abc\"\n",
            ":9:1: ARCHIVE_BATCH_SIZE: expected a whole number from 1 to 10000, got \"abc\"",
        ),
        (
            "archive_path_prefix = { name = \"x\" }\n",
            ":9:1: archive_path_prefix: expected a string, number or boolean, got a table",
        ),
        ("archive_interval \"5m\"\n", ":9:18: "),
        (
            "coldsweep_log_format = \"yaml\"\n",
            ":9:1: COLDSWEEP_LOG_FORMAT: expected text or json, got \"yaml\"",
        ),
        (
            "coldsweep_metrics_addr = \"localhost\"\n",
            ":9:1: COLDSWEEP_METRICS_ADDR: expected an IP address and port",
        ),
    ] {
        let path = write_file(&setup, "coldsweep.toml", &(base.clone() + extra), 0o600);
        let ran = run(&mut with_file(&path, &["plan"]));
        assert_eq!(ran.code, Some(2), "{extra}: {}", ran.show());
        let want = format!("error: {}{expected}", path.display());
        assert!(ran.stderr.starts_with(&want), "want {want}\n{}", ran.show());
        assert!(ran.stdout.is_empty(), "{}", ran.show());
    }

    let missing = setup.db().parent().unwrap().join("missing.toml");
    let ran = run(&mut with_file(&missing, &["plan"]));
    assert_eq!(ran.code, Some(2), "{}", ran.show());
    assert!(
        ran.stderr.contains(&format!(
            "config file {}: cannot read it",
            missing.display()
        )),
        "{}",
        ran.show()
    );
}

#[tokio::test]
async fn a_file_others_can_read_warns_about_its_secrets_without_printing_them() {
    let setup = Setup::new();
    setup.seed_clean(1).await;
    let text = settings_of(&setup) + &format!("archive_secret_access_key = \"{SECRET}\"\n");

    let path = write_file(&setup, "coldsweep.toml", &text, 0o644);
    let ran = run(&mut with_file(&path, &["status"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let warning = ran
        .stderr
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning: {}", ran.show()));
    assert!(
        warning.contains("other users can read it")
            && warning.contains("ARCHIVE_SECRET_ACCESS_KEY")
            && warning.contains("644"),
        "{warning}"
    );
    assert!(
        !format!("{}{}", ran.stdout, ran.stderr).contains(SECRET),
        "{}",
        ran.show()
    );

    let path = write_file(&setup, "coldsweep.toml", &text, 0o600);
    let ran = run(&mut with_file(&path, &["status"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(!ran.stderr.contains("WARN"), "{}", ran.show());
}

#[tokio::test]
async fn the_file_sets_the_log_format_and_the_flag_overrides_it() {
    let setup = Setup::new();
    setup.seed_clean(0).await;
    let text = settings_of(&setup) + "coldsweep_log_format = \"json\"\n";
    let path = write_file(&setup, "coldsweep.toml", &text, 0o600);
    // A sweep logs its start-up check at info level.
    let ran = run(&mut with_file(&path, &["sweep", "--once"]));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert!(!lines.is_empty(), "{}", ran.show());
    for line in &lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "{}",
            ran.show()
        );
    }
    let ran = run(&mut with_file(
        &path,
        &["sweep", "--once", "--log-format", "text"],
    ));
    assert_eq!(ran.code, Some(0), "{}", ran.show());
    assert!(
        !ran.stderr.is_empty() && ran.stderr.lines().all(|l| !l.starts_with('{')),
        "{}",
        ran.show()
    );
}

#[tokio::test]
async fn run_names_the_file_in_its_start_up_line_and_serves_metrics_where_it_says() {
    let setup = Setup::new();
    setup.seed_clean(0).await;
    let port = crate::cli::free_port();
    let text = settings_of(&setup)
        + &format!("archive_interval = \"1h\"\ncoldsweep_metrics_addr = \"127.0.0.1:{port}\"\n");
    let path = write_file(&setup, "coldsweep.toml", &text, 0o600);
    let mut daemon = Daemon::spawn(with_file(&path, &["run"]));
    daemon.wait_for_sweep();
    let (status, _) = crate::cli::http_get(&format!("127.0.0.1:{port}"), "/healthz");
    let (code, log) = daemon.stop("TERM");
    assert_eq!(code, Some(0), "{log}");
    let started = log
        .lines()
        .find(|l| l.contains("coldsweep started"))
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    assert!(
        started.contains(&format!("config_file=\"{}\"", path.display())),
        "{started}"
    );
    assert!(status.contains(" 200"), "/healthz: {status}\n{log}");
}
