//! Provider profiles: what each S3-compatible service needs from a client.
//!
//! One [`S3Store`](super::S3Store) serves every S3-compatible service; the
//! services differ in the region they sign with, the checksum headers they
//! accept on `PutObject`, and whether their ETag is the MD5 of the stored
//! bytes. A [`Profile`] records those facts per [`Provider`]; the table is
//! [`PROFILES`].
//!
//! What every profile shares, because OpenDAL's S3 service always does it:
//!
//! - path-style addressing (`{endpoint}/{bucket}/{key}`, the `Host` header
//!   without the bucket), which R2, B2, MinIO, GCS and Supabase all accept
//!   and MinIO and Supabase require; an endpoint with a path
//!   (`…/storage/v1/s3`) keeps it in front of the bucket;
//! - a one-shot `PutObject` with an explicit `Content-Length` (no
//!   `Transfer-Encoding: chunked`, no `aws-chunked` streaming signature,
//!   which R2 does not implement);
//! - `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is not hashed into
//!   the signature; integrity comes from the checksum below);
//! - no SDK "flexible checksum" headers: no `x-amz-checksum-*`,
//!   `x-amz-sdk-checksum-algorithm` or `x-amz-checksum-algorithm` on a
//!   single-part upload, which B2 rejects, Supabase does not implement and
//!   R2 takes at most one of.
//!
//! OpenDAL can send one upload checksum: `Content-MD5` (or CRC32C, which
//! helps none of these services). It cannot send `x-amz-checksum-sha256`, so
//! the SHA-256 of a blob is proven by reading it back or by the MD5 ETag a
//! profile trusts; see [`Profile::etag_proves_md5`].

use std::fmt;
use std::str::FromStr;

use super::settings::shown;
use crate::error::{Error, ErrorKind, Result};

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
    /// Supabase Storage's S3 endpoint (`…/storage/v1/s3`).
    SupabaseS3,
    /// A local folder.
    Fs,
}

impl Provider {
    /// All providers, in the order `--help` lists them.
    pub const ALL: [Provider; 7] = [
        Provider::R2,
        Provider::S3,
        Provider::B2,
        Provider::Minio,
        Provider::Gcs,
        Provider::SupabaseS3,
        Provider::Fs,
    ];

    /// Short name (`r2`, `s3`, `b2`, `minio`, `gcs`, `supabase-s3`, `fs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::R2 => "r2",
            Provider::S3 => "s3",
            Provider::B2 => "b2",
            Provider::Minio => "minio",
            Provider::Gcs => "gcs",
            Provider::SupabaseS3 => "supabase-s3",
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

    /// Case-insensitive; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "expected one of {}, got {}",
                        Provider::ALL.map(Provider::as_str).join(", "),
                        shown(s)
                    ),
                )
            })
    }
}

/// The checksum an S3 upload carries for the store to check (`ARCHIVE_CHECKSUM`).
///
/// Each provider's [`Profile`] picks one;
/// this overrides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumMode {
    /// `Content-MD5`: the store refuses a body whose MD5 differs.
    ContentMd5,
    /// No checksum header; the copy is proven by reading it back.
    None,
}

impl ChecksumMode {
    /// `md5` or `none`, as `ARCHIVE_CHECKSUM` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumMode::ContentMd5 => "md5",
            ChecksumMode::None => "none",
        }
    }
}

impl fmt::Display for ChecksumMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a provider's signing region comes from when `ARCHIVE_REGION` is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionDefault {
    /// One name every bucket of the service answers to (`auto` for R2).
    Fixed(&'static str),
    /// `auto` at a custom endpoint (an S3-compatible service); AWS itself
    /// (no endpoint) signs with the bucket's real region, which must be given.
    AutoUnlessAws,
    /// The `<region>` of a `https://s3.<region>.backblazeb2.com` endpoint.
    FromB2Endpoint,
    /// No default: the service checks the region (Supabase: the project's).
    Required,
}

