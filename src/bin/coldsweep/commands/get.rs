//! `coldsweep get`: one task's page, from wherever the catalog says it
//! lives, checked against the catalog, to stdout or a file.
//!
//! With `[[sources]]` in the config file, KEY is a row key of the source
//! `--source` names (may be left out when there is one), in its key
//! column's own type; a key not of that type is exit code 2.
//!
//! Exit codes: 0 written, 1 not servable (no such task, lost, missing,
//! quarantined, bytes that disagree with the catalog) or a store or the
//! catalog failed, 2 bad arguments or settings.

use std::fs::{self, OpenOptions};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use coldsweep::get::{Form, GetOptions, Page, PageReader, Proof};

use crate::format;
use crate::format::out;
use crate::settings::{BadSettings, Settings, cold_store, hot_store};

/// What `get` reads and where it writes it.
#[derive(Args, Clone)]
pub(crate) struct GetArgs {
    /// The task whose page to read; with declared sources, the row's key (a bigint, a uuid, …).
    #[arg(value_name = "TASK_ID")]
    task_id: String,
    /// With declared [[sources]]: the source whose row to read (needed when there are several).
    #[arg(long, value_name = "NAME", help_heading = "Get")]
    source: Option<String>,
    /// Write the decoded page (the HTML) instead of the bytes as stored (gzip).
    #[arg(long, help_heading = "Get")]
    decoded: bool,
    /// Write to FILE instead of stdout: a temporary file beside it, renamed into place once
    /// complete, so FILE is never half written. `-o -` writes to stdout even on a terminal.
    #[arg(short = 'o', long, value_name = "FILE", help_heading = "Get")]
    output: Option<PathBuf>,
    /// Read a quarantined blob anyway; its bytes are still checked against the catalog, so this
    /// serves only one quarantined for another reason (it kept failing to move).
    #[arg(long, help_heading = "Get")]
    allow_quarantined: bool,
}

/// Where the bytes go.
enum Output {
    Stdout,
    File(PathBuf),
}

/// `coldsweep get`.
pub(crate) async fn get(settings: Settings, args: GetArgs) -> anyhow::Result<ExitCode> {
    // Arguments and settings first: a bad one is exit code 2 before anything is contacted.
    if args.task_id.trim().is_empty() {
        return Err(BadSettings("TASK_ID: expected a task id, got nothing".to_owned()).into());
    }
    let output = match &args.output {
        Some(path) if path.as_os_str() == "-" => Output::Stdout,
        Some(path) => Output::File(checked_output(path)?),
        None => {
            // As curl does: gzip bytes would only garble a terminal.
            if !args.decoded && std::io::stdout().is_terminal() {
                return Err(BadSettings(format!(
                    "not writing the stored (gzip) bytes of task {} to a terminal: pass \
                     --decoded for the HTML, -o FILE to save them, or pipe the output \
                     (`-o -` writes them here anyway)",
                    args.task_id
                ))
                .into());
            }
            Output::Stdout
        }
    };
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = hot_store(&hot_config)?;
    let declared = settings.source_specs()?;
    let what = if declared.is_some() { "row" } else { "task" };
    let reader = match declared {
        Some(specs) => {
            let (_, sources) = settings.open_sources(specs, true).await?;
            let source = super::pick_source(sources, args.source.as_deref())?;
            source
                .parse_key(&args.task_id)
                .map_err(|e| BadSettings(e.message().to_owned()))?;
            PageReader::for_source(source, hot, cold, config.bucket.clone())
        }
        None => {
            super::no_sources_for(args.source.as_deref())?;
            let catalog = settings.db.connect_migrated().await?;
            PageReader::new(catalog, hot, cold, config.bucket.clone())
        }
    };
    let options = GetOptions {
        form: if args.decoded {
            Form::Decoded
        } else {
            Form::Stored
        },
        allow_quarantined: args.allow_quarantined,
        ..GetOptions::default()
    };
    let page = reader.get(&args.task_id, &options).await?;
    if page.proof == Proof::Unchecked {
        eprintln!(
            "note: row {} records neither a digest nor a size: its bytes were not checked; they \
             are those of the {} copy the catalog points at ({})",
            page.task_id,
            page.tier.as_str(),
            page.location
        );
    }
    match output {
        Output::Stdout => write_stdout(&page.bytes)?,
        Output::File(path) => {
            write_atomically(&path, &page.bytes)
                .with_context(|| format!("write {}", path.display()))?;
            out!("{} to {}", describe(&page, what), path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `-o FILE` as given, refused (exit 2) when it cannot name a file: a
/// folder, or a file in a folder that does not exist.
fn checked_output(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_dir() || path.file_name().is_none() {
        return Err(BadSettings(format!(
            "-o {}: expected a file name, got a folder",
            path.display()
        ))
        .into());
    }
    let parent = folder_of(path);
    if !parent.is_dir() {
        return Err(BadSettings(format!(
            "-o {}: the folder {} does not exist",
            path.display(),
            parent.display()
        ))
        .into());
    }
    Ok(path.to_owned())
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `Wrote 1.2 KiB (gzip, as stored) of task t1 from cold minio:archive/jobs/…, checked against the catalog`.
fn describe(page: &Page, what: &str) -> String {
    let form = match (page.form, page.content_encoding.as_deref()) {
        (Form::Decoded, _) => "decoded".to_owned(),
        (Form::Stored, Some(encoding)) => format!("{encoding}, as stored"),
        (Form::Stored, None) => "as stored".to_owned(),
    };
    let checked = match page.proof {
        Proof::Catalog => "checked against the catalog",
        Proof::UploadDigest => "checked against the digest recorded at upload",
        Proof::Unchecked => "not checked (the row records neither digest nor size)",
    };
    format!(
        "Wrote {} ({form}) of {what} {} from {} {}, {checked},",
        format::bytes(page.bytes.len() as u64),
        page.task_id,
        page.tier.as_str(),
        page.location,
    )
}

/// All of `bytes` to stdout; a reader that went away ends the process
/// quietly, as `format::line` does.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => Err(e).context("write to stdout"),
    }
}

/// `bytes` to `path` through a temporary file in the same folder, synced
/// and renamed into place: `path` holds the old content or the new, never
/// part of it. The temporary file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = folder_of(path).join(format!(
        ".{name}.coldsweep-{}.tmp",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("page.html");
        fs::write(&path, b"old").unwrap();
        write_atomically(&path, b"new page").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new page");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
