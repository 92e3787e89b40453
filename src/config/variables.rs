//! The variables coldsweep reads: names, defaults and the [`VARIABLES`] table.
//!
//! The parsers and `VARIABLES` share these constants so the `--help` table
//! and the README's rows cannot drift from what is actually read.

pub(crate) const ARCHIVE_PROVIDER: &str = "ARCHIVE_PROVIDER";
pub(crate) const ARCHIVE_BUCKET: &str = "ARCHIVE_BUCKET";
pub(crate) const ARCHIVE_RETENTION_JOBS: &str = "ARCHIVE_RETENTION_JOBS";
pub(crate) const ARCHIVE_HOT_QUOTA: &str = "ARCHIVE_HOT_QUOTA";
pub(crate) const ARCHIVE_MIN_AGE: &str = "ARCHIVE_MIN_AGE";
pub(crate) const ARCHIVE_INTERVAL: &str = "ARCHIVE_INTERVAL";
pub(crate) const ARCHIVE_BATCH_SIZE: &str = "ARCHIVE_BATCH_SIZE";
pub(crate) const ARCHIVE_CONCURRENCY: &str = "ARCHIVE_CONCURRENCY";
pub(crate) const ARCHIVE_PATH_PREFIX: &str = "ARCHIVE_PATH_PREFIX";
pub(crate) const ARCHIVE_BLOB_TIMEOUT: &str = "ARCHIVE_BLOB_TIMEOUT";
pub(crate) const ARCHIVE_STREAM_THRESHOLD: &str = "ARCHIVE_STREAM_THRESHOLD";
pub(crate) const ARCHIVE_LEASE: &str = "ARCHIVE_LEASE";
pub(crate) const ARCHIVE_VERIFY: &str = "ARCHIVE_VERIFY";
pub(crate) const ARCHIVE_PROBE_PREFIX: &str = "ARCHIVE_PROBE_PREFIX";
pub(crate) const ARCHIVE_LOST_AFTER: &str = "ARCHIVE_LOST_AFTER";
pub(crate) const ARCHIVE_MISSING_STOP_COUNT: &str = "ARCHIVE_MISSING_STOP_COUNT";
pub(crate) const ARCHIVE_MISSING_STOP_PERCENT: &str = "ARCHIVE_MISSING_STOP_PERCENT";
pub(crate) const ARCHIVE_MAX_ATTEMPTS: &str = "ARCHIVE_MAX_ATTEMPTS";
pub(crate) const ARCHIVE_FS_ROOT: &str = "ARCHIVE_FS_ROOT";
pub(crate) const ARCHIVE_ENDPOINT: &str = "ARCHIVE_ENDPOINT";
pub(crate) const ARCHIVE_REGION: &str = "ARCHIVE_REGION";
pub(crate) const ARCHIVE_CHECKSUM: &str = "ARCHIVE_CHECKSUM";
pub(crate) const ARCHIVE_ACCESS_KEY_ID: &str = "ARCHIVE_ACCESS_KEY_ID";
pub(crate) const ARCHIVE_SECRET_ACCESS_KEY: &str = "ARCHIVE_SECRET_ACCESS_KEY";
pub(crate) const HOT_STORE: &str = "HOT_STORE";
pub(crate) const HOT_FS_ROOT: &str = "HOT_FS_ROOT";
pub(crate) const HOT_S3_ENDPOINT: &str = "HOT_S3_ENDPOINT";
pub(crate) const HOT_S3_REGION: &str = "HOT_S3_REGION";
pub(crate) const HOT_S3_ACCESS_KEY_ID: &str = "HOT_S3_ACCESS_KEY_ID";
pub(crate) const HOT_S3_SECRET_ACCESS_KEY: &str = "HOT_S3_SECRET_ACCESS_KEY";
pub(crate) const SUPABASE_URL: &str = "SUPABASE_URL";
pub(crate) const SUPABASE_SERVICE_ROLE_KEY: &str = "SUPABASE_SERVICE_ROLE_KEY";
pub(crate) const SUPABASE_SECRET_KEY: &str = "SUPABASE_SECRET_KEY";
pub(crate) const SUPABASE_PUBLISHABLE_KEY: &str = "SUPABASE_PUBLISHABLE_KEY";

