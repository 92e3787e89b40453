//! Catalog databases for tests: a new Postgres database per test, or a
//! temp-file SQLite catalog.
//!
//! The Postgres server is found once per test binary:
//! 1. `DATABASE_URL`, if set (the tests create and drop databases on it);
//! 2. else `127.0.0.1:5432`, if it answers (users `postgres`/`root`,
//!    databases `postgres`/`test`) with a role that may create databases;
//! 3. else a throwaway cluster from the system's `initdb`/`pg_ctl`, run as
//!    the `postgres` user when the tests run as root (initdb refuses root),
//!    trust auth, a free port on 127.0.0.1, a private socket folder, no fsync.
//!    A watchdog process stops it (`pg_ctl -m immediate`) and removes its
//!    folder once the test binary has exited, however it exits.
//!
//! `COLDSWEEP_TEST_PG=throwaway` skips 1 and 2, to prove step 3 works on a
//! machine that has a server.
//!
//! Every `#[tokio::test]` has its own runtime, so nothing here shares a pool
//! across tests: the server is remembered as connect options only.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use coldsweep::Catalog;
use coldsweep::catalog::fixtures::Fixtures;
use coldsweep::catalog::{PgCatalog, SqliteCatalog};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tokio::sync::OnceCell;

/// Admin connection options of the server all test databases go on.
static SERVER: OnceCell<PgConnectOptions> = OnceCell::const_new();

/// A new, empty database; dropped (best effort) when this is dropped.
pub(crate) struct PgTestDb {
    name: String,
    url: String,
    admin: PgConnectOptions,
}

impl PgTestDb {
    /// `postgres://…/coldsweep_test_…`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A catalog on this database, not migrated. Each call opens its own pool.
    pub(crate) async fn catalog(&self) -> PgCatalog {
        PgCatalog::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to test database {}: {e}", self.name))
    }

