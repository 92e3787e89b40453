//! The variables coldsweep reads: names, defaults and the [`VARIABLES`] table.
//!
//! The parsers and `VARIABLES` share these constants so the `--help` table
//! cannot drift from what is actually read.

pub(crate) const ARCHIVE_PROVIDER: &str = "ARCHIVE_PROVIDER";
pub(crate) const ARCHIVE_BUCKET: &str = "ARCHIVE_BUCKET";
pub(crate) const ARCHIVE_RETENTION_JOBS: &str = "ARCHIVE_RETENTION_JOBS";
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

/// One configuration variable, for `--help` text and documentation checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variable {
    /// Environment variable name.
    pub name: &'static str,
    /// Value used when unset or empty; `None` when there is no default
    /// (the variable is optional or required, as `help` says).
    pub default: Option<&'static str>,
    /// One-line description.
    pub help: &'static str,
    /// Whether the value is a secret: never print it.
    pub secret: bool,
}

const fn var(name: &'static str, default: Option<&'static str>, help: &'static str) -> Variable {
    Variable {
        name,
        default,
        help,
        secret: false,
    }
}

/// Every variable coldsweep reads, in `--help` order.
pub const VARIABLES: &[Variable] = &[
    var(
        ARCHIVE_PROVIDER,
        None,
        "cold provider: r2, s3, b2, minio, gcs, supabase-s3 or fs; archiving is off when unset",
    ),
    var(
        ARCHIVE_BUCKET,
        None,
        "cold bucket (S3 naming rules); archiving is off when unset",
    ),
    var(
        ARCHIVE_RETENTION_JOBS,
        Some(DEFAULT_RETENTION_JOBS),
        "newest finished jobs per domain and organisation kept hot (0 or more)",
    ),
    var(
        ARCHIVE_INTERVAL,
        Some(DEFAULT_INTERVAL),
        "time between sweeps, e.g. 30s, 1m30s, 2h, or a number of seconds",
    ),
    var(
        ARCHIVE_BATCH_SIZE,
        Some(DEFAULT_BATCH_SIZE),
        "blobs claimed per source per sweep (1 to 10000)",
    ),
    var(
        ARCHIVE_CONCURRENCY,
        Some(DEFAULT_CONCURRENCY),
        "blobs moved at once (1 to 256)",
    ),
    var(
        ARCHIVE_PATH_PREFIX,
        None,
        "prefix in front of every cold key, e.g. preview-42 (surrounding '/' trimmed)",
    ),
    var(
        ARCHIVE_BLOB_TIMEOUT,
        Some(DEFAULT_BLOB_TIMEOUT),
        "time limit for moving one blob",
    ),
    var(
        ARCHIVE_STREAM_THRESHOLD,
        Some(DEFAULT_STREAM_THRESHOLD),
        "blobs larger than this many bytes stream from hot to cold (multipart upload) instead of being held in memory; at most 2 stream at once, ~25 MiB each",
    ),
    var(
        ARCHIVE_LEASE,
        Some(DEFAULT_LEASE),
        "how long a dead worker's claim hides a blob from other workers (a live worker renews its claims every third of it); at least 2s",
    ),
    var(
        ARCHIVE_VERIFY,
        Some(DEFAULT_VERIFY),
        "how a cold copy is proven: auto (the store's MD5 ETag where its profile trusts it, else read back) or read-back (always)",
    ),
    var(
        ARCHIVE_LOST_AFTER,
        Some(DEFAULT_LOST_AFTER),
        "a blob missing from both stores is first only suspected (state missing); a sweep at least this long later that finds it still missing, both stores healthy, records it lost",
    ),
    var(
        ARCHIVE_MISSING_STOP_COUNT,
        Some(DEFAULT_MISSING_STOP_COUNT),
        "a sweep in which more than this many blobs look missing, and more than ARCHIVE_MISSING_STOP_PERCENT of those it tried, stops and records nothing (a wrong setting, not loss)",
    ),
    var(
        ARCHIVE_MISSING_STOP_PERCENT,
        Some(DEFAULT_MISSING_STOP_PERCENT),
        "the share (0 to 100) of the blobs a sweep tried that may look missing before it stops; see ARCHIVE_MISSING_STOP_COUNT",
    ),
    var(
        ARCHIVE_MAX_ATTEMPTS,
        Some(DEFAULT_MAX_ATTEMPTS),
        "a blob that fails this many times with the same kind of permanent error, while other blobs of its hot bucket move, is quarantined with the reason (1 to 1000)",
    ),
    var(
        ARCHIVE_PROBE_PREFIX,
        Some(DEFAULT_PROBE_PREFIX),
        "folder (under ARCHIVE_PATH_PREFIX) where the start-up check writes and deletes its probe object",
    ),
    var(
        ARCHIVE_FS_ROOT,
        None,
        "cold folder; required when ARCHIVE_PROVIDER=fs",
    ),
    var(
        ARCHIVE_ENDPOINT,
        None,
        "cold S3 endpoint URL (http or https); required except for s3, where unset means AWS",
    ),
    var(
        ARCHIVE_REGION,
        None,
        "cold S3 signing region; default by provider: auto (r2, gcs, s3 with an endpoint), us-east-1 (minio), from the endpoint (b2); required for AWS and supabase-s3",
    ),
    var(
        ARCHIVE_CHECKSUM,
        None,
        "upload checksum: md5 (Content-MD5, checked by the store) or none; default by provider: none for supabase-s3, else md5",
    ),
    var(
        ARCHIVE_ACCESS_KEY_ID,
        None,
        "cold S3 access key id; required unless ARCHIVE_PROVIDER=fs",
    ),
    Variable {
        secret: true,
        ..var(
            ARCHIVE_SECRET_ACCESS_KEY,
            None,
            "cold S3 secret access key; required unless ARCHIVE_PROVIDER=fs",
        )
    },
    var(
        HOT_STORE,
        Some(DEFAULT_HOT_STORE),
        "hot store kind: fs, s3 or supabase (Supabase Storage's REST API)",
    ),
    var(
        HOT_FS_ROOT,
        Some(DEFAULT_HOT_FS_ROOT),
        "hot folder when HOT_STORE=fs; buckets are sub-folders",
    ),
    var(
        HOT_S3_ENDPOINT,
        None,
        "hot S3 endpoint URL (http or https); unset means AWS",
    ),
    var(
        HOT_S3_REGION,
        Some(DEFAULT_REGION),
        "hot S3 signing region; the bucket's region when HOT_S3_ENDPOINT is unset (AWS)",
    ),
    var(
        HOT_S3_ACCESS_KEY_ID,
        None,
        "hot S3 access key id; required when HOT_STORE=s3",
    ),
    Variable {
        secret: true,
        ..var(
            HOT_S3_SECRET_ACCESS_KEY,
            None,
            "hot S3 secret access key; required when HOT_STORE=s3",
        )
    },
    var(
        SUPABASE_URL,
        None,
        "Supabase project URL, e.g. https://<ref>.supabase.co; required when HOT_STORE=supabase",
    ),
    Variable {
        secret: true,
        ..var(
            SUPABASE_SERVICE_ROLE_KEY,
            None,
            "Supabase service_role or secret (sb_secret_...) key; required when HOT_STORE=supabase",
        )
    },
    Variable {
        secret: true,
        ..var(
            SUPABASE_SECRET_KEY,
            None,
            "another name for SUPABASE_SERVICE_ROLE_KEY; if both are set they must be equal",
        )
    },
    Variable {
        secret: true,
        ..var(
            SUPABASE_PUBLISHABLE_KEY,
            None,
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