pub(crate) const DEFAULT_RETENTION_JOBS: &str = "3";
pub(crate) const DEFAULT_INTERVAL: &str = "1m";
pub(crate) const DEFAULT_BATCH_SIZE: &str = "50";
pub(crate) const DEFAULT_CONCURRENCY: &str = "5";
pub(crate) const DEFAULT_BLOB_TIMEOUT: &str = "5m";
pub(crate) const DEFAULT_STREAM_THRESHOLD: &str = "8388608";
/// A threshold above any blob: nothing streams.
pub(crate) const MAX_STREAM_THRESHOLD: u64 = 1 << 50;
pub(crate) const DEFAULT_LEASE: &str = "1m";
pub(crate) const DEFAULT_VERIFY: &str = "auto";
pub(crate) const DEFAULT_LOST_AFTER: &str = "1h";
pub(crate) const DEFAULT_MISSING_STOP_COUNT: &str = "10";
pub(crate) const DEFAULT_MISSING_STOP_PERCENT: &str = "10";
pub(crate) const DEFAULT_MAX_ATTEMPTS: &str = "5";
/// Where start-up probe objects go; see [`crate::store::probe`].
pub const DEFAULT_PROBE_PREFIX: &str = ".coldsweep-probe";
pub(crate) const DEFAULT_REGION: &str = "auto";
pub(crate) const DEFAULT_HOT_STORE: &str = "fs";
pub(crate) const DEFAULT_HOT_FS_ROOT: &str = "./hot";

/// Where a variable is listed in `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The cold store and the cold keys.
    Cold,
    /// How the archiver sweeps.
    Archiver,
    /// The hot store.
    Hot,
}

impl Group {
    /// The `--help` heading.
    pub fn heading(self) -> &'static str {
        match self {
            Group::Cold => "Cold store",
            Group::Archiver => "Archiver",
            Group::Hot => "Hot store",
        }
    }
}

/// One configuration variable: the environment variable, its flag, its
/// default, its `--help` line and its README row. [`VARIABLES`] is the one
/// list the CLI flags, `--help`, the environment lookup and the README's
/// configuration table come from ([`Variable::readme_row`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variable {
    /// Environment variable name.
    pub name: &'static str,
    /// Long flag, without the leading `--`.
    pub flag: &'static str,
    /// Placeholder for the value in `--help` (`N`, `URL`, …).
    pub value_name: &'static str,
    /// `--help` section.
    pub group: Group,
    /// Value used when unset or empty; `None` when there is no default
    /// (the variable is optional or required, as `help` says).
    pub default: Option<&'static str>,
    /// One-line description, for `--help`.
    pub help: &'static str,
    /// The README's fuller description (Markdown), for its configuration table.
    pub doc: &'static str,
    /// The README's default cell when it says more than the default itself
    /// (`— (off)`, `by provider`); `None` shows the default or `—`.
    pub readme_default: Option<&'static str>,
    /// Whether the value is a secret: never print it.
    pub secret: bool,
    /// Whether `--help` hides the value found in the environment: secrets
    /// and access key ids (half a credential).
    pub hide_value: bool,
}

/// A variable whose value is not a secret.
const fn var(
    name: &'static str,
    flag: &'static str,
    value_name: &'static str,
    group: Group,
    default: Option<&'static str>,
    help: &'static str,
) -> Variable {
    Variable {
        name,
        flag,
        value_name,
        group,
        default,
        help,
        doc: "",
        readme_default: None,
        secret: false,
        hide_value: false,
    }
}

impl Variable {
    /// The variable's row in the README's configuration table:
    /// `` | `NAME` | `--flag` | default | description | ``.
    pub fn readme_row(&self) -> String {
        let default = match (self.readme_default, self.default) {
            (Some(cell), _) => cell.to_owned(),
            (None, Some(value)) => format!("`{value}`"),
            (None, None) => "—".to_owned(),
        };
        format!(
            "| `{}` | `--{}` | {default} | {} |",
            self.name, self.flag, self.doc
        )
    }
}

/// A variable whose value is a secret.
const fn secret(
    name: &'static str,
    flag: &'static str,
    value_name: &'static str,
    group: Group,
    help: &'static str,
) -> Variable {
    Variable {
        secret: true,
        hide_value: true,
        ..var(name, flag, value_name, group, None, help)
    }
}

