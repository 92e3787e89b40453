//! `coldsweep check`: is this deployment ready to archive?
//!
//! Checks the catalog (connects, migrations applied, rows readable), the cold
//! store (the library's full probe: upload, read back, verify, delete) and
//! the hot store (each bucket the catalog references is reachable, one of
//! its objects is found, and a delete of a name that cannot exist is
//! allowed; nothing is written), one line per check. Hot-store failures name
//! the settings to look at (`SUPABASE_SERVICE_ROLE_KEY`, `HOT_S3_…`).
//! Exit code 0 when all pass, 1 when any fails, 2 for bad settings.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use coldsweep::catalog::{Catalog, HotBucket};
use coldsweep::config::{Config, HotConfig, VerifyMode};
use coldsweep::source::TableSource;
use coldsweep::source::spec::{SourceSpec, SpecErrors, SpecProblem, validate_sources};
use coldsweep::store::Store;
use coldsweep::store::probe::{ProbeReport, ProbeStep, StepOutcome, probe, probe_read_only};
use coldsweep::{ErrorKind, Location, ObjectKey};

use crate::format;
use crate::format::out;
use crate::settings::{BadSettings, Settings, cold_store, hot_store, redact_url};

/// Hot buckets looked up at most; a deployment has one or a few.
const HOT_BUCKETS_CHECKED: usize = 5;

