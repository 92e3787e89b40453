//! Secrets stay secret (invariant 6): the real binary, run with real-looking
//! secrets through success and failure paths at every log level and format,
//! never prints one; nor does `--help` of any subcommand, nor the `Debug`
//! output of the library's configuration, store, catalog and error types.
//!
//! Every secret is random and long, and output is searched for any 16-byte
//! piece of it, so a truncated or partly masked leak is caught too. Each
//! check fails if a redaction is removed: e.g. dropping `hide_env_values`
//! from a secret's flag shows it in `--help`; dropping the binary's
//! `reqsign=info` directive prints the signing credentials at DEBUG; a
//! `Debug` derive on `Secret` or `S3Config` shows them in `{:?}`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coldsweep::catalog::{PgCatalog, SqliteCatalog};
use coldsweep::config::{
    ColdConfig, HotConfig, Provider, S3Config, S3Names, Secret, SupabaseNames,
};
use coldsweep::demo::{DemoSpec, HOT_BUCKET};
use coldsweep::store::{FsStore, S3Store, SupabaseStore};
use coldsweep::{Archiver, Catalog, Config, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};

use crate::cli::{Ran, coldsweep, run};
use crate::harness;

const COLD_BUCKET: &str = "cold-archive";

/// A random secret of 40 characters.
fn random_secret(tag: &str) -> String {
    let random = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    format!("{tag}{random}")[..40].to_owned()
}

/// Fails if `text` holds any 16-byte piece of any of `secrets`.
fn assert_hidden(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        let bytes = secret.as_bytes();
        for piece in bytes.windows(16.min(bytes.len())) {
            let piece = std::str::from_utf8(piece).unwrap();
            if let Some(at) = text.find(piece) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!(
                    "{what}: a secret leaked ({piece:?}) in:\n{}",
                    &text[from..to]
                );
            }
        }
    }
}

fn all_output(ran: &Ran) -> String {
    format!("{}\n{}", ran.stdout, ran.stderr)
}

/// Every subcommand `coldsweep --help` lists.
fn subcommands() -> Vec<String> {
    let top = run(coldsweep().arg("--help"));
    let commands = top
        .stdout
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands")
        .split("\n\n")
        .next()
        .unwrap();
    let names: Vec<String> = commands
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 7, "{names:?}");
    names
}

/// `run` in the background: wait for the first sweep, SIGTERM, all output.
fn run_then_sigterm(cmd: &mut Command) -> Ran {
    let mut child = cmd
        .env("ARCHIVE_INTERVAL", "1h")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coldsweep run");
    let stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let err = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line.contains("sweep done"));
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(true) => break,
            Ok(false) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`run` logged no sweep:\n{}", err.join().unwrap_or_default());
            }
        }
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`run` did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A login role with a password on the test server, owning nothing; dropped
/// (with its grants) at the end.
struct PgRole {
    name: String,
    url: String,
}