/// Every variable coldsweep reads, in `--help` order.
pub const VARIABLES: &[Variable] = &[
    Variable {
        doc: "cold backend: `r2`, `s3`, `b2`, `minio`, `gcs`, `supabase-s3`, `fs`; picks the provider's profile (region, checksum, how copies are proven — see [Providers](#providers)); recorded in `tasks.html_archive_provider`",
        readme_default: Some("— (off)"),
        ..var(
            ARCHIVE_PROVIDER,
            "provider",
            "NAME",
            Group::Cold,
            None,
            "cold provider: r2, s3, b2, minio, gcs, supabase-s3 or fs; archiving is off when unset",
        )
    },
    Variable {
        doc: "cold bucket",
        readme_default: Some("— (off)"),
        ..var(
            ARCHIVE_BUCKET,
            "bucket",
            "BUCKET",
            Group::Cold,
            None,
            "cold bucket (S3 naming rules); archiving is off when unset",
        )
    },
    Variable {
        doc: "S3 endpoint URL; required except for `s3` (AWS) and `fs`",
        ..var(
            ARCHIVE_ENDPOINT,
            "endpoint",
            "URL",
            Group::Cold,
            None,
            "cold S3 endpoint URL (http or https); required except for s3, where unset means AWS",
        )
    },
    Variable {
        doc: "signing region: `auto` for `r2`, `gcs` and `s3` with an endpoint; `us-east-1` for `minio`; read from the endpoint for `b2`; required for AWS (`s3` without an endpoint: the bucket's region) and `supabase-s3` (the project's region)",
        readme_default: Some("by provider"),
        ..var(
            ARCHIVE_REGION,
            "region",
            "REGION",
            Group::Cold,
            None,
            "cold S3 signing region; default by provider: auto (r2, gcs, s3 with an endpoint), us-east-1 (minio), from the endpoint (b2); required for AWS and supabase-s3",
        )
    },
    Variable {
        doc: "checksum every upload carries for the store to check: `md5` (`Content-MD5`; every provider but `supabase-s3`) or `none` (`supabase-s3`, which ignores it); with `none`, copies are always read back",
        readme_default: Some("by provider"),
        ..var(
            ARCHIVE_CHECKSUM,
            "checksum",
            "MODE",
            Group::Cold,
            None,
            "upload checksum: md5 (Content-MD5, checked by the store) or none; default by provider: none for supabase-s3, else md5",
        )
    },
    Variable {
        hide_value: true,
        doc: "required except for `fs`",
        ..var(
            ARCHIVE_ACCESS_KEY_ID,
            "access-key-id",
            "ID",
            Group::Cold,
            None,
            "cold S3 access key id; required unless ARCHIVE_PROVIDER=fs",
        )
    },
    Variable {
        doc: "required except for `fs`; never logged",
        ..secret(
            ARCHIVE_SECRET_ACCESS_KEY,
            "secret-access-key",
            "SECRET",
            Group::Cold,
            "cold S3 secret access key; required unless ARCHIVE_PROVIDER=fs",
        )
    },
    Variable {
        doc: "folder of the `fs` cold store (buckets are sub-folders)",
        ..var(
            ARCHIVE_FS_ROOT,
            "fs-root",
            "DIR",
            Group::Cold,
            None,
            "cold folder; required when ARCHIVE_PROVIDER=fs",
        )
    },
    Variable {
        doc: "prefix for every cold key (trimmed of `/`), e.g. one per preview deployment",
        ..var(
            ARCHIVE_PATH_PREFIX,
            "path-prefix",
            "PREFIX",
            Group::Cold,
            None,
            "prefix in front of every cold key, e.g. preview-42 (surrounding '/' trimmed)",
        )
    },
    Variable {
        doc: "folder, under `ARCHIVE_PATH_PREFIX`, where the start-up check writes and deletes its probe object; must not be `jobs` (the archive's own layout)",
        ..var(
            ARCHIVE_PROBE_PREFIX,
            "probe-prefix",
            "PREFIX",
            Group::Cold,
            Some(DEFAULT_PROBE_PREFIX),
            "folder (under ARCHIVE_PATH_PREFIX) where the start-up check writes and deletes its probe object",
        )
    },
    Variable {
        doc: "newest terminal jobs per (domain, organisation) kept hot",
        ..var(
            ARCHIVE_RETENTION_JOBS,
            "retention-jobs",
            "N",
            Group::Archiver,
            Some(DEFAULT_RETENTION_JOBS),
            "newest finished jobs per domain and organisation kept hot (0 or more)",
        )
    },
    Variable {
        doc: "most bytes the catalog may account for in hot storage (the `html_compressed_size_bytes` of every row with a hot path; a NULL size counts 0): while it is exceeded after retention, the oldest finished jobs move too, even among the newest `ARCHIVE_RETENTION_JOBS` — see [Archive rules](#archive-rules); `800MB`, `1.5GiB` or a number of bytes (kB, MB, GB, TB = 1000ⁿ; KiB, MiB, GiB, TiB = 1024ⁿ)",
        readme_default: Some("— (no quota)"),
        ..var(
            ARCHIVE_HOT_QUOTA,
            "hot-quota",
            "SIZE",
            Group::Archiver,
            None,
            "most hot bytes the catalog may account for: the oldest finished jobs move, beyond retention, until the rest fits; e.g. 800MB, 1.5GiB, 500000000 (unset: no quota)",
        )
    },
    Variable {
        doc: "no job finished (or restored) more recently than this moves, by retention or quota; a duration such as `12h` or `30d`; `0` means no minimum",
        readme_default: Some("— (none)"),
        ..var(
            ARCHIVE_MIN_AGE,
            "min-age",
            "DURATION",
            Group::Archiver,
            None,
            "no job finished or restored more recently than this moves, e.g. 12h or 30d (unset or 0: no minimum)",
        )
    },
    Variable {
        doc: "pause between sweeps",
        ..var(
            ARCHIVE_INTERVAL,
            "interval",
            "DURATION",
            Group::Archiver,
            Some(DEFAULT_INTERVAL),
            "time between sweeps, e.g. 30s, 1m30s, 2h, or a number of seconds",
        )
    },
    Variable {
        doc: "candidates claimed at a time (1–10000)",
        ..var(
            ARCHIVE_BATCH_SIZE,
            "batch-size",
            "N",
            Group::Archiver,
            Some(DEFAULT_BATCH_SIZE),
            "blobs claimed per source per sweep (1 to 10000)",
        )
    },
    Variable {
        doc: "blobs moved at once (1–256)",
        ..var(
            ARCHIVE_CONCURRENCY,
            "concurrency",
            "N",
            Group::Archiver,
            Some(DEFAULT_CONCURRENCY),
            "blobs moved at once (1 to 256)",
        )
    },
    Variable {
        doc: "time limit for moving one blob, retries included (their back-off scales with it: 5m gives about 1 s to 30 s)",
        ..var(
            ARCHIVE_BLOB_TIMEOUT,
            "blob-timeout",
            "DURATION",
            Group::Archiver,
            Some(DEFAULT_BLOB_TIMEOUT),
            "time limit for moving one blob",
        )
    },
    Variable {
        doc: "blobs larger than this many bytes (the catalog's `html_compressed_size_bytes`, else the read's answer) stream from hot to cold — S3 multipart in 8 MiB parts, hashed and checked against the catalog on the way — instead of being held in memory; at most 2 stream at once per process (~25 MiB each), so memory stays flat whatever the blob size; `0` streams every blob",
        readme_default: Some("`8388608` (8 MiB)"),
        ..var(
            ARCHIVE_STREAM_THRESHOLD,
            "stream-threshold",
            "BYTES",
            Group::Archiver,
            Some(DEFAULT_STREAM_THRESHOLD),
            "blobs larger than this many bytes stream from hot to cold (multipart upload) instead of being held in memory; at most 2 stream at once, ~25 MiB each",
        )
    },
    Variable {
        doc: "how long a claim hides a row from other workers if this one dies; a live worker renews its claims every third of it, so it need not cover a slow blob or a big batch (at least `2s`)",
        ..var(
            ARCHIVE_LEASE,
            "lease",
            "DURATION",
            Group::Archiver,
            Some(DEFAULT_LEASE),
            "how long a dead worker's claim hides a blob from other workers (a live worker renews its claims every third of it); at least 2s",
        )
    },
    Variable {
        doc: "how a cold copy is proven before the hot one is deleted: `auto` (size + the store's MD5 ETag, which the upload's Content-MD5 made it check, + our recorded SHA-256; read back and hashed where the provider's profile does not make the ETag proof — `b2`, `gcs`, `supabase-s3`, `ARCHIVE_CHECKSUM=none` — or the store reports no MD5) or `read-back` (always download and compare SHA-256)",
        ..var(
            ARCHIVE_VERIFY,
            "verify",
            "MODE",
            Group::Archiver,
            Some(DEFAULT_VERIFY),
            "how a cold copy is proven: auto (the store's MD5 ETag where its profile trusts it, else read back) or read-back (always)",
        )
    },
    Variable {
        doc: "a blob in neither store is first only `missing`; a sweep at least this long later that still finds nothing, both stores proven, records it `lost`",
        ..var(
            ARCHIVE_LOST_AFTER,
            "lost-after",
            "DURATION",
            Group::Archiver,
            Some(DEFAULT_LOST_AFTER),
            "a blob missing from both stores is first only suspected (state missing); a sweep at least this long later that finds it still missing, both stores healthy, records it lost",
        )
    },
    Variable {
        doc: "a sweep in which more than this many blobs look missing, and more than `ARCHIVE_MISSING_STOP_PERCENT` of those it tried, stops and records nothing",
        ..var(
            ARCHIVE_MISSING_STOP_COUNT,
            "missing-stop-count",
            "N",
            Group::Archiver,
            Some(DEFAULT_MISSING_STOP_COUNT),
            "a sweep in which more than this many blobs look missing, and more than ARCHIVE_MISSING_STOP_PERCENT of those it tried, stops and records nothing (a wrong setting, not loss)",
        )
    },
    Variable {
        doc: "the share (0–100) of the blobs a sweep tried that may look missing before it stops",
        ..var(
            ARCHIVE_MISSING_STOP_PERCENT,
            "missing-stop-percent",
            "PERCENT",
            Group::Archiver,
            Some(DEFAULT_MISSING_STOP_PERCENT),
            "the share (0 to 100) of the blobs a sweep tried that may look missing before it stops; see ARCHIVE_MISSING_STOP_COUNT",
        )
    },
    Variable {
        doc: "a blob refused this many times for a reason of its own, in sweeps where other blobs of its hot bucket moved, is quarantined (1–1000)",
        ..var(
            ARCHIVE_MAX_ATTEMPTS,
            "max-attempts",
            "N",
            Group::Archiver,
            Some(DEFAULT_MAX_ATTEMPTS),
            "a blob that fails this many times with the same kind of permanent error, while other blobs of its hot bucket move, is quarantined with the reason (1 to 1000)",
        )
    },
    Variable {
        doc: "hot backend: `fs`, `s3` or `supabase` (Supabase Storage's REST API)",
        ..var(
            HOT_STORE,
            "hot-store",
            "KIND",
            Group::Hot,
            Some(DEFAULT_HOT_STORE),
            "hot store kind: fs, s3 or supabase (Supabase Storage's REST API)",
        )
    },
    Variable {
        doc: "existing folder of the `fs` hot store (never created: a missing one is a bad setting); the catalog's `html_storage_bucket` is a sub-folder",
        ..var(
            HOT_FS_ROOT,
            "hot-fs-root",
            "DIR",
            Group::Hot,
            Some(DEFAULT_HOT_FS_ROOT),
            "hot folder when HOT_STORE=fs; buckets are sub-folders",
        )
    },
    Variable {
        doc: "S3 endpoint of the hot store",
        readme_default: Some("— (AWS)"),
        ..var(
            HOT_S3_ENDPOINT,
            "hot-s3-endpoint",
            "URL",
            Group::Hot,
            None,
            "hot S3 endpoint URL (http or https); unset means AWS",
        )
    },
    Variable {
        doc: "signing region of the hot store; the bucket's region when there is no endpoint (AWS)",
        ..var(
            HOT_S3_REGION,
            "hot-s3-region",
            "REGION",
            Group::Hot,
            Some(DEFAULT_REGION),
            "hot S3 signing region; the bucket's region when HOT_S3_ENDPOINT is unset (AWS)",
        )
    },
    Variable {
        hide_value: true,
        doc: "required for `HOT_STORE=s3`",
        ..var(
            HOT_S3_ACCESS_KEY_ID,
            "hot-s3-access-key-id",
            "ID",
            Group::Hot,
            None,
            "hot S3 access key id; required when HOT_STORE=s3",
        )
    },
    Variable {
        doc: "required for `HOT_STORE=s3`; never logged",
        ..secret(
            HOT_S3_SECRET_ACCESS_KEY,
            "hot-s3-secret-access-key",
            "SECRET",
            Group::Hot,
            "hot S3 secret access key; required when HOT_STORE=s3",
        )
    },
    Variable {
        doc: "project URL `https://<project-ref>.supabase.co` (the API is under `/storage/v1`); required for `HOT_STORE=supabase`",
        ..var(
            SUPABASE_URL,
            "supabase-url",
            "URL",
            Group::Hot,
            None,
            "Supabase project URL, e.g. https://<ref>.supabase.co; required when HOT_STORE=supabase",
        )
    },
    Variable {
        doc: "the `service_role` key or a secret key (`sb_secret_…`), sent as `Authorization: Bearer`; required for `HOT_STORE=supabase` (any other key — publishable, `anon`, a user's `authenticated` token — is refused: Row Level Security would make every blob look missing); never logged",
        ..secret(
            SUPABASE_SERVICE_ROLE_KEY,
            "supabase-service-role-key",
            "KEY",
            Group::Hot,
            "Supabase service_role or secret (sb_secret_...) key; required when HOT_STORE=supabase",
        )
    },
    Variable {
        doc: "the same setting under its other name; if both are set they must be equal",
        ..secret(
            SUPABASE_SECRET_KEY,
            "supabase-secret-key",
            "KEY",
            Group::Hot,
            "another name for SUPABASE_SERVICE_ROLE_KEY; if both are set they must be equal",
        )
    },
    Variable {
        doc: "publishable (or `anon`) key for the `apikey` header; unset, the secret key is sent there. With an `sb_secret_…` key the secret key is always sent there, as Supabase requires",
        ..secret(
            SUPABASE_PUBLISHABLE_KEY,
            "supabase-publishable-key",
            "KEY",
            Group::Hot,
            "Supabase publishable (or anon) key for the apikey header; unset: the secret key is sent",
        )
    },
];

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::tests::*;
    use crate::config::{ColdConfig, Config, HotConfig, Provider};

    /// Runs every parser over `pairs` and records the names looked up.
    fn read_names(pairs: &[(&str, &str)]) -> BTreeSet<String> {
        let seen = RefCell::new(BTreeSet::new());
        let inner = env(pairs);
        let lookup = |name: &str| {
            seen.borrow_mut().insert(name.to_owned());
            inner(name)
        };
        let _ = Config::from_lookup(lookup);
        for p in Provider::ALL {
            let _ = ColdConfig::from_lookup(p, lookup);
        }
        let _ = HotConfig::from_lookup(lookup);
        seen.into_inner()
    }

    #[test]
    fn every_variable_has_a_readme_row() {
        for var in VARIABLES {
            let name = var.name;
            assert!(!var.doc.is_empty(), "{name}: no README description");
            assert!(!var.doc.contains(['|', '\n']), "{name}: breaks the table");
            // A default cell that says more still starts with what is read.
            if let Some(cell) = var.readme_default {
                match var.default {
                    Some(value) => assert!(cell.starts_with(&format!("`{value}`")), "{name}"),
                    None => assert!(cell.starts_with('—') || cell == "by provider", "{name}"),
                }
            }
        }
    }

    #[test]
    fn variables_table_matches_the_parsers() {
        let listed: BTreeSet<String> = VARIABLES.iter().map(|v| v.name.to_owned()).collect();
        assert_eq!(listed.len(), VARIABLES.len(), "duplicate names");

        let mut read = read_names(&[MINIMAL, &s3_cold()].concat());
        read.extend(read_names(HOT_S3));
        read.extend(read_names(HOT_SUPABASE));
        assert_eq!(read, listed, "read by the parsers vs listed in VARIABLES");

        for v in VARIABLES {
            assert!(!v.help.is_empty() && !v.help.contains('\n'), "{}", v.name);
            let looks_secret = v.name.contains("SECRET") || v.name.ends_with("_KEY");
            assert_eq!(v.secret, looks_secret, "{}", v.name);
        }
    }

    #[test]
    fn variables_table_defaults_are_the_real_defaults() {
        type Snapshot = (Option<Config>, ColdConfig, HotConfig);
        let snapshot = |pairs: &[(&str, &str)]| -> Snapshot {
            (
                config(pairs).unwrap(),
                cold(Provider::R2, pairs).unwrap(),
                hot(pairs).unwrap(),
            )
        };
        let cold_base = [MINIMAL, &s3_cold()].concat();
        let hot_s3_base = [&cold_base[..], HOT_S3].concat();
        let mut checked = 0;
        for v in VARIABLES {
            let Some(default) = v.default else { continue };
            for base in [&cold_base, &hot_s3_base] {
                if base.iter().any(|(k, _)| *k == v.name) {
                    continue;
                }
                assert_eq!(
                    snapshot(&with(base, v.name, default)),
                    snapshot(base),
                    "{} default {default:?}",
                    v.name
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "{checked}");
    }
}
