//! Configuration: the archiver's [`Config`], and the stores' settings read
//! from variables.
//!
//! Every value comes from one pure function over a variable lookup
//! ([`Config::from_lookup`], [`ColdConfig::from_lookup`],
//! [`HotConfig::from_lookup`]) so that environment, flags and tests share one
//! parser; the `from_env` constructors only plug in the process environment.
//! Each store owns its settings type and checks its values once
//! ([`S3Config::build`], [`SupabaseConfig::build`], [`FsConfig::build`]);
//! here they are only read from variables and handed over with the
//! variables' names for messages.
//! A bad value is a clear [`ErrorKind::InvalidInput`](crate::ErrorKind) error
//! naming the variable, what was expected and what was given — except for
//! secrets, whose values never appear in messages or `Debug` output.
//!
//! [`VARIABLES`] lists every variable with its flag, default, one-line
//! description and README description: the binary builds its flags and
//! `--help` from it, and the README's configuration rows are rendered from it
//! ([`Variable::readme_row`]; a test holds the README to them).
//!
//! Values are trimmed of surrounding whitespace, and an empty value counts as
//! unset, so `ARCHIVE_BUCKET=` in a `.env` file behaves like no line at all.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyPrefix, ObjectKey};
use crate::rules::Rules;
pub use crate::store::fs::{FsConfig, FsSettings};
use crate::store::profile::Profile;
pub use crate::store::profile::{ChecksumMode, Provider};
use crate::store::s3::ENDPOINT_EXPECTED;
pub use crate::store::s3::{S3Config, S3Names, S3Settings};
use crate::store::supabase::URL_EXPECTED as SUPABASE_URL_EXPECTED;
pub use crate::store::supabase::{SupabaseConfig, SupabaseNames, SupabaseSettings};
pub use crate::store::{ColdConfig, HotConfig, Secret};

pub mod file;
mod parse;
mod variables;

pub use file::ConfigFile;

use parse::*;
// Source declarations read sizes and ages as the settings do.
pub(crate) use parse::{parse_min_age, parse_size};
pub(crate) use variables::*;
pub use variables::{DEFAULT_PROBE_PREFIX, Group, VARIABLES, Variable};

const MAX_BATCH_SIZE: u64 = 10_000;
/// Shortest `ARCHIVE_LEASE`: a third of it is the heartbeat's period, which
/// must stay well above a catalog round trip.
const MIN_LEASE: Duration = Duration::from_secs(2);
const MAX_CONCURRENCY: u64 = 256;

/// How the archiver behaves: what to move, how often, how hard.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Cold provider (`ARCHIVE_PROVIDER`).
    pub provider: Provider,
    /// Cold bucket (`ARCHIVE_BUCKET`).
    pub bucket: String,
    /// Newest terminal jobs per (domain, organisation) kept hot (`ARCHIVE_RETENTION_JOBS`).
    pub retention_jobs: u32,
    /// Time between sweeps (`ARCHIVE_INTERVAL`).
    pub interval: Duration,
    /// Candidates claimed per source per sweep (`ARCHIVE_BATCH_SIZE`).
    pub batch_size: usize,
    /// Blobs moved at once (`ARCHIVE_CONCURRENCY`).
    pub concurrency: usize,
    /// Prefix in front of every cold key (`ARCHIVE_PATH_PREFIX`).
    pub path_prefix: KeyPrefix,
    /// Time limit for moving one blob (`ARCHIVE_BLOB_TIMEOUT`).
    pub blob_timeout: Duration,
    /// Blobs larger than this many bytes stream from hot to cold rather
    /// than being held whole (`ARCHIVE_STREAM_THRESHOLD`).
    pub stream_threshold: u64,
    /// How long a claim hides a row from other workers if its worker dies
    /// (`ARCHIVE_LEASE`); a live worker renews its claims every third of it.
    pub lease: Duration,
    /// How a cold copy is proven identical before the hot copy goes (`ARCHIVE_VERIFY`).
    pub verify: VerifyMode,
    /// Folder, under `path_prefix`, where the start-up check writes, reads
    /// back and deletes its probe object (`ARCHIVE_PROBE_PREFIX`); never
    /// inside the archive's own `jobs/` layout.
    pub probe_prefix: ObjectKey,
    /// How long a blob stays only suspected missing before a later sweep
    /// that still cannot find it records it lost (`ARCHIVE_LOST_AFTER`).
    pub lost_after: Duration,
    /// Missing blobs a sweep accepts before the share test applies
    /// (`ARCHIVE_MISSING_STOP_COUNT`).
    pub missing_stop_count: u64,
    /// Percent of the blobs tried that may look missing before a sweep
    /// stops (`ARCHIVE_MISSING_STOP_PERCENT`).
    pub missing_stop_percent: u8,
    /// Permanent failures of one blob before it is quarantined (`ARCHIVE_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Most hot bytes the catalog may account for after a sweep; `None`: no
    /// quota (`ARCHIVE_HOT_QUOTA`). See [`crate::rules`].
    pub hot_quota: Option<u64>,
    /// No job whose job time is more recent than this moves; `None`: no
    /// minimum (`ARCHIVE_MIN_AGE`).
    pub min_age: Option<Duration>,
}

/// How the archiver proves a cold copy identical to the hot bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyMode {
    /// Trust the store's report where it is proof: size, an MD5 ETag equal to
    /// the MD5 the upload's Content-MD5 made the store check, and the
    /// recorded SHA-256 — only on a store whose profile says its ETag is that
    /// proof ([`Store::etag_proves_md5`](crate::store::Store::etag_proves_md5));
    /// otherwise read the copy back and hash it.
    #[default]
    Auto,
    /// Always read the copy back and compare its SHA-256 (one more download per blob).
    ReadBack,
}

impl VerifyMode {
    /// `auto` or `read-back`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Auto => "auto",
            VerifyMode::ReadBack => "read-back",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            provider: Provider::R2,
            bucket: String::new(),
            retention_jobs: 3,
            interval: Duration::from_secs(60),
            batch_size: 50,
            concurrency: 5,
            path_prefix: KeyPrefix::none(),
            blob_timeout: Duration::from_secs(300),
            stream_threshold: 8 * 1024 * 1024,
            lease: Duration::from_secs(60),
            verify: VerifyMode::Auto,
            probe_prefix: ObjectKey::new(DEFAULT_PROBE_PREFIX)
                .expect("the default probe prefix is a valid key"),
            lost_after: Duration::from_secs(3600),
            missing_stop_count: 10,
            missing_stop_percent: 10,
            max_attempts: 5,
            hot_quota: None,
            min_age: None,
        }
    }
}

impl Config {
    /// Read the archiver settings through `lookup` (a variable name → value).
    ///
    /// `Ok(None)` when `ARCHIVE_PROVIDER` or `ARCHIVE_BUCKET` is unset or
    /// empty: archiving is switched off, and nothing else is checked.
    /// Otherwise every variable is validated and the first bad one is an
    /// [`ErrorKind::InvalidInput`] error naming it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Config>> {
        let vars = Vars(lookup);
        let (Some(provider), Some(bucket)) = (vars.get(ARCHIVE_PROVIDER), vars.get(ARCHIVE_BUCKET))
        else {
            return Ok(None);
        };
        let provider = provider
            .parse::<Provider>()
            .map_err(|e| e.context(ARCHIVE_PROVIDER))?;
        let bucket = parse_bucket(&bucket)?;

