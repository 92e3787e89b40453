//! `coldsweep demo --example uploads`: the README's first worked example
//! (an application's `documents` table archived after 90 days) on the
//! embedded default, swept once, explained.
//!
//! `<dir>/app.db` is the application's SQLite database, `<dir>/hot` and
//! `<dir>/cold` folder stores, `<dir>/coldsweep.toml` the config file that
//! declares the source; every later command runs with `--config` on it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use coldsweep::Archiver;
use coldsweep::catalog::{Catalog, SqliteCatalog};
use coldsweep::config::Config;
use coldsweep::demo::uploads::{self, DECLARATION, TAMPERED};
use coldsweep::rules::{Decision, MoveRule, StayReason};
use coldsweep::source::spec::parse_sources;
use coldsweep::source::{ArchiveSource, open_declared};
use coldsweep::store::{FsStore, Store};

use super::demo::reset_dir;
use crate::format::{self, count, out};

/// The folder `--dir` defaults to for this example.
pub(crate) const DEFAULT_DIR: &str = "coldsweep-demo-uploads";
const COLD_BUCKET: &str = "cold-archive";

/// What the folder may hold for `--reset` to delete it.
const ENTRIES: [&str; 7] = [
    "app.db",
    "app.db-wal",
    "app.db-shm",
    "app.db-journal",
    "hot",
    "cold",
    "coldsweep.toml",
];

