//! Configuration: the archiver's [`Config`] and the stores' connection settings.
//!
//! Every value comes from one pure function over a variable lookup
//! ([`Config::from_lookup`]) so that environment, flags and tests share one
//! parser. A bad value is a clear [`ErrorKind::InvalidInput`](crate::ErrorKind)
//! error naming the variable and what was expected.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::keys::KeyPrefix;

/// Cold storage backend, as recorded in the catalog's `html_archive_provider`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Cloudflare R2.
    R2,
    /// Amazon S3.
    S3,
    /// Backblaze B2 (S3 API).
    B2,
    /// MinIO.
    Minio,
    /// Google Cloud Storage (S3 interoperability API).
    Gcs,
    /// A local folder.
    Fs,
}

impl Provider {
    /// All providers, in the order `--help` lists them.
    pub const ALL: [Provider; 6] = [
        Provider::R2,
        Provider::S3,
        Provider::B2,
        Provider::Minio,
        Provider::Gcs,
        Provider::Fs,
    ];

    /// Short name (`r2`, `s3`, `b2`, `minio`, `gcs`, `fs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::R2 => "r2",
            Provider::S3 => "s3",
            Provider::B2 => "b2",
            Provider::Minio => "minio",
            Provider::Gcs => "gcs",
            Provider::Fs => "fs",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!("unknown provider {s:?}: expected one of r2, s3, b2, minio, gcs, fs"),
                )
            })
    }
}

/// A secret string that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is handed to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

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
    /// How long a claim hides a row from other workers (`ARCHIVE_LEASE`);
    /// longer than `blob_timeout` so a live worker never loses its claim.
    pub lease: Duration,
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
            lease: Duration::from_secs(900),
        }
    }
}

/// Connection settings for an S3-compatible store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL (`https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:9000`);
    /// `None` means AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Signing region; `auto` for R2.
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
}

/// Where the cold store is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdConfig {
    /// A local folder (`ARCHIVE_FS_ROOT`); buckets are sub-folders.
    Fs {
        /// Root folder.
        root: PathBuf,
    },
    /// Any S3-compatible service.
    S3(S3Config),
}

/// Where the hot store is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotConfig {
    /// A local folder (`HOT_FS_ROOT`); the catalog's bucket is a sub-folder.
    Fs {
        /// Root folder.
        root: PathBuf,
    },
    /// An S3-compatible service (`HOT_S3_*`).
    S3(S3Config),
}