async fn role_with_password(db: &harness::pg::PgTestDb, password: &str) -> PgRole {
    let name = format!(
        "coldsweep_secret_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut conn = db.connection().await;
    for sql in [
        format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
        format!("GRANT ALL ON SCHEMA public TO {name}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}"),
    ] {
        conn.execute(AssertSqlSafe(sql)).await.unwrap();
    }
    let options: PgConnectOptions = db.url().parse().unwrap();
    let url = options
        .username(&name)
        .password(password)
        .to_url_lossy()
        .to_string();
    assert!(url.contains(password), "the URL must carry the password");
    PgRole { name, url }
}

async fn drop_role(db: &harness::pg::PgTestDb, role: &PgRole) {
    let mut conn = db.connection().await;
    let _ = conn
        .execute(AssertSqlSafe(format!(
            "DROP OWNED BY {0}; DROP ROLE {0}",
            role.name
        )))
        .await;
}

/// Production shape: Postgres with a password, S3 hot and cold stores,
/// each with its own secret, and a Supabase key in the environment too.
#[tokio::test]
async fn no_secret_reaches_the_output_of_any_command() {
    let hot_server = harness::s3::S3Server::start().await;
    hot_server.create_bucket(HOT_BUCKET);
    let cold_server = harness::s3::S3Server::start().await;
    cold_server.create_bucket(COLD_BUCKET);
    let db = harness::pg::fresh_database().await;
    {
        let catalog = db.catalog().await;
        catalog.migrate().await.unwrap();
        let hot = S3Store::new("s3", &hot_server.config()).unwrap();
        coldsweep::demo::seed(&catalog, &hot, &DemoSpec::default())
            .await
            .unwrap();
        catalog.pool().close().await;
    }
    let password = random_secret("pw");
    let role = role_with_password(&db, &password).await;
    let supabase_key = random_secret("sb_secret_");
    let secrets = vec![
        password.clone(),
        cold_server.secret_key.clone(),
        hot_server.secret_key.clone(),
        supabase_key.clone(),
    ];
    let cmd = |args: &[&str]| {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("DATABASE_URL", &role.url)
            .env("ARCHIVE_PROVIDER", "minio")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_ENDPOINT", &cold_server.endpoint)
            .env("ARCHIVE_ACCESS_KEY_ID", &cold_server.access_key)
            .env("ARCHIVE_SECRET_ACCESS_KEY", &cold_server.secret_key)
            .env("HOT_STORE", "s3")
            .env("HOT_S3_ENDPOINT", &hot_server.endpoint)
            .env("HOT_S3_ACCESS_KEY_ID", &hot_server.access_key)
            .env("HOT_S3_SECRET_ACCESS_KEY", &hot_server.secret_key)
            .env("SUPABASE_SERVICE_ROLE_KEY", &supabase_key);
        cmd
    };

    // --help of every subcommand, with every secret in the environment.
    for sub in subcommands() {
        let ran = run(&mut cmd(&[&sub, "--help"]));
        assert_eq!(ran.code, Some(0), "{sub} --help\n{}", ran.show());
        assert_hidden(&format!("{sub} --help"), &all_output(&ran), &secrets);
    }

    // Success paths, at DEBUG and TRACE, in both log formats.
    let mut moved = false;
    // The third: a directive more specific than any the binary could add.
    for level in ["debug", "trace", "info,reqsign_core=trace,reqsign=trace"] {
        for format in ["text", "json"] {
            let with = |args: &[&str]| {
                let mut c = cmd(args);
                c.env("RUST_LOG", level).env("COLDSWEEP_LOG_FORMAT", format);
                c
            };
            for args in [
                &["check"][..],
                &["plan"],
                &["status"],
                &["migrate"],
                &["sweep", "--once"],
            ] {
                let ran = run(&mut with(args));
                let what = format!("{args:?} at {level} ({format})");
                // The demo's tampered and missing pages make a sweep exit 1.
                let ok = if args[0] == "sweep" { 0..=1 } else { 0..=0 };
                assert!(
                    ran.code.is_some_and(|c| ok.contains(&c)),
                    "{what}\n{}",
                    ran.show()
                );
                if args[0] == "sweep" && ran.stdout.contains("moved 74 blobs") {
                    moved = true;
                }
                assert_hidden(&what, &all_output(&ran), &secrets);
            }
            let ran = run_then_sigterm(&mut with(&["run"]));
            assert_eq!(ran.code, Some(0), "{}", ran.show());
            assert_hidden(
                &format!("run at {level} ({format})"),
                &all_output(&ran),
                &secrets,
            );
        }
    }
    assert!(
        moved,
        "no sweep moved the demo's blobs: the success path was not taken"
    );

    // Failure paths. The wrong secrets are secrets too.
    let wrong_cold = random_secret("wrongcold");
    let wrong_hot = random_secret("wronghot");
    let mut all = secrets.clone();
    all.extend([wrong_cold.clone(), wrong_hot.clone()]);
    let failures: Vec<(&str, Command)> = vec![
        ("wrong cold secret", {
            let mut c = cmd(&["sweep", "--once"]);
            c.env("ARCHIVE_SECRET_ACCESS_KEY", &wrong_cold);
            c
        }),
        ("wrong cold secret (check)", {
            let mut c = cmd(&["check"]);
            c.env("ARCHIVE_SECRET_ACCESS_KEY", &wrong_cold);
            c
        }),
        ("wrong hot secret (check)", {
            let mut c = cmd(&["check"]);
            c.env("HOT_S3_SECRET_ACCESS_KEY", &wrong_hot);
            c
        }),
        ("unreachable cold endpoint", {
            let mut c = cmd(&["sweep", "--once"]);
            c.env("ARCHIVE_ENDPOINT", "http://127.0.0.1:1");
            c
        }),
        ("unreachable database", {
            let mut c = cmd(&["status"]);
            c.env("DATABASE_URL", role.url.replace(&db_port(&role.url), "1"));
            c
        }),
        ("credentials in the endpoint", {
            let mut c = cmd(&["sweep", "--once"]);
            c.env(
                "ARCHIVE_ENDPOINT",
                format!("http://user:{}@127.0.0.1:9000", cold_server.secret_key),
            );
            c
        }),
        ("credentials in the hot endpoint", {
            let mut c = cmd(&["check"]);
            c.env(
                "HOT_S3_ENDPOINT",
                format!("http://key:{}@127.0.0.1:9000", hot_server.secret_key),
            );
            c
        }),
        ("a bad value", {
            let mut c = cmd(&["run"]);
            c.env("ARCHIVE_BATCH_SIZE", "lots");
            c
        }),
        ("a bad database URL", {
            let mut c = cmd(&["status"]);
            c.env("DATABASE_URL", format!("mysql://root:{password}@db/app"));
            c
        }),
    ];
    for (what, mut c) in failures {
        for level in ["debug", "trace"] {
            c.env("RUST_LOG", level);
            let ran = run(&mut c);
            assert!(
                matches!(ran.code, Some(1 | 2)),
                "{what}: expected a failure\n{}",
                ran.show()
            );
            assert_hidden(&format!("{what} at {level}"), &all_output(&ran), &all);
        }
    }
    drop_role(&db, &role).await;
}

/// The port in `postgres://…@host:PORT/…`.
fn db_port(url: &str) -> String {
    let after_at = url.rsplit_once('@').unwrap().1;
    let host_port = after_at.split('/').next().unwrap();
    host_port.rsplit_once(':').unwrap().1.to_owned()
}

/// The Supabase hot store's keys: success (`check`, `sweep`, `status`) and
/// failure (a key the server refuses, a server that is gone).
#[tokio::test]
async fn supabase_keys_never_reach_the_output() {
    let server = harness::supabase::SupabaseServer::start().await;
    server.create_bucket(HOT_BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    {
        let catalog = SqliteCatalog::open(&db).await.unwrap();
        catalog.migrate().await.unwrap();
        let hot = SupabaseStore::new(&server.config()).unwrap();
        coldsweep::demo::seed(&catalog, &hot, &DemoSpec::default())
            .await
            .unwrap();
        catalog.pool().close().await;
    }
    std::fs::create_dir_all(dir.path().join("cold").join(COLD_BUCKET)).unwrap();
    let secrets = vec![
        server.service_role_key.clone(),
        server.publishable_key.clone(),
    ];
    let cmd = |args: &[&str], level: &str| {
        let mut cmd = coldsweep();
        cmd.args(args)
            .env("RUST_LOG", level)
            .env("DATABASE_URL", format!("sqlite:{}", db.display()))
            .env("ARCHIVE_PROVIDER", "fs")
            .env("ARCHIVE_BUCKET", COLD_BUCKET)
            .env("ARCHIVE_FS_ROOT", dir.path().join("cold"))
            .env("HOT_STORE", "supabase")
            .env("SUPABASE_URL", &server.url)
            .env("SUPABASE_SERVICE_ROLE_KEY", &server.service_role_key)
            .env("SUPABASE_PUBLISHABLE_KEY", &server.publishable_key);
        cmd
    };
    for level in ["debug", "trace"] {
        for args in [&["check"][..], &["sweep", "--once"], &["status"], &["plan"]] {
            let ran = run(&mut cmd(args, level));
            assert!(matches!(ran.code, Some(0 | 1)), "{args:?}\n{}", ran.show());
            assert_hidden(&format!("{args:?} at {level}"), &all_output(&ran), &secrets);
        }
    }
    let wrong = format!("sb_secret_{}", random_secret("w"));
    let mut all = secrets.clone();
    all.push(wrong.clone());
    for level in ["debug", "trace"] {
        let ran = run(cmd(&["check"], level).env("SUPABASE_SERVICE_ROLE_KEY", &wrong));
        assert_eq!(ran.code, Some(1), "{}", ran.show());
        assert_hidden("a refused Supabase key", &all_output(&ran), &all);
        let ran = run(cmd(&["check"], level).env("SUPABASE_URL", "http://127.0.0.1:1"));
        assert_eq!(ran.code, Some(1), "{}", ran.show());
        assert_hidden("an unreachable Supabase", &all_output(&ran), &all);
    }
}

/// `Debug` and `Display` of every type that holds a secret, and of the
/// errors the stores and catalog return when the secret is refused.
#[tokio::test]
async fn debug_output_of_library_types_hides_secrets() {
    let cold_server = harness::s3::S3Server::start().await;
    cold_server.create_bucket(COLD_BUCKET);
    let supabase = harness::supabase::SupabaseServer::start().await;
    let password = random_secret("pw");
    let key_id = random_secret("AKIA");
    let mut secrets = vec![
        cold_server.secret_key.clone(),
        supabase.service_role_key.clone(),
        supabase.publishable_key.clone(),
        password.clone(),
    ];
    let mut texts = Vec::new();
    let mut show = |name: &str, debug: String| texts.push((name.to_owned(), debug));

    let s3 = cold_server.config();
    show("S3Config", format!("{s3:?} {s3:#?}"));
    show("Secret", format!("{:?}", Secret::new(password.clone())));
    let with_key_id = S3Config {
        access_key_id: Some(key_id.clone()),
        ..s3.clone()
    };
    show("S3Config (key id)", format!("{with_key_id:?}"));
    secrets.push(key_id);
    let checked = with_key_id.build(Provider::Minio, &S3Names::PLAIN).unwrap();
    let cold_config = ColdConfig::S3(checked.clone());
    show("ColdConfig", format!("{cold_config:?}"));
    let hot_config = HotConfig::S3(checked);
    show("HotConfig", format!("{hot_config:?}"));
    let checked = supabase.config().build(&SupabaseNames::PLAIN).unwrap();
    let supabase_config = HotConfig::Supabase(checked);
    show("HotConfig::Supabase", format!("{supabase_config:#?}"));

    let cold: Arc<dyn Store> = Arc::new(S3Store::new("minio", &s3).unwrap());
    show("S3Store", format!("{cold:?} {cold:#?}"));
    let hot: Arc<dyn Store> = Arc::new(SupabaseStore::new(&supabase.config()).unwrap());
    show("SupabaseStore", format!("{hot:?}"));
    let fs = FsStore::new(tempfile::tempdir().unwrap().path().join("x")).unwrap();
    show("FsStore", format!("{fs:?}"));

    // Errors from refused and unreachable credentials.
    let wrong = S3Store::new("minio", &cold_server.config_with_wrong_secret()).unwrap();
    secrets.push(format!("wrong-{}", cold_server.secret_key));
    let err = wrong.ping(COLD_BUCKET).await.unwrap_err();
    show("S3 ping error", format!("{err} {err:?}"));
    let refused =
        SupabaseStore::new(&supabase.config_with("sb_secret_refused0123456789abcdef", None))
            .unwrap();
    secrets.push("sb_secret_refused0123456789abcdef".into());
    if let Err(err) = refused.ping(HOT_BUCKET).await {
        show("Supabase ping error", format!("{err} {err:?}"));
    }
    let url = format!("postgres://app:{password}@127.0.0.1:1/app");
    let err = PgCatalog::connect(&url).await.unwrap_err();
    show("PgCatalog::connect error", format!("{err} {err:?}"));
    let err = coldsweep::catalog::connect(&format!("mysql://app:{password}@db/app"))
        .await
        .unwrap_err();
    show("catalog::connect error", format!("{err} {err:?}"));

    // The archiver shows its stores and configuration.
    let db = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> =
        Arc::new(SqliteCatalog::open(&db.path().join("c.db")).await.unwrap());
    show("SqliteCatalog", format!("{catalog:?}"));
    let mut config = Config::default();
    config.provider = Provider::Minio;
    config.bucket = COLD_BUCKET.into();
    let archiver = Archiver::task_html(config, catalog, hot, cold);
    show("Archiver", format!("{archiver:?} {archiver:#?}"));

    for (name, text) in &texts {
        assert_hidden(name, text, &secrets);
    }
    // The checks looked at something: the harmless parts are shown.
    let s3_text = &texts[0].1;
    assert!(s3_text.contains(&cold_server.endpoint), "{s3_text}");
}