/// `coldsweep demo --example uploads`.
pub(crate) async fn demo_uploads(dir: &Path, reset: bool) -> anyhow::Result<ExitCode> {
    if reset {
        reset_dir(dir, &ENTRIES)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("find {}", dir.display()))?;
    let database = dir.join("app.db");
    let hot_root = dir.join("hot");
    let cold_root = dir.join("cold");
    let config_file = dir.join("coldsweep.toml");

    let catalog: Arc<dyn Catalog> = Arc::new(
        SqliteCatalog::open(&database)
            .await
            .with_context(|| format!("open the application database {}", database.display()))?,
    );
    std::fs::create_dir_all(hot_root.join(uploads::HOT_BUCKET))
        .context("create the hot bucket folder")?;
    std::fs::create_dir_all(cold_root.join(COLD_BUCKET))
        .context("create the cold bucket folder")?;
    // The application's files are written as an application (or a
    // restore) writes them; the sweep opens the hot root read-and-delete.
    let seeder = FsStore::open_for_restore(&hot_root)?;
    let hot: Arc<dyn Store> = Arc::new(FsStore::open_existing(&hot_root)?);
    let cold: Arc<dyn Store> = Arc::new(FsStore::new(&cold_root)?);

    out!(
        "coldsweep demo --example uploads: everything lives in {}",
        dir.display()
    );
    out!(
        "  application  {}  (SQLite: a `documents` table)",
        database.display()
    );
    out!(
        "  hot          {}  (folder store, bucket {})",
        hot_root.display(),
        uploads::HOT_BUCKET
    );
    out!(
        "  cold         {}  (folder store, provider fs, bucket {COLD_BUCKET})",
        cold_root.display()
    );
    out!("  config       {}", config_file.display());
    out!();

    let seeded = uploads::seed(catalog.as_ref(), &seeder, chrono::Utc::now()).await?;
    if seeded.documents > 0 {
        out!(
            "Seeded {} ({}) with the names real uploads have: spaces, accents in both \
             Unicode forms, `+ # % ? &`, CJK, emoji. One is under legal hold; one's bytes no \
             longer match its SHA-256 ({TAMPERED}).",
            count(seeded.documents as u64, "document", "documents"),
            format::bytes(seeded.bytes)
        );
    } else {
        out!("The documents table is already there: nothing seeded.");
    }
    if !config_file.exists() {
        std::fs::write(&config_file, config_text(&database, &hot_root, &cold_root))
            .with_context(|| format!("write {}", config_file.display()))?;
        out!(
            "Wrote {} (settings and the source declaration).",
            config_file.display()
        );
    }
    out!();

    let specs = parse_sources(DECLARATION).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (sources, _) = open_declared(catalog.clone(), specs).await?;
    for source in &sources {
        source.migrate().await?;
    }
    let source = sources
        .first()
        .context("the example declares one source")?
        .clone();

    let now = chrono::Utc::now();
    let decisions = source.decisions(now).await?;
    let names = file_names(catalog.as_ref()).await?;
    let name_of = |key: &str| {
        names
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.as_str())
    };

    let config = Config::from_lookup(|name| match name {
        "ARCHIVE_PROVIDER" => Some("fs".to_owned()),
        "ARCHIVE_BUCKET" => Some(COLD_BUCKET.to_owned()),
        _ => None,
    })?
    .context("provider and bucket are set")?;
    cold.ping(&config.bucket).await?;
    out!(
        "Sweeping source {:?} once: rows of table documents older than 90 days \
         (created_at), not under legal hold (condition `NOT legal_hold`).",
        source.name()
    );
    let report = Archiver::declared(config, sources.clone(), hot, cold)
        .sweep()
        .await;
    out!("  {}", format::report_summary(&report));
    out!();

    let mut moved = Vec::new();
    let mut young = Vec::new();
    let mut held = Vec::new();
    for unit in &decisions.jobs {
        let name = name_of(&unit.standing.job_id).unwrap_or("?");
        match unit.decision {
            Decision::Moves(MoveRule::Retention | MoveRule::Quota) => moved.push(name),
            Decision::Stays(StayReason::YoungerThanMinAge) => young.push(name),
            Decision::Stays(StayReason::NotFinished) => held.push(name),
            Decision::Stays(_) => {}
        }
    }
    if !moved.is_empty() {
        out!("Old enough to move ({}):", moved.len());
        for name in &moved {
            let quarantined = report
                .problems
                .iter()
                .any(|p| name_of(p.task_id.as_deref().unwrap_or_default()) == Some(name));
            out!(
                "  {name}{}",
                if quarantined {
                    "  — quarantined: its bytes disagree with its SHA-256, so it stays hot"
                } else {
                    ""
                }
            );
        }
    } else {
        out!("Nothing left to move: the old documents are in cold storage already.");
    }
    if !held.is_empty() {
        out!(
            "Kept hot by the condition (legal hold): {}",
            held.join(", ")
        );
    }
    if !young.is_empty() {
        out!("Younger than 90 days, kept hot: {}", young.join(", "));
    }
    out!();
    out!(
        "Archived rows now have storage_path NULL and archive_key set (the cold copy under \
         {}/documents/<owner>/<id>/<file name>); coldsweep_documents records each move.",
        cold_root.join(COLD_BUCKET).display()
    );
    out!();
    let config_arg = config_file.display();
    out!("Next:");
    out!("  coldsweep --config {config_arg} plan");
    out!("  coldsweep --config {config_arg} status");
    out!("  coldsweep --config {config_arg} get --source documents 1 -o report.pdf");
    out!(
        "  sqlite3 {} 'SELECT id, file_name, storage_path, archive_key FROM documents'",
        database.display()
    );
    // The tampered file is expected; anything else is not.
    let unexpected = report
        .problems
        .iter()
        .filter(|p| name_of(p.task_id.as_deref().unwrap_or_default()) != Some(TAMPERED))
        .count();
    Ok(if unexpected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `coldsweep.toml`: the demo's settings and the source declaration.
fn config_text(database: &Path, hot: &Path, cold: &Path) -> String {
    let quoted = |p: &PathBuf| toml_string(&p.display().to_string());
    format!(
        "# Written by `coldsweep demo --example uploads`.\n\
         [settings]\n\
         database_url = {}\n\
         archive_provider = \"fs\"\n\
         archive_bucket = \"{COLD_BUCKET}\"\n\
         archive_fs_root = {}\n\
         hot_store = \"fs\"\n\
         hot_fs_root = {}\n\n{DECLARATION}",
        toml_string(&format!("sqlite:{}", database.display())),
        quoted(&cold.to_owned()),
        quoted(&hot.to_owned()),
    )
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Each document's key and file name.
async fn file_names(catalog: &dyn Catalog) -> anyhow::Result<Vec<(String, String)>> {
    Ok(uploads::file_names(catalog).await?)
}
