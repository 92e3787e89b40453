//! The S3 store's settings: [`S3Config`] as given, [`S3Settings`] once checked.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};
use crate::store::profile::{ChecksumMode, Profile, Provider};
use crate::store::settings::{Secret, parse_url};

/// What an S3 endpoint should look like, for messages.
pub(crate) const ENDPOINT_EXPECTED: &str =
    "an http:// or https:// URL such as https://<account>.r2.cloudflarestorage.com";

/// Connection settings for an S3-compatible store, as given; [`S3Config::build`]
/// checks them.
///
/// `Debug` hides both the secret and the access key id.
#[derive(Clone, PartialEq, Eq)]
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
    /// Upload checksum instead of the provider profile's (`ARCHIVE_CHECKSUM`);
    /// `None` keeps the profile's.
    pub checksum: Option<ChecksumMode>,
}

/// The names messages give each value of an [`S3Config`]: the variables it
/// was read from (`ARCHIVE_ENDPOINT`, …) or plain words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S3Names {
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// The region's name.
    pub region: &'static str,
    /// The access key id's name.
    pub access_key_id: &'static str,
    /// The secret access key's name.
    pub secret_access_key: &'static str,
}

impl S3Names {
    /// Plain words, for settings that came from code rather than variables.
    pub const PLAIN: S3Names = S3Names {
        endpoint: "endpoint",
        region: "region",
        access_key_id: "access key id",
        secret_access_key: "secret access key",
    };
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key id is half a credential: show only whether it is set.
        let redacted = |set: bool| if set { "Some(***)" } else { "None" };
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &format_args!("{}", redacted(self.access_key_id.is_some())),
            )
            .field(
                "secret_access_key",
                &format_args!("{}", redacted(self.secret_access_key.is_some())),
            )
            .field("checksum", &self.checksum)
            .finish()
    }
}

impl S3Config {
    /// Check every value once, for `provider` (an S3-compatible one), naming
    /// each bad value by `names`: the region is not empty (and not `auto`
    /// for AWS itself, which signs with the bucket's region), the endpoint a
    /// plain `http(s)://` URL, both credentials present and not empty
    /// (they are never read from the environment, so a store without both
    /// could only fail later).
    pub fn build(&self, provider: Provider, names: &S3Names) -> Result<S3Settings> {
        let invalid = |why: String| Err(Error::new(ErrorKind::InvalidInput, why));
        let Some(mut profile) = Profile::of(provider) else {
            return invalid(format!(
                "S3 store: provider {:?} is not an S3-compatible provider; expected one of {}",
                provider.as_str(),
                super::super::profile::PROFILES
                    .map(|p| p.provider.as_str())
                    .join(", ")
            ));
        };
        if let Some(checksum) = self.checksum {
            profile = profile.with_checksum(checksum);
        }
        let region = self.region.trim();
        if region.is_empty() {
            return invalid(format!(
                "{}: expected a signing region (`auto` for R2, e.g. `us-east-1` for AWS), got \
                 nothing",
                names.region
            ));
        }
        let endpoint = self
            .endpoint
            .as_deref()
            .map(|raw| parse_url(names.endpoint, ENDPOINT_EXPECTED, raw.trim()))
            .transpose()?;
        // Without an endpoint the store is AWS, which signs with the bucket's
        // real region; `auto` (right for R2) would fail on every request.
        if endpoint.is_none() && region.eq_ignore_ascii_case("auto") {
            return invalid(format!(
                "{}: expected the bucket's AWS region (e.g. eu-west-1) when no endpoint \
                 is set (AWS S3); \"auto\" only works with an endpoint such as R2's",
                names.region
            ));
        }
        let access_key_id = self.access_key_id.as_deref().filter(|id| !id.is_empty());
        let secret_access_key = self
            .secret_access_key
            .as_ref()
            .filter(|secret| !secret.expose().is_empty());
        let (Some(access_key_id), Some(secret_access_key)) = (access_key_id, secret_access_key)
        else {
            return invalid(format!(
                "{provider}: both an access key id ({}) and a secret access key ({}) are required",
                names.access_key_id, names.secret_access_key
            ));
        };
        Ok(S3Settings {
            profile,
            endpoint,
            region: region.to_owned(),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.clone(),
        })
    }
}

/// Checked connection settings for an S3-compatible store
/// ([`S3Config::build`]).
///
/// `Debug` hides both the secret and the access key id.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The provider's profile, with [`S3Config::checksum`] applied.
    pub(in crate::store) profile: Profile,
    pub(in crate::store) endpoint: Option<String>,
    pub(in crate::store) region: String,
    pub(in crate::store) access_key_id: String,
    pub(in crate::store) secret_access_key: Secret,
}

impl S3Settings {
    /// The provider whose profile the store follows.
    pub fn provider(&self) -> Provider {
        self.profile.provider
    }

    /// The endpoint URL without a trailing `/`; `None` for AWS.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The signing region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The upload checksum: the profile's, or the one [`S3Config::checksum`] set.
    pub fn checksum(&self) -> ChecksumMode {
        self.profile.checksum
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("provider", &self.profile.provider)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &format_args!("***"))
            .field("secret_access_key", &format_args!("***"))
            .field("checksum", &self.profile.checksum)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: S3Names = S3Names {
        endpoint: "E",
        region: "R",
        access_key_id: "K",
        secret_access_key: "S",
    };

    fn config() -> S3Config {
        S3Config {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: "auto".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some(Secret::new("hunter2-very-secret")),
            checksum: None,
        }
    }

    #[test]
    fn build_checks_every_value_once_naming_it() {
        let built = config().build(Provider::R2, &NAMES).unwrap();
        assert_eq!(built.endpoint(), Some("http://127.0.0.1:9000"));
        assert_eq!(built.region(), "auto");
        assert_eq!(built.provider(), Provider::R2);
        assert_eq!(built.checksum(), ChecksumMode::ContentMd5);

        let aws_auto = S3Config {
            endpoint: None,
            ..config()
        };
        let cases = [
            (
                S3Config {
                    endpoint: Some("ftp://x".into()),
                    ..config()
                },
                "E: ",
            ),
            (
                S3Config {
                    region: " ".into(),
                    ..config()
                },
                "R: ",
            ),
            (aws_auto, "R: "),
            (
                S3Config {
                    secret_access_key: Some(Secret::new("")),
                    ..config()
                },
                "r2: ",
            ),
            (
                S3Config {
                    access_key_id: None,
                    ..config()
                },
                "r2: ",
            ),
        ];
        for (cfg, starts) in cases {
            let err = cfg.build(Provider::R2, &NAMES).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert!(err.message().starts_with(starts), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
        let err = config().build(Provider::Fs, &NAMES).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn debug_of_checked_settings_hides_credentials() {
        let built = config().build(Provider::Minio, &NAMES).unwrap();
        let shown = format!("{built:?} {built:#?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("AKIDEXAMPLE"),
            "{shown}"
        );
        assert!(
            shown.contains("127.0.0.1:9000") && shown.contains("Minio"),
            "{shown}"
        );
    }
}