/// What one S3-compatible service needs, and what its answers prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// The provider this profile is for.
    pub provider: Provider,
    /// Signing region when `ARCHIVE_REGION` is unset.
    pub region: RegionDefault,
    /// What to set `ARCHIVE_REGION` to, for messages.
    pub region_help: &'static str,
    /// The checksum every upload carries (`ARCHIVE_CHECKSUM` overrides it).
    pub checksum: ChecksumMode,
    /// Whether the ETag of a single-part object is the MD5 the service
    /// computed of the bytes it stored. (Multipart ETags, `…-N`, never are;
    /// coldsweep uploads single-part only.)
    pub md5_etag: bool,
    /// Whether the service takes S3 `DeleteObjects` (up to 1000 keys a
    /// request); without it, deletes go one key at a time.
    pub delete_objects: bool,
}

/// Every S3-compatible provider's profile. Sources for each fact are in the
/// README's "Providers" section.
pub const PROFILES: [Profile; 6] = [
    // R2 checks Content-MD5 and accepts at most one checksum per request; a
    // single-part ETag is the MD5 of the object.
    Profile {
        provider: Provider::R2,
        region: RegionDefault::Fixed("auto"),
        region_help: "auto",
        checksum: ChecksumMode::ContentMd5,
        md5_etag: true,
        delete_objects: true,
    },
    // AWS checks Content-MD5; the ETag of a plain or SSE-S3 single-part
    // object is its MD5 (SSE-KMS ETags are not, and fall back to read-back).
    Profile {
        provider: Provider::S3,
        region: RegionDefault::AutoUnlessAws,
        region_help: "the bucket's AWS region (e.g. eu-west-1)",
        checksum: ChecksumMode::ContentMd5,
        md5_etag: true,
        delete_objects: true,
    },
    // B2 rejects x-amz-checksum-* and x-amz-sdk-checksum-algorithm on
    // PutObject but checks Content-MD5; its own digest is SHA-1, so the ETag
    // is not trusted and copies are read back.
    Profile {
        provider: Provider::B2,
        region: RegionDefault::FromB2Endpoint,
        region_help: "the region in the endpoint https://s3.<region>.backblazeb2.com (e.g. us-west-004)",
        checksum: ChecksumMode::ContentMd5,
        md5_etag: false,
        delete_objects: true,
    },
    // MinIO checks Content-MD5; single-part ETag is the MD5; its default
    // region is us-east-1.
    Profile {
        provider: Provider::Minio,
        region: RegionDefault::Fixed("us-east-1"),
        region_help: "the server's MINIO_REGION (us-east-1 unless set)",
        checksum: ChecksumMode::ContentMd5,
        md5_etag: true,
        delete_objects: true,
    },
    // GCS's XML API (HMAC keys) checks Content-MD5; its ETag is not
    // documented as the MD5 for every object (composite, CMEK), so copies
    // are read back. Its S3 interoperability has no multi-object delete.
    Profile {
        provider: Provider::Gcs,
        region: RegionDefault::Fixed("auto"),
        region_help: "auto",
        checksum: ChecksumMode::ContentMd5,
        md5_etag: false,
        delete_objects: false,
    },
    // Supabase's S3 endpoint ignores Content-MD5 (it re-uploads the stream
    // to its own backend) and reports that backend's ETag, multipart for
    // larger objects: nothing it says proves the bytes. It takes DeleteObjects.
    Profile {
        provider: Provider::SupabaseS3,
        region: RegionDefault::Required,
        region_help: "the project's region from Storage > S3 connection (e.g. eu-west-2)",
        checksum: ChecksumMode::None,
        md5_etag: false,
        delete_objects: true,
    },
];

impl Profile {
    /// The profile of `provider`; `None` for `fs`, which is not an S3 service.
    pub fn of(provider: Provider) -> Option<Profile> {
        PROFILES.into_iter().find(|p| p.provider == provider)
    }