        let retention_jobs = parse_whole(
            ARCHIVE_RETENTION_JOBS,
            &vars.or_default(ARCHIVE_RETENTION_JOBS, DEFAULT_RETENTION_JOBS),
            0,
            u64::from(u32::MAX),
        )?;
        let interval = parse_duration(
            ARCHIVE_INTERVAL,
            &vars.or_default(ARCHIVE_INTERVAL, DEFAULT_INTERVAL),
        )?;
        let batch_size = parse_whole(
            ARCHIVE_BATCH_SIZE,
            &vars.or_default(ARCHIVE_BATCH_SIZE, DEFAULT_BATCH_SIZE),
            1,
            MAX_BATCH_SIZE,
        )?;
        let concurrency = parse_whole(
            ARCHIVE_CONCURRENCY,
            &vars.or_default(ARCHIVE_CONCURRENCY, DEFAULT_CONCURRENCY),
            1,
            MAX_CONCURRENCY,
        )?;
        let path_prefix = match vars.get(ARCHIVE_PATH_PREFIX) {
            Some(raw) => KeyPrefix::new(&raw).map_err(|e| e.context(ARCHIVE_PATH_PREFIX))?,
            None => KeyPrefix::none(),
        };
        let blob_timeout = parse_duration(
            ARCHIVE_BLOB_TIMEOUT,
            &vars.or_default(ARCHIVE_BLOB_TIMEOUT, DEFAULT_BLOB_TIMEOUT),
        )?;
        let stream_threshold = parse_whole(
            ARCHIVE_STREAM_THRESHOLD,
            &vars.or_default(ARCHIVE_STREAM_THRESHOLD, DEFAULT_STREAM_THRESHOLD),
            0,
            MAX_STREAM_THRESHOLD,
        )?;
        let lease = parse_duration(
            ARCHIVE_LEASE,
            &vars.or_default(ARCHIVE_LEASE, DEFAULT_LEASE),
        )?;
        // The heartbeat renews claims every third of a lease; a shorter one
        // would lose claims to one slow catalog round trip.
        if lease < MIN_LEASE {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{ARCHIVE_LEASE}: expected a duration of at least {}, got {}",
                    humantime::format_duration(MIN_LEASE),
                    humantime::format_duration(lease),
                ),
            ));
        }

        let verify = match vars
            .or_default(ARCHIVE_VERIFY, DEFAULT_VERIFY)
            .to_ascii_lowercase()
            .as_str()
        {
            "auto" => VerifyMode::Auto,
            "read-back" | "readback" => VerifyMode::ReadBack,
            other => return Err(invalid(ARCHIVE_VERIFY, "auto or read-back", other)),
        };
        let probe_prefix = parse_probe_prefix(
            &vars.or_default(ARCHIVE_PROBE_PREFIX, DEFAULT_PROBE_PREFIX),
            &path_prefix,
        )?;
        let lost_after = parse_duration(
            ARCHIVE_LOST_AFTER,
            &vars.or_default(ARCHIVE_LOST_AFTER, DEFAULT_LOST_AFTER),
        )?;
        let missing_stop_count = parse_whole(
            ARCHIVE_MISSING_STOP_COUNT,
            &vars.or_default(ARCHIVE_MISSING_STOP_COUNT, DEFAULT_MISSING_STOP_COUNT),
            0,
            u64::from(u32::MAX),
        )?;
        let missing_stop_percent = parse_whole(
            ARCHIVE_MISSING_STOP_PERCENT,
            &vars.or_default(ARCHIVE_MISSING_STOP_PERCENT, DEFAULT_MISSING_STOP_PERCENT),
            0,
            100,
        )?;
        let max_attempts = parse_whole(
            ARCHIVE_MAX_ATTEMPTS,
            &vars.or_default(ARCHIVE_MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
            1,
            1000,
        )?;

        let hot_quota = vars
            .get(ARCHIVE_HOT_QUOTA)
            .map(|raw| parse_size(ARCHIVE_HOT_QUOTA, &raw))
            .transpose()?;
        let min_age = match vars.get(ARCHIVE_MIN_AGE) {
            Some(raw) => parse_min_age(ARCHIVE_MIN_AGE, &raw)?,
            None => None,
        };

        Ok(Some(Config {
            provider,
            bucket,
            // The ranges above fit both types on every supported target.
            retention_jobs: retention_jobs as u32,
            interval,
            batch_size: batch_size as usize,
            concurrency: concurrency as usize,
            path_prefix,
            blob_timeout,
            stream_threshold,
            lease,
            verify,
            probe_prefix,
            lost_after,
            missing_stop_count,
            missing_stop_percent: missing_stop_percent as u8,
            max_attempts: max_attempts as u32,
            hot_quota,
            min_age,
        }))
    }

    /// The archive rules these settings give ([`crate::rules`]).
    pub fn rules(&self) -> Rules {
        Rules {
            retention_jobs: self.retention_jobs,
            hot_quota: self.hot_quota,
            min_age: self.min_age,
        }
    }

    /// Where probe objects go inside the bucket: `probe_prefix` under `path_prefix`.
    pub fn probe_key_prefix(&self) -> Result<ObjectKey> {
        match self.path_prefix.as_key() {
            Some(prefix) => prefix
                .join(self.probe_prefix.as_str())
                .map_err(|e| e.context(ARCHIVE_PROBE_PREFIX)),
            None => Ok(self.probe_prefix.clone()),
        }
    }

    /// [`Config::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Option<Config>> {
        Self::from_lookup(env_lookup)
    }
}