    /// A raw connection, for tests that build schemas or hold locks themselves.
    pub(crate) async fn connection(&self) -> PgConnection {
        self.admin
            .clone()
            .database(&self.name)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to test database {}: {e}", self.name))
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Async work in Drop: a thread with its own runtime, joined so the
        // process cannot exit half-way. Failure only leaves a database behind.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = conn.execute(AssertSqlSafe(sql)).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A new empty database (`coldsweep_test_<pid>_<random>`) on the test server.
pub(crate) async fn fresh_database() -> PgTestDb {
    let admin = SERVER.get_or_init(find_server).await.clone();
    let name = format!(
        "coldsweep_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = admin
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the test Postgres server: {e}"));
    conn.execute(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let url = admin.clone().database(&name).to_url_lossy().to_string();
    PgTestDb { name, url, admin }
}

/// A catalog and whatever keeps its database alive.
pub(crate) struct TestCatalog {
    /// The catalog, migrated; tests seed it through [`Fixtures`].
    pub(crate) catalog: Arc<dyn Fixtures>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl std::ops::Deref for TestCatalog {
    type Target = dyn Fixtures;

    fn deref(&self) -> &Self::Target {
        &*self.catalog
    }
}

/// A migrated Postgres catalog on a fresh database.
pub(crate) async fn pg_catalog() -> TestCatalog {
    let db = fresh_database().await;
    let catalog = db.catalog().await;
    catalog
        .migrate()
        .await
        .expect("migrate the Postgres test catalog");
    TestCatalog {
        catalog: Arc::new(catalog),
        _keep: Box::new(db),
    }
}

/// A SQLite database file in a temp folder (removed on drop); not created yet.
pub(crate) struct SqliteTestDb {
    url: String,
    _dir: tempfile::TempDir,
}

impl SqliteTestDb {
    /// `sqlite:/tmp/…/catalog.db`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A catalog on this file (created if missing), not migrated.
    pub(crate) async fn catalog(&self) -> SqliteCatalog {
        SqliteCatalog::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

/// A path for a new SQLite catalog.
pub(crate) fn sqlite_database() -> SqliteTestDb {
    let dir = tempfile::tempdir().expect("temp folder for a SQLite catalog");
    let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
    SqliteTestDb { url, _dir: dir }
}

/// A migrated SQLite catalog in a temp file.
pub(crate) async fn sqlite_catalog() -> TestCatalog {
    let db = sqlite_database();
    let catalog = db.catalog().await;
    catalog
        .migrate()
        .await
        .expect("migrate the SQLite test catalog");
    TestCatalog {
        catalog: Arc::new(catalog),
        _keep: Box::new(db),
    }
}

async fn find_server() -> PgConnectOptions {
    if std::env::var("COLDSWEEP_TEST_PG").as_deref() == Ok("throwaway") {
        return tokio::task::spawn_blocking(start_throwaway_cluster)
            .await
            .expect("start a throwaway Postgres cluster");
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let options: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a Postgres URL: {e}"));
        if let Err(e) = options.connect().await {
            panic!("DATABASE_URL is set but its server does not answer: {e}");
        }
        return options;
    }
    for (user, database) in [
        ("postgres", "postgres"),
        ("root", "test"),
        ("postgres", "test"),
        ("root", "postgres"),
    ] {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(5432)
            .username(user)
            .database(database);
        if may_create_databases(&options).await {
            return options;
        }
    }
    tokio::task::spawn_blocking(start_throwaway_cluster)
        .await
        .expect("start a throwaway Postgres cluster")
}

/// Whether `options` reach a server as a role that may create databases.
async fn may_create_databases(options: &PgConnectOptions) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(3), options.connect()).await
    else {
        return false;
    };
    let allowed: Result<bool, _> = sqlx::query_scalar(
        "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    allowed.unwrap_or(false)
}

/// Start a private cluster; returns admin options for it. The watchdog
/// stops it and removes its folder once the test binary has exited.
fn start_throwaway_cluster() -> PgConnectOptions {
    let cluster = new_cluster();
    let options = cluster.options();
    std::mem::forget(cluster);
    options
}

/// `initdb` and start a new cluster.
fn new_cluster() -> PgCluster {
    let bin = find_postgres_bin().unwrap_or_else(|| {
        panic!(
            "no Postgres server for the tests: DATABASE_URL is unset, nothing answers on \
             127.0.0.1:5432, and no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin. \
             Install PostgreSQL (`apt-get install postgresql`) or set DATABASE_URL to a \
             server where the tests may create databases."
        )
    });
    let base = std::env::temp_dir().join(format!(
        "coldsweep-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    fs::create_dir(&base).expect("create a folder for the throwaway cluster");
    // initdb refuses to run as root: run the cluster as `postgres` then.
    let run_as = if fs::metadata(&base).expect("stat cluster folder").uid() == 0 {
        let ids = postgres_user().unwrap_or_else(|| {
            panic!(
                "tests run as root and there is no `postgres` user to run a throwaway \
                 cluster as; `apt-get install postgresql` creates one, or set DATABASE_URL"
            )
        });
        std::os::unix::fs::chown(&base, Some(ids.0), Some(ids.1))
            .expect("give the cluster folder to the postgres user");
        Some(ids)
    } else {
        None
    };
    let data = base.join("data");
    let socket = base.join("socket");
    let command = |program: PathBuf| cluster_command(program, &base, run_as);
    run_logged(
        command(bin.join("initdb")).arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]),
        &base,
        "initdb",
    );
    // The server's user must own the socket folder too.
    fs::create_dir(&socket).expect("create the socket folder");
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid)).expect("chown socket folder");
    }
    let port = free_port();
    let server_options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        socket.display()
    );
    let cluster = PgCluster {
        bin: bin.clone(),
        base: base.clone(),
        data: data.clone(),
        port,
        server_options,
        run_as,
    };
    cluster.start_again();
    // Stops the cluster once this process is gone (`kill -0` fails across
    // users, hence the /proc check as well).
    // Never waited for: it outlives this process by design.
    #[allow(clippy::zombie_processes)]
    let _watchdog = command(PathBuf::from("sh"))
        .arg("-c")
        .arg(
            r#"while kill -0 "$1" 2>/dev/null || [ -d "/proc/$1" ]; do sleep 1; done
               "$2" -D "$3" -m immediate stop
               rm -rf "$4""#,
        )
        .arg("coldsweep-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(bin.join("pg_ctl"))
        .arg(&data)
        .arg(&base)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start the throwaway cluster's watchdog");
    cluster
}

/// A private cluster (see the module docs, step 3) that a test may stop and
/// start again on the same port; stopped and removed when dropped.
pub(crate) struct PgCluster {
    bin: PathBuf,
    base: PathBuf,
    data: PathBuf,
    port: u16,
    server_options: String,
    run_as: Option<(u32, u32)>,
}

impl PgCluster {
    /// `initdb` and start a new cluster. Blocking: call from `spawn_blocking`.
    pub(crate) fn start() -> PgCluster {
        new_cluster()
    }

    /// Admin connection options.
    pub(crate) fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database("postgres")
    }

    /// Start the stopped server again, on the same port. Blocking.
    pub(crate) fn start_again(&self) {
        // Own process group: a Ctrl-C aimed at the tests should not kill the
        // server before the watchdog stops it cleanly.
        run_logged(
            cluster_command(self.bin.join("pg_ctl"), &self.base, self.run_as)
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.base.join("server.log"))
                .args(["-w", "-t", "60", "-o", &self.server_options, "start"])
                .process_group(0),
            &self.base,
            "pg_ctl start",
        );
    }

    /// Stop the server as an operator's restart does (`-m fast`: sessions
    /// are cut, open transactions rolled back). Blocking.
    pub(crate) fn stop(&self) {
        run_logged(
            cluster_command(self.bin.join("pg_ctl"), &self.base, self.run_as)
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-t", "60", "-m", "fast", "stop"]),
            &self.base,
            "pg_ctl stop",
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = cluster_command(self.bin.join("pg_ctl"), &self.base, self.run_as)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A command run in the cluster's folder, as its user.
fn cluster_command(program: PathBuf, base: &Path, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(base)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// Run `cmd` with stderr to a file under `base`; panic with it on failure.
fn run_logged(cmd: &mut Command, base: &Path, what: &str) {
    let err_path = base.join(format!("{}.err", what.replace(' ', "-")));
    let err = fs::File::create(&err_path).expect("create a log file");
    let status = cmd
        .stderr(err)
        .status()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    if !status.success() {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let log = fs::read_to_string(base.join("server.log")).unwrap_or_default();
        panic!("{what} failed ({status}):\n{stderr}\n{log}");
    }
}

/// The folder holding `initdb` and `pg_ctl`: PATH first, then the newest
/// Debian-style `/usr/lib/postgresql/<version>/bin`.
fn find_postgres_bin() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|dir| has_both(dir)) {
        // Resolve symlinks (/usr/local/bin/initdb → /usr/lib/postgresql/15/bin)
        // so initdb finds its share folder and pg_ctl its postgres binary.
        let initdb = fs::canonicalize(dir.join("initdb")).ok()?;
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port on 127.0.0.1")
}