    /// This profile with another upload checksum (`ARCHIVE_CHECKSUM`).
    pub fn with_checksum(mut self, checksum: ChecksumMode) -> Profile {
        self.checksum = checksum;
        self
    }

    /// The signing region to use when none is given, for a store at
    /// `endpoint` (`None`: the provider's default endpoint, i.e. AWS);
    /// `None` when the user must give one.
    pub fn default_region(&self, endpoint: Option<&str>) -> Option<String> {
        match self.region {
            RegionDefault::Fixed(region) => Some(region.to_owned()),
            RegionDefault::AutoUnlessAws => endpoint.map(|_| "auto".to_owned()),
            RegionDefault::FromB2Endpoint => endpoint.and_then(b2_region),
            RegionDefault::Required => None,
        }
    }

    /// Whether a store with this profile proves a blob by its ETag: the
    /// upload carried Content-MD5, which the service checked, and the
    /// service's ETag is the MD5 of what it stored. Otherwise verification
    /// must read the copy back and hash it.
    pub fn etag_proves_md5(&self) -> bool {
        self.checksum == ChecksumMode::ContentMd5 && self.md5_etag
    }
}

/// `us-west-004` from `https://s3.us-west-004.backblazeb2.com[/…]`.
fn b2_region(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let host = rest.split(['/', ':']).next()?.to_ascii_lowercase();
    let region = host.strip_prefix("s3.")?.strip_suffix(".backblazeb2.com")?;
    let ok = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| region.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_s3_provider_has_exactly_one_profile() {
        for provider in Provider::ALL {
            let matching = PROFILES.iter().filter(|p| p.provider == provider).count();
            let want = usize::from(provider != Provider::Fs);
            assert_eq!(matching, want, "{provider}");
        }
        assert_eq!(Profile::of(Provider::Fs), None);
    }

    #[test]
    fn regions_follow_the_provider() {
        let region = |p, endpoint| Profile::of(p).unwrap().default_region(endpoint);
        let any = Some("https://example.com");
        assert_eq!(region(Provider::R2, any).as_deref(), Some("auto"));
        assert_eq!(region(Provider::Gcs, any).as_deref(), Some("auto"));
        assert_eq!(region(Provider::Minio, any).as_deref(), Some("us-east-1"));
        assert_eq!(region(Provider::S3, any).as_deref(), Some("auto"));
        assert_eq!(region(Provider::S3, None), None);
        assert_eq!(region(Provider::SupabaseS3, any), None);
        for (endpoint, want) in [
            (
                "https://s3.us-west-004.backblazeb2.com",
                Some("us-west-004"),
            ),
            (
                "https://S3.EU-Central-003.backblazeb2.com/",
                Some("eu-central-003"),
            ),
            (
                "http://s3.us-east-005.backblazeb2.com:443/x",
                Some("us-east-005"),
            ),
            ("https://s3.backblazeb2.com", None),
            ("https://s3.us-west-004.backblazeb2.com.evil.example", None),
            ("https://bucket.s3.us-west-004.amazonaws.com", None),
        ] {
            assert_eq!(
                region(Provider::B2, Some(endpoint)).as_deref(),
                want,
                "{endpoint}"
            );
        }
        assert_eq!(region(Provider::B2, None), None);
    }

    #[test]
    fn only_a_checked_upload_and_an_md5_etag_prove_a_copy() {
        let proves: Vec<Provider> = PROFILES
            .iter()
            .filter(|p| p.etag_proves_md5())
            .map(|p| p.provider)
            .collect();
        assert_eq!(proves, [Provider::R2, Provider::S3, Provider::Minio]);
        let r2 = Profile::of(Provider::R2).unwrap();
        assert!(!r2.with_checksum(ChecksumMode::None).etag_proves_md5());
        let supabase = Profile::of(Provider::SupabaseS3).unwrap();
        assert!(
            !supabase
                .with_checksum(ChecksumMode::ContentMd5)
                .etag_proves_md5()
        );
    }
}