impl ColdConfig {
    /// Read the cold store's connection settings for `provider` through `lookup`.
    ///
    /// `fs` needs `ARCHIVE_FS_ROOT`. Every other provider needs
    /// `ARCHIVE_ACCESS_KEY_ID` and `ARCHIVE_SECRET_ACCESS_KEY`, and an
    /// `ARCHIVE_ENDPOINT` URL except `s3`, where no endpoint means AWS.
    /// An unset `ARCHIVE_REGION` takes the provider profile's default
    /// ([`Profile::default_region`](crate::store::profile::Profile::default_region)),
    /// and is an error where the profile has none.
    pub fn from_lookup(
        provider: Provider,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ColdConfig> {
        let vars = Vars(lookup);
        let when = format!("when {ARCHIVE_PROVIDER}={provider}");
        if provider == Provider::Fs {
            let root = vars.required(ARCHIVE_FS_ROOT, "a folder path", &when)?;
            let fs = FsConfig { root: root.into() };
            return Ok(ColdConfig::Fs(fs.build(ARCHIVE_FS_ROOT)?));
        }
        let endpoint = match vars.get(ARCHIVE_ENDPOINT) {
            Some(raw) => Some(raw),
            None if provider == Provider::S3 => None,
            None => return Err(missing(ARCHIVE_ENDPOINT, ENDPOINT_EXPECTED, &when)),
        };
        let profile = Profile::of(provider).expect("every provider but fs has a profile");
        let region = match vars.get(ARCHIVE_REGION) {
            Some(region) => region,
            None => profile
                .default_region(endpoint.as_deref())
                .ok_or_else(|| missing(ARCHIVE_REGION, profile.region_help, &when))?,
        };
        let checksum = vars
            .get(ARCHIVE_CHECKSUM)
            .map(|raw| match raw.to_ascii_lowercase().as_str() {
                "md5" | "content-md5" => Ok(ChecksumMode::ContentMd5),
                "none" => Ok(ChecksumMode::None),
                _ => Err(invalid(ARCHIVE_CHECKSUM, "md5 or none", &raw)),
            })
            .transpose()?;
        let access_key_id = vars.required(ARCHIVE_ACCESS_KEY_ID, "an access key id", &when)?;
        let secret = vars.required(ARCHIVE_SECRET_ACCESS_KEY, "a secret access key", &when)?;
        let s3 = S3Config {
            endpoint,
            region,
            access_key_id: Some(access_key_id),
            secret_access_key: Some(Secret::new(secret)),
            checksum,
        };
        Ok(ColdConfig::S3(s3.build(provider, &COLD_S3)?))
    }

    /// [`ColdConfig::from_lookup`] over the process environment.
    pub fn from_env(provider: Provider) -> Result<ColdConfig> {
        Self::from_lookup(provider, env_lookup)
    }
}

/// Check variable `name`'s value on its own, by the parser that reads it,
/// every other variable at a placeholder that parser accepts: a config file's
/// value is refused where it stands, with the parser's own message. Rules
/// between variables (a region the provider needs, the two names of the
/// Supabase key agreeing) are left to the reading of the whole configuration.
pub(crate) fn check_alone(name: &str, value: &str) -> Result<()> {
    const PLACEHOLDER: &str = "placeholder";
    let base: &[(&str, &str)] = match name {
        ARCHIVE_ENDPOINT
        | ARCHIVE_REGION
        | ARCHIVE_CHECKSUM
        | ARCHIVE_ACCESS_KEY_ID
        | ARCHIVE_SECRET_ACCESS_KEY => &[
            (ARCHIVE_ENDPOINT, "https://placeholder.example"),
            (ARCHIVE_ACCESS_KEY_ID, PLACEHOLDER),
            (ARCHIVE_SECRET_ACCESS_KEY, PLACEHOLDER),
        ],
        HOT_STORE => &[
            (HOT_S3_ENDPOINT, "https://placeholder.example"),
            (HOT_S3_ACCESS_KEY_ID, PLACEHOLDER),
            (HOT_S3_SECRET_ACCESS_KEY, PLACEHOLDER),
            (SUPABASE_URL, "https://placeholder.supabase.co"),
            (SUPABASE_SECRET_KEY, "sb_secret_placeholder"),
        ],
        HOT_S3_ENDPOINT | HOT_S3_REGION | HOT_S3_ACCESS_KEY_ID | HOT_S3_SECRET_ACCESS_KEY => &[
            (HOT_STORE, "s3"),
            (HOT_S3_ENDPOINT, "https://placeholder.example"),
            (HOT_S3_ACCESS_KEY_ID, PLACEHOLDER),
            (HOT_S3_SECRET_ACCESS_KEY, PLACEHOLDER),
        ],
        SUPABASE_URL | SUPABASE_PUBLISHABLE_KEY => &[
            (HOT_STORE, "supabase"),
            (SUPABASE_URL, "https://placeholder.supabase.co"),
            (SUPABASE_SECRET_KEY, "sb_secret_placeholder"),
        ],
        SUPABASE_SERVICE_ROLE_KEY | SUPABASE_SECRET_KEY => &[
            (HOT_STORE, "supabase"),
            (SUPABASE_URL, "https://placeholder.supabase.co"),
        ],
        _ => &[(ARCHIVE_PROVIDER, "fs"), (ARCHIVE_BUCKET, PLACEHOLDER)],
    };
    let lookup = |wanted: &str| {
        if wanted == name {
            return Some(value.to_owned());
        }
        base.iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, v)| (*v).to_owned())
    };
    match name {
        ARCHIVE_FS_ROOT => ColdConfig::from_lookup(Provider::Fs, lookup).map(drop),
        ARCHIVE_ENDPOINT
        | ARCHIVE_REGION
        | ARCHIVE_CHECKSUM
        | ARCHIVE_ACCESS_KEY_ID
        | ARCHIVE_SECRET_ACCESS_KEY => ColdConfig::from_lookup(Provider::S3, lookup).map(drop),
        HOT_STORE
        | HOT_FS_ROOT
        | HOT_S3_ENDPOINT
        | HOT_S3_REGION
        | HOT_S3_ACCESS_KEY_ID
        | HOT_S3_SECRET_ACCESS_KEY
        | SUPABASE_URL
        | SUPABASE_SERVICE_ROLE_KEY
        | SUPABASE_SECRET_KEY
        | SUPABASE_PUBLISHABLE_KEY => HotConfig::from_lookup(lookup).map(drop),
        _ => Config::from_lookup(lookup).map(drop),
    }
}

/// The cold S3 store's variables, for its messages.
const COLD_S3: S3Names = S3Names {
    endpoint: ARCHIVE_ENDPOINT,
    region: ARCHIVE_REGION,
    access_key_id: ARCHIVE_ACCESS_KEY_ID,
    secret_access_key: ARCHIVE_SECRET_ACCESS_KEY,
};

/// The hot S3 store's variables, for its messages.
const HOT_S3: S3Names = S3Names {
    endpoint: HOT_S3_ENDPOINT,
    region: HOT_S3_REGION,
    access_key_id: HOT_S3_ACCESS_KEY_ID,
    secret_access_key: HOT_S3_SECRET_ACCESS_KEY,
};

impl HotConfig {
    /// Read the hot store's connection settings through `lookup`.
    ///
    /// `HOT_STORE` is `fs` (the default, rooted at `HOT_FS_ROOT`), `s3`
    /// (`HOT_S3_ENDPOINT` optional, credentials required) or `supabase`
    /// (`SUPABASE_URL` and `SUPABASE_SERVICE_ROLE_KEY` or `SUPABASE_SECRET_KEY`
    /// required, `SUPABASE_PUBLISHABLE_KEY` optional).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<HotConfig> {
        let vars = Vars(lookup);
        let kind = vars.or_default(HOT_STORE, DEFAULT_HOT_STORE);
        match kind.to_ascii_lowercase().as_str() {
            "fs" => {
                let root = vars.or_default(HOT_FS_ROOT, DEFAULT_HOT_FS_ROOT);
                let fs = FsConfig { root: root.into() };
                Ok(HotConfig::Fs(fs.build(HOT_FS_ROOT)?))
            }
            "s3" => {
                let when = format!("when {HOT_STORE}=s3");
                let endpoint = vars.get(HOT_S3_ENDPOINT);
                let region = vars.or_default(HOT_S3_REGION, DEFAULT_REGION);
                let access_key_id =
                    vars.required(HOT_S3_ACCESS_KEY_ID, "an access key id", &when)?;
                let secret =
                    vars.required(HOT_S3_SECRET_ACCESS_KEY, "a secret access key", &when)?;
                let s3 = S3Config {
                    endpoint,
                    region,
                    access_key_id: Some(access_key_id),
                    secret_access_key: Some(Secret::new(secret)),
                    checksum: None,
                };
                Ok(HotConfig::S3(s3.build(Provider::S3, &HOT_S3)?))
            }
            "supabase" => parse_supabase(&vars).map(HotConfig::Supabase),
            _ => Err(invalid(HOT_STORE, "fs, s3 or supabase", &kind)),
        }
    }

    /// [`HotConfig::from_lookup`] over the process environment.
    pub fn from_env() -> Result<HotConfig> {
        Self::from_lookup(env_lookup)
    }

    /// The settings that hold this store's credentials, for messages that
    /// say what to check; none for a folder.
    pub fn credential_variables(&self) -> &'static [&'static str] {
        match self {
            HotConfig::Fs(_) => &[],
            HotConfig::S3(_) => &[HOT_S3_ACCESS_KEY_ID, HOT_S3_SECRET_ACCESS_KEY],
            HotConfig::Supabase(_) => &[SUPABASE_SERVICE_ROLE_KEY],
        }
    }
}