/// `coldsweep check`.
pub(crate) async fn check(settings: Settings) -> anyhow::Result<ExitCode> {
    // Every setting first: a bad one is exit code 2 before anything is contacted.
    let config = settings.enabled_config()?;
    let (cold_config, hot_config) = settings.store_configs(&config)?;
    let cold = cold_store(config.provider, &cold_config)?;
    let hot = hot_store(&hot_config)?;
    let probe_prefix = config
        .probe_key_prefix()
        .map_err(|e| BadSettings(e.message().to_owned()))?;

    // A declaration that does not parse is a bad setting (exit code 2).
    let specs = settings.source_specs()?;

    let mut report = Report::default();
    let hot_buckets = check_catalog(&settings, specs, &mut report).await?;
    check_cold(cold.as_ref(), &config, &probe_prefix, &mut report).await;
    check_hot(
        hot.as_ref(),
        &hot_config,
        &probe_prefix,
        hot_buckets,
        &mut report,
    )
    .await;

    out!();
    if report.failed == 0 {
        out!("All {} checks passed.", report.passed);
        Ok(ExitCode::SUCCESS)
    } else {
        out!(
            "{} of {} checks failed.",
            report.failed,
            report.passed + report.failed
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The start-up check of `run` and `sweep`: the cold probe, as an error
/// naming the step that failed and why.
pub(crate) async fn probe_cold(cold: &dyn Store, config: &Config) -> anyhow::Result<()> {
    let prefix = config
        .probe_key_prefix()
        .map_err(|e| BadSettings(e.message().to_owned()))?;
    let report = probe(cold, &config.bucket, &prefix).await;
    let target = format!("{}:{}", config.provider, config.bucket);
    let unreachable = report.failure().is_some_and(|s| s.step == ProbeStep::Reach);
    let etag_is_md5 = report.etag_is_md5;
    report.into_result().map_err(|e| {
        let context = if unreachable {
            format!(
                "cold bucket {target} is not reachable; check ARCHIVE_BUCKET, the endpoint and \
                 credentials"
            )
        } else {
            format!(
                "cold bucket {target} failed the start-up check (upload, read back, verify and \
                 delete a probe object under {prefix}/); `coldsweep check` shows every step"
            )
        };
        anyhow::Error::new(e).context(context)
    })?;
    tracing::info!(
        cold = %target,
        upload_checksum = cold.upload_checksum(),
        etag_is_md5,
        etag_proves_md5 = cold.etag_proves_md5(),
        "cold bucket passed the start-up check: probe object written, read back, verified and deleted"
    );
    Ok(())
}

/// Lines printed so far and how they went.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn section(&self, title: fmt::Arguments<'_>) {
        out!("{title}");
    }

    fn pass(&mut self, what: &str, detail: &str) {
        self.passed += 1;
        if detail.is_empty() {
            out!("  ✓ {what}");
        } else {
            out!("  ✓ {what}: {detail}");
        }
    }

    /// A failed check: the reason in plain words, then the error itself.
    fn fail(&mut self, what: &str, reason: &str, detail: &str) {
        self.failed += 1;
        out!("  ✗ {what}: {reason}");
        if !detail.is_empty() {
            out!("      {detail}");
        }
    }

    fn skip(&self, what: &str, why: &str) {
        out!("  - {what}: not tried, {why}");
    }

    fn note(&self, text: fmt::Arguments<'_>) {
        out!("  · {text}");
    }

    /// One line per step of a store probe; `reason` puts a failure in words.
    fn probe_steps(
        &mut self,
        probe: &ProbeReport,
        label: &str,
        reason: impl Fn(ProbeStep, ErrorKind) -> String,
    ) {
        for step in &probe.steps {
            let what = format!("{label}{}", step.step.title());
            match &step.outcome {
                StepOutcome::Passed(detail) => self.pass(&what, detail),
                StepOutcome::Failed(e) => {
                    self.fail(&what, &reason(step.step, e.kind()), &e.chain().to_string())
                }
                StepOutcome::Skipped(why) => self.skip(&what, why),
                _ => self.skip(&what, "unknown outcome"),
            }
        }
    }
}

/// Connect, check migrations, read the hot buckets. Returns those buckets,
/// or `None` when the catalog could not be read.
async fn check_catalog(
    settings: &Settings,
    specs: Option<Vec<SourceSpec>>,
    report: &mut Report,
) -> anyhow::Result<Option<Vec<HotBucket>>> {
    let url = settings
        .db
        .database_url
        .as_deref()
        .map(redact_url)
        .unwrap_or_default();
    // A missing or malformed DATABASE_URL is a bad setting (exit code 2), not a check.
    let connected = match settings.db.connect().await {
        Err(e) if e.is::<BadSettings>() => return Err(e),
        other => other,
    };
    // Printed once every setting is known good (exit code 2 prints nothing).
    match settings.config_file() {
        Some(path) => out!(
            "Settings from config file {} (flags and environment variables override it)",
            path.display()
        ),
        None => out!("Settings from flags and environment variables (no config file)"),
    }
    report.section(format_args!("Catalog {url}"));
    let catalog: Arc<dyn Catalog> = match connected {
        Ok(catalog) => catalog,
        Err(e) => {
            let reason = match e.downcast_ref::<coldsweep::Error>().map(|e| e.kind()) {
                Some(ErrorKind::PermissionDenied) => "credentials refused",
                Some(ErrorKind::Transient) => {
                    "could not connect: is the database running and reachable from here?"
                }
                _ => "could not connect",
            };
            report.fail("connected", reason, &format::error_chain(&e));
            report.skip("migrations applied", "no connection");
            report.skip("tasks readable", "no connection");
            return Ok(None);
        }
    };
    report.pass("connected", catalog.backend());
    if let Some(specs) = specs {
        return Ok(check_sources(catalog, specs, report).await);
    }
    if let Err(e) = catalog.check_migrations().await {
        let reason = if e.kind() == ErrorKind::InvalidInput {
            "the schema is not current: run `coldsweep migrate`"
        } else {
            "could not read the migration history"
        };
        report.fail("migrations applied", reason, &e.chain().to_string());
        report.skip("tasks readable", "the schema is not current");
        return Ok(None);
    }
    report.pass("migrations applied", "");
    match catalog.hot_buckets(HOT_BUCKETS_CHECKED + 1).await {
        Ok(buckets) => {
            report.pass("tasks readable", &buckets_detail(&buckets));
            Ok(Some(buckets))
        }
        Err(e) => {
            report.fail(
                "tasks readable",
                "could not read the tasks table",
                &e.chain().to_string(),
            );
            Ok(None)
        }
    }
}

/// "hot blobs in 2 buckets a, b": the buckets a check looks in.
fn buckets_detail(buckets: &[HotBucket]) -> String {
    let names: Vec<&str> = buckets
        .iter()
        .take(HOT_BUCKETS_CHECKED)
        .map(|b| b.bucket.as_str())
        .collect();
    match buckets.len() {
        0 => "no blobs in hot storage".to_owned(),
        n if n > HOT_BUCKETS_CHECKED => {
            format!("hot blobs in {} and more buckets", names.join(", "))
        }
        _ => format!(
            "hot blobs in {} {}",
            format::count(names.len() as u64, "bucket", "buckets"),
            names.join(", ")
        ),
    }
}

/// The catalog part with `[[sources]]`: each declaration against the live
/// schema, each side table in place, each source's rows readable. Returns
/// the hot buckets the sources' rows are in (`None`: none could be read).
async fn check_sources(
    catalog: Arc<dyn Catalog>,
    specs: Vec<SourceSpec>,
    report: &mut Report,
) -> Option<Vec<HotBucket>> {
    let (notes, problems) = match validate_sources(&specs, catalog.as_ref()).await {
        Ok(notes) => (notes, Vec::new()),
        Err(e) => match SpecErrors::of(&e) {
            Some(errors) => (Vec::new(), errors.problems().to_vec()),
            None => {
                report.fail(
                    "source declarations",
                    "could not read the catalog's schema",
                    &e.chain().to_string(),
                );
                return None;
            }
        },
    };
    let general: Vec<&SpecProblem> = problems.iter().filter(|p| p.source.is_none()).collect();
    if !general.is_empty() {
        report.fail(
            "source declarations",
            &format::count(general.len() as u64, "problem", "problems"),
            "",
        );
        for problem in general {
            out!("      - {problem}");
        }
    }
    let mut buckets: Vec<HotBucket> = Vec::new();
    let mut read_any = false;
    for spec in specs {
        let name = spec.name.value.clone();
        let own: Vec<&SpecProblem> = problems
            .iter()
            .filter(|p| p.source.as_deref() == Some(name.as_str()))
            .collect();
        let what = format!("source {name}: declaration fits the schema");
        let declared_ok = own.is_empty();
        if declared_ok {
            report.pass(&what, &format!("table {}", spec.table.value));
            for note in notes.iter().filter(|n| n.source == name) {
                report.note(format_args!(
                    "{} ({}): {}",
                    note.setting, note.column, note.message
                ));
            }
        } else {
            report.fail(
                &what,
                &format::count(own.len() as u64, "problem", "problems"),
                "",
            );
            for problem in own {
                out!("      - {problem}");
            }
        }
        let side_what = format!("source {name}: side table in place");
        let side = spec.side_table.as_ref().map(|s| s.value.clone());
        let side_ok = match &side {
            None => {
                report.fail(&side_what, "the declaration names no side_table", "");
                false
            }
            Some(side) => match catalog.describe_table(side).await {
                Ok(Some(_)) => {
                    report.pass(&side_what, &side.to_string());
                    true
                }
                Ok(None) => {
                    report.fail(
                        &side_what,
                        &format!(
                            "{side} does not exist: run `coldsweep migrate` (with the same \
                             --config) to create it"
                        ),
                        "",
                    );
                    false
                }
                Err(e) => {
                    report.fail(
                        &side_what,
                        "could not read the schema",
                        &e.chain().to_string(),
                    );
                    false
                }
            },
        };
        let rows_what = format!("source {name}: rows readable");
        if !declared_ok || !side_ok {
            report.skip(
                &rows_what,
                "the declaration or its side table is not in order",
            );
            continue;
        }
        let samples = match TableSource::open(catalog.clone(), spec).await {
            Ok(source) => source.hot_samples(HOT_BUCKETS_CHECKED + 1).await,
            Err(e) => Err(e),
        };
        match samples {
            Ok(samples) => {
                let found: Vec<HotBucket> = samples
                    .into_iter()
                    .map(|(bucket, sample_path, rows)| HotBucket {
                        bucket,
                        tasks: i64::try_from(rows).unwrap_or(i64::MAX),
                        sample_path,
                    })
                    .collect();
                report.pass(&rows_what, &buckets_detail(&found));
                read_any = true;
                for bucket in found {
                    if !buckets.iter().any(|b| b.bucket == bucket.bucket) {
                        buckets.push(bucket);
                    }
                }
            }
            Err(e) => report.fail(
                &rows_what,
                "could not read the table",
                &e.chain().to_string(),
            ),
        }
    }
    read_any.then_some(buckets)
}

async fn check_cold(cold: &dyn Store, config: &Config, prefix: &ObjectKey, report: &mut Report) {
    let probe = probe(cold, &config.bucket, prefix).await;
    report.section(format_args!(
        "Cold store {}:{} (probe object {})",
        config.provider, config.bucket, probe.location.key
    ));
    report.probe_steps(&probe, "", |step, kind| step.reason(kind).to_owned());
    if let Some(left) = probe.left_behind() {
        report.note(format_args!(
            "the probe object may still be at {left}: delete it by hand"
        ));
    }
    // As the archiver decides: the cheap path needs both the provider's
    // word and an ETag that really is the MD5.
    let verification = match (config.verify, probe.etag_is_md5) {
        (VerifyMode::ReadBack, _) => "every copy is read back",
        (_, Some(true)) if cold.etag_proves_md5() => {
            "the store's MD5 ETag proves each copy, no second download"
        }
        (_, Some(_)) => "every copy is read back: this store's ETag does not prove the bytes",
        (_, None) => "not known until the probe passes",
    };
    report.note(format_args!(
        "upload checksum: {}; verification (ARCHIVE_VERIFY={}): {verification}",
        cold.upload_checksum(),
        config.verify.as_str(),
    ));
}

async fn check_hot(
    hot: &dyn Store,
    hot_config: &HotConfig,
    prefix: &ObjectKey,
    buckets: Option<Vec<HotBucket>>,
    report: &mut Report,
) {
    report.section(format_args!(
        "Hot store {} (read only: nothing is written)",
        hot.provider()
    ));
    let Some(buckets) = buckets else {
        report.skip(
            "hot buckets",
            "the catalog says which buckets to look in and could not be read",
        );
        return;
    };
    if buckets.is_empty() {
        report.skip("hot buckets", "the catalog references no hot blobs yet");
        return;
    }
    for bucket in buckets.iter().take(HOT_BUCKETS_CHECKED) {
        let label = format!("{}: ", bucket.bucket);
        let key = match ObjectKey::new(bucket.sample_path.clone()) {
            Ok(key) => key,
            Err(e) => {
                report.fail(
                    &format!("{label}object the catalog references found"),
                    "the catalog's html_storage_path is not a usable key",
                    &e.chain().to_string(),
                );
                continue;
            }
        };
        let location = Location::new(bucket.bucket.clone(), key);
        let probe = probe_read_only(hot, &location, prefix).await;
        report.probe_steps(&probe, &label, |step, kind| {
            hot_reason(hot_config, step, kind)
        });
    }
    if buckets.len() > HOT_BUCKETS_CHECKED {
        report.note(format_args!(
            "only the first {HOT_BUCKETS_CHECKED} buckets were checked"
        ));
    }
}

/// Why a hot-store step failed, naming the settings to check: the
/// library's words are about any store, and the cold store's credentials
/// are other variables.
fn hot_reason(hot: &HotConfig, step: ProbeStep, kind: ErrorKind) -> String {
    use ErrorKind as K;
    use ProbeStep as S;
    let keys = hot.credential_variables().join(" and ");
    let supabase = matches!(hot, HotConfig::Supabase(_));
    match (step, kind) {
        _ if keys.is_empty() => step.reason(kind).to_owned(),
        // Row Level Security answers a key without the service role exactly
        // as if the bucket were missing.
        (S::Reach, K::BucketNotFound | K::NotFound) if supabase => format!(
            "bucket not found: check the bucket name, and that {keys} holds the service_role \
             key or a secret key (sb_secret_…): Supabase hides buckets and objects from any \
             other key as if they did not exist"
        ),
        (S::Reach, K::PermissionDenied) => {
            format!("credentials refused: check {keys}, and that they may read this bucket")
        }
        (S::Find, K::PermissionDenied) => {
            format!("read not allowed: check {keys}, and that they may read objects")
        }
        (S::Find, K::NotFound) if supabase => format!(
            "{}; with Supabase, also that {keys} holds the service_role key",
            step.reason(kind)
        ),
        (S::DeleteAbsent, K::PermissionDenied) => format!(
            "delete not allowed: check {keys}; they may read but not delete in this bucket, \
             so archived blobs could never leave it"
        ),
        _ => step.reason(kind).to_owned(),
    }
}