/// `SUPABASE_*`: the project URL and the keys. Every variable is read, so a
/// conflict between the two names of the secret key is caught.
fn parse_supabase<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<SupabaseSettings> {
    let when = format!("when {HOT_STORE}=supabase");
    let url = vars.required(SUPABASE_URL, SUPABASE_URL_EXPECTED, &when)?;
    let service_role = vars.get(SUPABASE_SERVICE_ROLE_KEY);
    let secret = vars.get(SUPABASE_SECRET_KEY);
    let publishable = vars.get(SUPABASE_PUBLISHABLE_KEY);
    let (name, secret) = match (service_role, secret) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{SUPABASE_SERVICE_ROLE_KEY}: expected the same key as {SUPABASE_SECRET_KEY} \
                     (or only one of the two set), got two different keys (values not shown)"
                ),
            ));
        }
        (Some(a), _) => (SUPABASE_SERVICE_ROLE_KEY, a),
        (None, Some(b)) => (SUPABASE_SECRET_KEY, b),
        (None, None) => {
            return Err(missing(
                SUPABASE_SERVICE_ROLE_KEY,
                &format!(
                    "the service_role key or a secret key (sb_secret_...; {SUPABASE_SECRET_KEY} \
                     works too)"
                ),
                &when,
            ));
        }
    };
    let supabase = SupabaseConfig {
        url,
        secret_key: Secret::new(secret),
        publishable_key: publishable.map(Secret::new),
    };
    supabase.build(&SupabaseNames {
        url: SUPABASE_URL,
        secret_key: name,
        publishable_key: SUPABASE_PUBLISHABLE_KEY,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::keys::{MAX_KEY_LEN, cold_key};

    pub(crate) const SECRET: &str = "sEcReT-Value-0123456789-do-not-print";
    pub(crate) const KEY_ID: &str = "AKIA-KEY-ID-do-not-print";

    /// A lookup over a fixed set of pairs.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// `base` with `(name, value)` added or replaced.
    pub(crate) fn with<'a>(
        base: &[(&'a str, &'a str)],
        name: &'a str,
        value: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<_> = base.iter().copied().filter(|(k, _)| *k != name).collect();
        out.push((name, value));
        out
    }

    pub(crate) const MINIMAL: &[(&str, &str)] =
        &[("ARCHIVE_PROVIDER", "r2"), ("ARCHIVE_BUCKET", "cold")];

    pub(crate) fn config(pairs: &[(&str, &str)]) -> Result<Option<Config>> {
        Config::from_lookup(env(pairs))
    }

    pub(crate) fn config_err(pairs: &[(&str, &str)]) -> Error {
        match config(pairs) {
            Ok(c) => panic!("expected an error for {pairs:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    pub(crate) fn assert_invalid(err: &Error, name: &str) {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.message().starts_with(&format!("{name}:")),
            "message should start with {name}: {err}"
        );
    }

    #[test]
    fn every_variable_parsed() {
        let got = config(&[
            ("ARCHIVE_PROVIDER", "MinIO"),
            ("ARCHIVE_BUCKET", "my.cold-bucket-1"),
            ("ARCHIVE_RETENTION_JOBS", "0"),
            ("ARCHIVE_INTERVAL", "1m30s"),
            ("ARCHIVE_BATCH_SIZE", "10000"),
            ("ARCHIVE_CONCURRENCY", "256"),
            ("ARCHIVE_PATH_PREFIX", "/preview-42/"),
            ("ARCHIVE_BLOB_TIMEOUT", "500ms"),
            ("ARCHIVE_STREAM_THRESHOLD", "0"),
            ("ARCHIVE_LEASE", "2h"),
            ("ARCHIVE_VERIFY", "Read-Back"),
            ("ARCHIVE_PROBE_PREFIX", "/ops/probe/"),
            ("ARCHIVE_LOST_AFTER", "30m"),
            ("ARCHIVE_MISSING_STOP_COUNT", "0"),
            ("ARCHIVE_MISSING_STOP_PERCENT", "100"),
            ("ARCHIVE_MAX_ATTEMPTS", "1"),
            ("ARCHIVE_HOT_QUOTA", "1.5GiB"),
            ("ARCHIVE_MIN_AGE", "30d"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            Config {
                provider: Provider::Minio,
                bucket: "my.cold-bucket-1".into(),
                retention_jobs: 0,
                interval: Duration::from_secs(90),
                batch_size: 10_000,
                concurrency: 256,
                path_prefix: KeyPrefix::new("preview-42").unwrap(),
                blob_timeout: Duration::from_millis(500),
                stream_threshold: 0,
                lease: Duration::from_secs(7200),
                verify: VerifyMode::ReadBack,
                probe_prefix: ObjectKey::new("ops/probe").unwrap(),
                lost_after: Duration::from_secs(1800),
                missing_stop_count: 0,
                missing_stop_percent: 100,
                max_attempts: 1,
                hot_quota: Some(1_610_612_736),
                min_age: Some(Duration::from_secs(30 * 86_400)),
            }
        );
        assert_eq!(
            got.rules(),
            Rules {
                retention_jobs: 0,
                hot_quota: Some(1_610_612_736),
                min_age: Some(Duration::from_secs(30 * 86_400)),
            }
        );
        assert_eq!(
            got.probe_key_prefix().unwrap().as_str(),
            "preview-42/ops/probe"
        );
    }

    #[test]
    fn defaults_match_the_seed() {
        let got = config(MINIMAL).unwrap().unwrap();
        assert_eq!(
            got,
            Config {
                bucket: "cold".into(),
                ..Config::default()
            }
        );
        let d = Config::default();
        assert_eq!(d.provider, Provider::R2);
        assert_eq!(d.retention_jobs, 3);
        assert_eq!(d.interval, Duration::from_secs(60));
        assert_eq!(d.batch_size, 50);
        assert_eq!(d.concurrency, 5);
        assert_eq!(d.path_prefix, KeyPrefix::none());
        assert_eq!(d.blob_timeout, Duration::from_secs(300));
        assert_eq!(d.lease, Duration::from_secs(60));
    }

    #[test]
    fn disabled_without_provider_or_bucket() {
        for pairs in [
            &[][..],
            &[("ARCHIVE_PROVIDER", "r2")][..],
            &[("ARCHIVE_BUCKET", "cold")][..],
            &[("ARCHIVE_PROVIDER", ""), ("ARCHIVE_BUCKET", "cold")][..],
            &[("ARCHIVE_PROVIDER", "r2"), ("ARCHIVE_BUCKET", "  ")][..],
            // Disabled means disabled: the rest is not looked at.
            &[("ARCHIVE_PROVIDER", "r2"), ("ARCHIVE_BATCH_SIZE", "abc")][..],
        ] {
            assert_eq!(config(pairs).unwrap(), None, "{pairs:?}");
        }
    }

    #[test]
    fn empty_values_mean_default_and_values_are_trimmed() {
        let got = config(&[
            ("ARCHIVE_PROVIDER", " R2 "),
            ("ARCHIVE_BUCKET", " cold\n"),
            ("ARCHIVE_BATCH_SIZE", ""),
            ("ARCHIVE_INTERVAL", "  "),
            ("ARCHIVE_CONCURRENCY", " 7 "),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.bucket, "cold");
        assert_eq!(got.batch_size, 50);
        assert_eq!(got.interval, Duration::from_secs(60));
        assert_eq!(got.concurrency, 7);
    }

    #[test]
    fn providers_parse_case_insensitively() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
            assert_eq!(p.as_str().to_uppercase().parse::<Provider>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
    }

    #[test]
    fn bad_values_are_rejected_naming_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("ARCHIVE_PROVIDER", "azure"),
            ("ARCHIVE_RETENTION_JOBS", "abc"),
            ("ARCHIVE_RETENTION_JOBS", "-1"),
            ("ARCHIVE_RETENTION_JOBS", "1.5"),
            ("ARCHIVE_RETENTION_JOBS", "99999999999"),
            ("ARCHIVE_BATCH_SIZE", "abc"),
            ("ARCHIVE_BATCH_SIZE", "0"),
            ("ARCHIVE_BATCH_SIZE", "-5"),
            ("ARCHIVE_BATCH_SIZE", "+5"),
            ("ARCHIVE_BATCH_SIZE", "10001"),
            ("ARCHIVE_BATCH_SIZE", "99999999999999999999999"),
            ("ARCHIVE_CONCURRENCY", "0"),
            ("ARCHIVE_CONCURRENCY", "257"),
            ("ARCHIVE_CONCURRENCY", "many"),
            ("ARCHIVE_INTERVAL", "5 parsecs"),
            ("ARCHIVE_INTERVAL", "0"),
            ("ARCHIVE_INTERVAL", "0s"),
            ("ARCHIVE_INTERVAL", "-1s"),
            ("ARCHIVE_INTERVAL", "5M"),
            ("ARCHIVE_INTERVAL", "2y"),
            ("ARCHIVE_INTERVAL", "99999999999999999999999"),
            ("ARCHIVE_BLOB_TIMEOUT", "soon"),
            ("ARCHIVE_BLOB_TIMEOUT", "0ms"),
            ("ARCHIVE_LEASE", "forever"),
            ("ARCHIVE_VERIFY", "trust-me"),
            ("ARCHIVE_PATH_PREFIX", "../x"),
            ("ARCHIVE_PATH_PREFIX", "a//b"),
            ("ARCHIVE_PATH_PREFIX", "a/./b"),
            ("ARCHIVE_PATH_PREFIX", "back\\slash"),
            ("ARCHIVE_HOT_QUOTA", "lots"),
            ("ARCHIVE_HOT_QUOTA", "800 MiBs"),
            ("ARCHIVE_HOT_QUOTA", "-1GB"),
            ("ARCHIVE_MIN_AGE", "a month"),
            ("ARCHIVE_MIN_AGE", "-1d"),
        ];
        for &(name, value) in cases {
            let err = config_err(&with(MINIMAL, name, value));
            assert_invalid(&err, name);
            assert!(
                err.message().contains(&format!("{value:?}")),
                "message should show the value given: {err}"
            );
        }
    }

    #[test]
    fn unicode_digits_huge_numbers_and_negative_durations_are_rejected() {
        let cases: &[(&str, &str)] = &[
            // Digits of other scripts are not digits here.
            ("ARCHIVE_BATCH_SIZE", "５０"),
            ("ARCHIVE_CONCURRENCY", "٣"),
            ("ARCHIVE_RETENTION_JOBS", "³"),
            ("ARCHIVE_INTERVAL", "３０s"),
            ("ARCHIVE_INTERVAL", "٣٠"),
            // Past every integer type.
            ("ARCHIVE_RETENTION_JOBS", "4294967296"),
            ("ARCHIVE_CONCURRENCY", "18446744073709551616"),
            ("ARCHIVE_INTERVAL", "18446744073709551615"),
            ("ARCHIVE_LEASE", "99999999999999999999h"),
            ("ARCHIVE_BLOB_TIMEOUT", "1e9"),
            // Negative, with an ASCII or a Unicode minus, and negative zero.
            ("ARCHIVE_INTERVAL", "-5m"),
            ("ARCHIVE_INTERVAL", "−5m"),
            ("ARCHIVE_BLOB_TIMEOUT", "-0s"),
            ("ARCHIVE_LEASE", "-1"),
        ];
        for &(name, value) in cases {
            let err = config_err(&with(MINIMAL, name, value));
            assert_invalid(&err, name);
            assert!(err.message().contains(&format!("{value:?}")), "{err}");
        }
        // Whitespace of any kind around a value is trimmed; whitespace alone is unset.
        let got = config(&with(MINIMAL, "ARCHIVE_BATCH_SIZE", "\u{3000}\t\n"))
            .unwrap()
            .unwrap();
        assert_eq!(got.batch_size, 50);
        assert_eq!(
            config(&with(MINIMAL, "ARCHIVE_BUCKET", "\u{a0} \r\n")).unwrap(),
            None
        );
        let spaced = [("ARCHIVE_FS_ROOT", "\u{2003}")];
        assert_invalid(&cold(Provider::Fs, &spaced).unwrap_err(), "ARCHIVE_FS_ROOT");
        // Credentials inside the hot endpoint are refused without echoing them.
        let err = hot(&with(
            HOT_S3,
            "HOT_S3_ENDPOINT",
            "http://key:hunter2@127.0.0.1:9000",
        ))
        .unwrap_err();
        assert_invalid(&err, "HOT_S3_ENDPOINT");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn messages_say_what_was_expected() {
        let err = config_err(&with(MINIMAL, "ARCHIVE_BATCH_SIZE", "abc"));
        assert_eq!(
            err.message(),
            r#"ARCHIVE_BATCH_SIZE: expected a whole number from 1 to 10000, got "abc""#
        );
        let err = config_err(&with(MINIMAL, "ARCHIVE_PROVIDER", "azure"));
        assert_eq!(
            err.message(),
            r#"ARCHIVE_PROVIDER: expected one of r2, s3, b2, minio, gcs, supabase-s3, fs, got "azure""#
        );
        let err = config_err(&with(MINIMAL, "ARCHIVE_INTERVAL", "5 parsecs"));
        assert!(err.message().contains("such as 30s"), "{err}");
        // The parser's own reason is kept as the cause.
        assert!(std::error::Error::source(&err).is_some());
        let err = config_err(&with(MINIMAL, "ARCHIVE_INTERVAL", "5M"));
        assert!(err.message().contains("'m' for minutes"), "{err}");
        // A pasted blob is cut short.
        let long = "x".repeat(10_000);
        let err = config_err(&with(MINIMAL, "ARCHIVE_BATCH_SIZE", &long));
        assert!(err.message().len() < 300, "{}", err.message().len());
        assert!(err.message().contains("10000 characters"), "{err}");
    }

    #[test]
    fn probe_prefix_stays_out_of_the_archive_layout() {
        let got = config(MINIMAL).unwrap().unwrap();
        assert_eq!(got.probe_prefix.as_str(), ".coldsweep-probe");
        assert_eq!(got.probe_key_prefix().unwrap().as_str(), ".coldsweep-probe");
        // The archive's own keys start with `jobs/`: a probe there could
        // collide with (and delete) an archived blob.
        let archived = cold_key(&KeyPrefix::none(), "j1", "t1").unwrap();
        assert!(archived.as_str().starts_with("jobs/"));
        for bad in ["jobs", "/jobs/", "jobs/probe", "/", "a/../b", "a//b"] {
            let err = config_err(&with(MINIMAL, "ARCHIVE_PROBE_PREFIX", bad));
            assert_invalid(&err, "ARCHIVE_PROBE_PREFIX");
        }
        // Under a path prefix, `jobs` is still refused; a deeper `jobs` is not the layout.
        let prefixed = with(MINIMAL, "ARCHIVE_PATH_PREFIX", "preview-42");
        let err = config_err(&with(&prefixed, "ARCHIVE_PROBE_PREFIX", "jobs"));
        assert_invalid(&err, "ARCHIVE_PROBE_PREFIX");
        let got = config(&with(&prefixed, "ARCHIVE_PROBE_PREFIX", "probes/jobs"))
            .unwrap()
            .unwrap();
        assert_eq!(
            got.probe_key_prefix().unwrap().as_str(),
            "preview-42/probes/jobs"
        );
        // Together with the path prefix the key must still fit.
        let long_prefix = "p".repeat(MAX_KEY_LEN - 3);
        let long = with(MINIMAL, "ARCHIVE_PATH_PREFIX", &long_prefix);
        let err = config_err(&with(&long, "ARCHIVE_PROBE_PREFIX", "probe"));
        assert_invalid(&err, "ARCHIVE_PROBE_PREFIX");
    }

    #[test]
    fn lease_is_short_but_leaves_room_for_heartbeats() {
        assert_eq!(
            config(MINIMAL).unwrap().unwrap().lease,
            Duration::from_secs(60)
        );
        for lease in ["1s", "1999ms", "1"] {
            let err = config_err(&with(MINIMAL, "ARCHIVE_LEASE", lease));
            assert_invalid(&err, "ARCHIVE_LEASE");
        }
        // Heartbeats keep claims alive however long a blob takes.
        let ok = config(&with(
            &with(MINIMAL, "ARCHIVE_BLOB_TIMEOUT", "15m"),
            "ARCHIVE_LEASE",
            "2",
        ));
        assert_eq!(ok.unwrap().unwrap().lease, Duration::from_secs(2));
    }

    pub(crate) fn s3_cold() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ARCHIVE_ENDPOINT", "https://acct.r2.cloudflarestorage.com/"),
            ("ARCHIVE_ACCESS_KEY_ID", KEY_ID),
            ("ARCHIVE_SECRET_ACCESS_KEY", SECRET),
        ]
    }

    pub(crate) fn cold(provider: Provider, pairs: &[(&str, &str)]) -> Result<ColdConfig> {
        ColdConfig::from_lookup(provider, env(pairs))
    }

    /// Every provider served by the S3 store.
    pub(crate) const S3_LIKE: [Provider; 6] = [
        Provider::R2,
        Provider::S3,
        Provider::B2,
        Provider::Minio,
        Provider::Gcs,
        Provider::SupabaseS3,
    ];

    #[test]
    fn cold_s3_like_providers() {
        let pinned = with(&s3_cold(), "ARCHIVE_REGION", "eu-central-1");
        for p in S3_LIKE {
            let got = cold(p, &pinned).unwrap();
            assert_eq!(
                got,
                ColdConfig::S3(
                    S3Config {
                        endpoint: Some("https://acct.r2.cloudflarestorage.com".into()),
                        region: "eu-central-1".into(),
                        access_key_id: Some(KEY_ID.into()),
                        secret_access_key: Some(Secret::new(SECRET)),
                        checksum: None,
                    }
                    .build(p, &S3Names::PLAIN)
                    .unwrap()
                ),
                "{p}"
            );
        }
        let got = cold(
            Provider::Minio,
            &with(
                &with(&s3_cold(), "ARCHIVE_ENDPOINT", "http://127.0.0.1:9000"),
                "ARCHIVE_REGION",
                "us-east-1",
            ),
        )
        .unwrap();
        let ColdConfig::S3(s3) = got else {
            panic!("{got:?}")
        };
        assert_eq!(s3.endpoint(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region(), "us-east-1");
    }

    /// The region `cold` settles on for `provider` at `endpoint`, or the error.
    pub(crate) fn cold_region(provider: Provider, endpoint: &str) -> Result<String> {
        match cold(provider, &with(&s3_cold(), "ARCHIVE_ENDPOINT", endpoint))? {
            ColdConfig::S3(s3) => Ok(s3.region().to_owned()),
            other => panic!("{provider} is an S3 store: {other:?}"),
        }
    }

    #[test]
    fn cold_region_defaults_follow_the_provider() {
        for (p, endpoint, want) in [
            (
                Provider::R2,
                "https://acct.r2.cloudflarestorage.com",
                "auto",
            ),
            (Provider::Gcs, "https://storage.googleapis.com", "auto"),
            (Provider::Minio, "http://127.0.0.1:9000", "us-east-1"),
            (Provider::S3, "https://s3.example.com", "auto"),
            (
                Provider::B2,
                "https://s3.us-west-004.backblazeb2.com",
                "us-west-004",
            ),
        ] {
            assert_eq!(cold_region(p, endpoint).unwrap(), want, "{p}");
        }
        // No default to fall back on: a B2 endpoint without its region in the
        // host, and Supabase, which signs with the project's region.
        for (p, endpoint) in [
            (Provider::B2, "https://b2.example.com"),
            (
                Provider::SupabaseS3,
                "https://ref.storage.supabase.co/storage/v1/s3",
            ),
        ] {
            let err = cold_region(p, endpoint).unwrap_err();
            assert_invalid(&err, "ARCHIVE_REGION");
            assert!(err.message().contains(p.as_str()), "{err}");
        }
        // Given, the region wins over every default; the endpoint's path stays.
        let supabase = with(
            &with(
                &s3_cold(),
                "ARCHIVE_ENDPOINT",
                "https://ref.storage.supabase.co/storage/v1/s3/",
            ),
            "ARCHIVE_REGION",
            "eu-west-2",
        );
        let ColdConfig::S3(s3) = cold(Provider::SupabaseS3, &supabase).unwrap() else {
            panic!("supabase-s3 is an S3 store")
        };
        assert_eq!(
            s3.endpoint(),
            Some("https://ref.storage.supabase.co/storage/v1/s3")
        );
        assert_eq!(s3.region(), "eu-west-2");
        let r2 = with(&s3_cold(), "ARCHIVE_REGION", "wnam");
        let ColdConfig::S3(s3) = cold(Provider::R2, &r2).unwrap() else {
            panic!("r2 is an S3 store")
        };
        assert_eq!(s3.region(), "wnam");
    }

    #[test]
    fn cold_checksum_overrides_the_profile() {
        let checksum = |raw: Option<&str>| {
            let pairs = match raw {
                Some(raw) => with(&s3_cold(), "ARCHIVE_CHECKSUM", raw),
                None => s3_cold(),
            };
            match cold(Provider::R2, &pairs)? {
                ColdConfig::S3(s3) => Ok(s3.checksum()),
                other => panic!("r2 is an S3 store: {other:?}"),
            }
        };
        // Unset: the profile's (Content-MD5 for r2).
        assert_eq!(checksum(None).unwrap(), ChecksumMode::ContentMd5);
        assert_eq!(checksum(Some("")).unwrap(), ChecksumMode::ContentMd5);
        for (raw, want) in [
            ("md5", ChecksumMode::ContentMd5),
            ("MD5", ChecksumMode::ContentMd5),
            ("content-md5", ChecksumMode::ContentMd5),
            (" none ", ChecksumMode::None),
            ("None", ChecksumMode::None),
        ] {
            assert_eq!(checksum(Some(raw)).unwrap(), want, "{raw:?}");
            assert_eq!(checksum(Some(want.as_str())).unwrap(), want);
        }
        for bad in ["sha256", "crc32c", "md-5", "off"] {
            let err = checksum(Some(bad)).unwrap_err();
            assert_invalid(&err, "ARCHIVE_CHECKSUM");
            assert!(err.message().contains("md5 or none"), "{err}");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        // Not an S3 store: nothing to check.
        let fs = [("ARCHIVE_FS_ROOT", "/x"), ("ARCHIVE_CHECKSUM", "sha256")];
        cold(Provider::Fs, &fs).unwrap();
    }

    #[test]
    fn cold_endpoint_optional_only_for_aws() {
        let no_endpoint = [
            ("ARCHIVE_ACCESS_KEY_ID", KEY_ID),
            ("ARCHIVE_SECRET_ACCESS_KEY", SECRET),
        ];
        // AWS signs with the bucket's region; the R2 default `auto` would fail every request.
        assert_invalid(
            &cold(Provider::S3, &no_endpoint).unwrap_err(),
            "ARCHIVE_REGION",
        );
        let aws = with(&no_endpoint, "ARCHIVE_REGION", "eu-west-1");
        let ColdConfig::S3(s3) = cold(Provider::S3, &aws).unwrap() else {
            panic!("s3 is an S3 store")
        };
        assert_eq!(s3.endpoint(), None);
        assert_eq!(s3.region(), "eu-west-1");
        for p in [
            Provider::R2,
            Provider::B2,
            Provider::Minio,
            Provider::Gcs,
            Provider::SupabaseS3,
        ] {
            let err = cold(p, &no_endpoint).unwrap_err();
            assert_invalid(&err, "ARCHIVE_ENDPOINT");
            assert!(err.message().contains(p.as_str()), "{err}");
        }
    }

    /// Every bad shape is checked by `store::settings`; here, that the
    /// message names the variable.
    #[test]
    fn cold_bad_endpoints() {
        for bad in [
            "acct.r2.cloudflarestorage.com",
            "ftp://host",
            "https://host:99999",
        ] {
            let err = cold(Provider::R2, &with(&s3_cold(), "ARCHIVE_ENDPOINT", bad)).unwrap_err();
            assert_invalid(&err, "ARCHIVE_ENDPOINT");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
        for good in [
            "http://localhost",
            "https://[::1]:9000",
            "HTTPS://s3.example.com/base",
        ] {
            cold(Provider::R2, &with(&s3_cold(), "ARCHIVE_ENDPOINT", good)).unwrap();
        }
        // Credentials in the URL are refused without being echoed.
        let err = cold(
            Provider::R2,
            &with(&s3_cold(), "ARCHIVE_ENDPOINT", "https://user:hunter2@host"),
        )
        .unwrap_err();
        assert_invalid(&err, "ARCHIVE_ENDPOINT");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn cold_missing_credentials() {
        // With a region, so that providers without a default reach the credentials.
        let base = with(&s3_cold(), "ARCHIVE_REGION", "eu-west-2");
        for name in ["ARCHIVE_ACCESS_KEY_ID", "ARCHIVE_SECRET_ACCESS_KEY"] {
            for p in S3_LIKE {
                let pairs: Vec<_> = base.iter().copied().filter(|(k, _)| *k != name).collect();
                let err = cold(p, &pairs).unwrap_err();
                assert_invalid(&err, name);
                let err = cold(p, &with(&pairs, name, " ")).unwrap_err();
                assert_invalid(&err, name);
            }
        }
    }

    #[test]
    fn cold_fs() {
        let got = cold(Provider::Fs, &[("ARCHIVE_FS_ROOT", "/var/lib/coldsweep")]).unwrap();
        assert_eq!(got, ColdConfig::Fs(fs_settings("/var/lib/coldsweep")));
        // S3 settings are irrelevant to fs and not required.
        let err = cold(Provider::Fs, &s3_cold()).unwrap_err();
        assert_invalid(&err, "ARCHIVE_FS_ROOT");
        let err = cold(Provider::Fs, &[("ARCHIVE_FS_ROOT", "")]).unwrap_err();
        assert_invalid(&err, "ARCHIVE_FS_ROOT");
    }

    fn fs_settings(root: &str) -> FsSettings {
        FsConfig { root: root.into() }.build("R").unwrap()
    }

    pub(crate) fn hot(pairs: &[(&str, &str)]) -> Result<HotConfig> {
        HotConfig::from_lookup(env(pairs))
    }

    pub(crate) const HOT_S3: &[(&str, &str)] = &[
        ("HOT_STORE", "s3"),
        ("HOT_S3_REGION", "eu-west-2"),
        ("HOT_S3_ACCESS_KEY_ID", KEY_ID),
        ("HOT_S3_SECRET_ACCESS_KEY", SECRET),
    ];

    #[test]
    fn hot_stores() {
        assert_eq!(hot(&[]).unwrap(), HotConfig::Fs(fs_settings("./hot")));
        assert_eq!(
            hot(&[("HOT_STORE", "FS"), ("HOT_FS_ROOT", "/data/hot")]).unwrap(),
            HotConfig::Fs(fs_settings("/data/hot"))
        );
        assert_eq!(
            hot(HOT_S3).unwrap(),
            HotConfig::S3(
                S3Config {
                    endpoint: None,
                    region: "eu-west-2".into(),
                    access_key_id: Some(KEY_ID.into()),
                    secret_access_key: Some(Secret::new(SECRET)),
                    checksum: None,
                }
                .build(Provider::S3, &S3Names::PLAIN)
                .unwrap()
            )
        );
        let full = with(
            &with(HOT_S3, "HOT_S3_ENDPOINT", "http://127.0.0.1:9000/"),
            "HOT_S3_REGION",
            "eu-west-1",
        );
        assert_eq!(
            hot(&full).unwrap(),
            HotConfig::S3(
                S3Config {
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: "eu-west-1".into(),
                    access_key_id: Some(KEY_ID.into()),
                    secret_access_key: Some(Secret::new(SECRET)),
                    checksum: None,
                }
                .build(Provider::S3, &S3Names::PLAIN)
                .unwrap()
            )
        );
    }

    #[test]
    fn hot_bad_values() {
        let err = hot(&[("HOT_STORE", "ftp")]).unwrap_err();
        assert_invalid(&err, "HOT_STORE");
        assert!(err.message().contains("\"ftp\""), "{err}");
        assert!(err.message().contains("supabase"), "{err}");
        let err = hot(&with(HOT_S3, "HOT_S3_ENDPOINT", "not a url")).unwrap_err();
        assert_invalid(&err, "HOT_S3_ENDPOINT");
        let auto_on_aws = with(HOT_S3, "HOT_S3_REGION", "auto");
        assert_invalid(&hot(&auto_on_aws).unwrap_err(), "HOT_S3_REGION");
        for name in ["HOT_S3_ACCESS_KEY_ID", "HOT_S3_SECRET_ACCESS_KEY"] {
            let pairs: Vec<_> = HOT_S3.iter().copied().filter(|(k, _)| *k != name).collect();
            let err = hot(&pairs).unwrap_err();
            assert_invalid(&err, name);
        }
    }

    pub(crate) const PUBLISHABLE: &str = "sb_publishable_do-not-print-0123";

    /// A legacy `service_role` key: a JWT whose role claim is `service_role`.
    pub(crate) const SERVICE_ROLE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
        eyJpc3MiOiJzdXBhYmFzZSIsInJvbGUiOiJzZXJ2aWNlX3JvbGUifQ.c2lnLWRvLW5vdC1wcmludA";

    pub(crate) const HOT_SUPABASE: &[(&str, &str)] = &[
        ("HOT_STORE", "supabase"),
        ("SUPABASE_URL", "https://abcdefgh.supabase.co/"),
        ("SUPABASE_SERVICE_ROLE_KEY", SERVICE_ROLE),
        ("SUPABASE_PUBLISHABLE_KEY", PUBLISHABLE),
    ];

    /// A legacy `anon` key: a JWT whose role claim is `anon`.
    pub(crate) fn anon_jwt() -> String {
        use base64::Engine as _;
        let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        format!(
            "{}.{}.c2ln",
            part(r#"{"alg":"HS256"}"#),
            part(r#"{"role":"anon"}"#)
        )
    }

    #[test]
    fn hot_supabase() {
        assert_eq!(
            hot(HOT_SUPABASE).unwrap(),
            HotConfig::Supabase(
                SupabaseConfig {
                    url: "https://abcdefgh.supabase.co".into(),
                    secret_key: Secret::new(SERVICE_ROLE),
                    publishable_key: Some(Secret::new(PUBLISHABLE)),
                }
                .build(&SupabaseNames::PLAIN)
                .unwrap()
            )
        );
        // The other name of the secret key, no publishable key, the API path tolerated.
        let other_name = [
            ("HOT_STORE", "Supabase"),
            ("SUPABASE_URL", " http://127.0.0.1:54321/storage/v1/ "),
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_PUBLISHABLE_KEY", ""),
        ];
        assert_eq!(
            hot(&other_name).unwrap(),
            HotConfig::Supabase(
                SupabaseConfig {
                    url: "http://127.0.0.1:54321".into(),
                    secret_key: Secret::new("sb_secret_abc"),
                    publishable_key: None,
                }
                .build(&SupabaseNames::PLAIN)
                .unwrap()
            )
        );
        // Both names holding the same key is not a conflict.
        let both = with(HOT_SUPABASE, "SUPABASE_SECRET_KEY", SERVICE_ROLE);
        assert_eq!(hot(&both).unwrap(), hot(HOT_SUPABASE).unwrap());
    }

    #[test]
    fn hot_supabase_bad_values() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            HOT_SUPABASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != name)
                .collect()
        };
        assert_invalid(&hot(&without("SUPABASE_URL")).unwrap_err(), "SUPABASE_URL");
        let err = hot(&without("SUPABASE_SERVICE_ROLE_KEY")).unwrap_err();
        assert_invalid(&err, "SUPABASE_SERVICE_ROLE_KEY");
        assert!(err.message().contains("SUPABASE_SECRET_KEY"), "{err}");
        for bad in [
            "abcdefgh.supabase.co",
            "ftp://abcdefgh.supabase.co",
            "https://abcdefgh.supabase.co?x=1",
            "https://",
        ] {
            let err = hot(&with(HOT_SUPABASE, "SUPABASE_URL", bad)).unwrap_err();
            assert_invalid(&err, "SUPABASE_URL");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
            assert!(err.message().contains("<project-ref>.supabase.co"), "{err}");
        }
        let err = hot(&with(
            HOT_SUPABASE,
            "SUPABASE_URL",
            "https://u:hunter2@abcdefgh.supabase.co",
        ))
        .unwrap_err();
        assert_invalid(&err, "SUPABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Two different secret keys: which one was meant?
        let err = hot(&with(
            HOT_SUPABASE,
            "SUPABASE_SECRET_KEY",
            "sb_secret_other",
        ))
        .unwrap_err();
        assert_invalid(&err, "SUPABASE_SERVICE_ROLE_KEY");
        assert!(err.message().contains("SUPABASE_SECRET_KEY"), "{err}");
        // Any key but a service one where the secret key belongs.
        let anon = anon_jwt();
        for (name, low, found) in [
            (
                "SUPABASE_SERVICE_ROLE_KEY",
                "sb_publishable_x",
                "a publishable key",
            ),
            ("SUPABASE_SERVICE_ROLE_KEY", anon.as_str(), r#"role "anon""#),
            (
                "SUPABASE_SECRET_KEY",
                "sb_publishable_x",
                "a publishable key",
            ),
            ("SUPABASE_SERVICE_ROLE_KEY", SECRET, "neither a JWT"),
        ] {
            let err = hot(&with(&without("SUPABASE_SERVICE_ROLE_KEY"), name, low)).unwrap_err();
            assert_invalid(&err, name);
            assert!(err.message().contains(found), "{err}");
            assert!(!err.to_string().contains(low), "{err}");
        }
        // Keys that cannot travel in an HTTP header.
        for name in ["SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_PUBLISHABLE_KEY"] {
            let err = hot(&with(HOT_SUPABASE, name, "two words")).unwrap_err();
            assert_invalid(&err, name);
            assert!(!err.to_string().contains("two words"), "{err}");
        }
    }

    /// Every way a parse can fail, with both secrets (and key ids) present.
    pub(crate) fn all_errors() -> Vec<Error> {
        let secrets = [
            ("ARCHIVE_ACCESS_KEY_ID", KEY_ID),
            ("ARCHIVE_SECRET_ACCESS_KEY", SECRET),
            ("HOT_S3_ACCESS_KEY_ID", KEY_ID),
            ("HOT_S3_SECRET_ACCESS_KEY", SECRET),
        ];
        let mut base: Vec<_> = MINIMAL.to_vec();
        base.extend(secrets);
        let mut errors = Vec::new();
        for (name, value) in [
            ("ARCHIVE_PROVIDER", "nope"),
            ("ARCHIVE_BUCKET", "NO"),
            ("ARCHIVE_RETENTION_JOBS", "x"),
            ("ARCHIVE_INTERVAL", "x"),
            ("ARCHIVE_BATCH_SIZE", "x"),
            ("ARCHIVE_CONCURRENCY", "x"),
            ("ARCHIVE_PATH_PREFIX", ".."),
            ("ARCHIVE_BLOB_TIMEOUT", "x"),
            ("ARCHIVE_LEASE", "1s"),
            ("ARCHIVE_PROBE_PREFIX", "jobs"),
        ] {
            errors.push(config_err(&with(&base, name, value)));
        }
        for p in Provider::ALL {
            errors.push(cold(p, &with(&base, "ARCHIVE_ENDPOINT", "x")).unwrap_err());
        }
        errors.push(cold(Provider::Fs, &base).unwrap_err());
        errors.push(cold(Provider::R2, &[("ARCHIVE_SECRET_ACCESS_KEY", SECRET)]).unwrap_err());
        errors.push(cold(Provider::S3, &[("ARCHIVE_ACCESS_KEY_ID", KEY_ID)]).unwrap_err());
        errors.push(cold(Provider::R2, &with(&base, "ARCHIVE_CHECKSUM", "x")).unwrap_err());
        let no_region = with(&base, "ARCHIVE_ENDPOINT", "https://r.supabase.co/s3");
        errors.push(cold(Provider::SupabaseS3, &no_region).unwrap_err());
        let hot_base = with(&base, "HOT_STORE", "s3");
        errors.push(hot(&with(&hot_base, "HOT_S3_ENDPOINT", "x")).unwrap_err());
        errors.push(hot(&with(&hot_base, "HOT_STORE", "supabase")).unwrap_err());
        errors.push(hot(&with(&hot_base, "HOT_STORE", "x")).unwrap_err());
        errors.push(hot(&[("HOT_STORE", "s3"), ("HOT_S3_SECRET_ACCESS_KEY", SECRET)]).unwrap_err());
        errors.push(hot(&[("HOT_STORE", "s3"), ("HOT_S3_ACCESS_KEY_ID", KEY_ID)]).unwrap_err());
        let supabase_base = [&base[..], HOT_SUPABASE].concat();
        let spaced = format!("{SECRET} x");
        for (name, value) in [
            ("SUPABASE_URL", "x"),
            ("SUPABASE_SECRET_KEY", "sb_secret_different"),
            ("SUPABASE_PUBLISHABLE_KEY", "a b"),
            ("SUPABASE_SERVICE_ROLE_KEY", spaced.as_str()),
            ("SUPABASE_SERVICE_ROLE_KEY", SECRET),
        ] {
            errors.push(hot(&with(&supabase_base, name, value)).unwrap_err());
        }
        errors
    }

    #[test]
    fn secrets_never_in_errors() {
        let errors = all_errors();
        assert!(errors.len() > 20);
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains(SECRET), "secret leaked: {text}");
                assert!(
                    !text.contains("c2lnLWRvLW5vdC1wcmludA"),
                    "key leaked: {text}"
                );
            }
        }
    }

    #[test]
    fn secrets_never_in_debug() {
        let cold = cold(Provider::R2, &s3_cold()).unwrap();
        let hot = hot(HOT_S3).unwrap();
        let supabase = super::tests::hot(HOT_SUPABASE).unwrap();
        let config = config(MINIMAL).unwrap().unwrap();
        let supabase_text = format!("{supabase:?} {supabase:#?}");
        assert!(!supabase_text.contains(PUBLISHABLE), "{supabase_text}");
        assert!(
            supabase_text.contains("abcdefgh.supabase.co"),
            "{supabase_text}"
        );
        for text in [
            format!("{cold:?}"),
            format!("{cold:#?}"),
            format!("{hot:?}"),
            supabase_text,
            format!("{config:?}"),
            format!("{:?}", Secret::new(SECRET)),
        ] {
            assert!(!text.contains(SECRET), "secret leaked: {text}");
            assert!(!text.contains(KEY_ID), "key id leaked: {text}");
        }
        // Debug still shows the harmless parts; checked settings always
        // hold both credentials, as settings given by hand tell set from unset.
        let text = format!("{cold:?}");
        assert!(
            text.contains("access_key_id: ***") && text.contains("auto"),
            "{text}"
        );
        let empty = S3Config {
            endpoint: None,
            region: "auto".into(),
            access_key_id: None,
            secret_access_key: None,
            checksum: None,
        };
        assert!(format!("{empty:?}").contains("access_key_id: None"));
    }
}
