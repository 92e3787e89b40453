//! What the stores' settings share: secrets, endpoint URLs, and which store
//! serves each role ([`ColdConfig`], [`HotConfig`]).
//!
//! Each store owns its settings type ([`S3Config`](super::s3::S3Config),
//! [`SupabaseConfig`](super::supabase::SupabaseConfig),
//! [`FsConfig`](super::fs::FsConfig)) with one `build()`
//! that checks every value once; the store then takes the checked settings.
//! `config` reads the variables and hands them here, never the other way.

use std::fmt;

use url::{Host, Url};

use super::fs::FsSettings;
use super::s3::S3Settings;
use super::supabase::SupabaseSettings;
use crate::error::{Error, ErrorKind, Result};

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

/// Where the cold store is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColdConfig {
    /// A local folder (`ARCHIVE_FS_ROOT`); buckets are sub-folders.
    Fs(FsSettings),
    /// Any S3-compatible service.
    S3(S3Settings),
}

/// Where the hot store is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotConfig {
    /// A local folder (`HOT_FS_ROOT`); the catalog's bucket is a sub-folder.
    Fs(FsSettings),
    /// An S3-compatible service (`HOT_S3_*`).
    S3(S3Settings),
    /// Supabase Storage through its REST API (`SUPABASE_*`).
    Supabase(SupabaseSettings),
}

/// A value quoted for a message, cut short so a pasted blob cannot flood a log.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    }
}

/// `{name}: expected {expected}, got "{got}"`.
pub(crate) fn invalid(name: &str, expected: impl fmt::Display, got: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{name}: expected {expected}, got {}", shown(got)),
    )
}

/// A plain `http(s)://host[:port][/path]` URL, returned as given without a
/// trailing `/`; `expected` says what was wanted, `name` is the setting.
pub(crate) fn parse_url(name: &str, expected: &str, raw: &str) -> Result<String> {
    // `user:password@host` would put a credential in every message and log
    // line that shows the URL, so refuse it without echoing it.
    if raw.contains('@') {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{name}: expected {expected} without user info, \
                 got a URL containing '@' (value not shown; put credentials in the \
                 access key variables)"
            ),
        ));
    }
    let bad = || invalid(name, expected, raw);
    // `url` would forgive these (`\` as `/`, extra slashes, an empty port,
    // a non-ASCII host); a typo should fail here, not reach a store.
    if !raw.is_ascii()
        || raw
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(bad());
    }
    let (_, rest) = raw.split_once("://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.ends_with(':') {
        return Err(bad());
    }
    let url = Url::parse(raw).map_err(|_| bad())?;
    let host_ok = match url.host() {
        Some(Host::Domain(domain)) => domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => true,
        None => false,
    };
    let plain = matches!(url.scheme(), "http" | "https")
        && url.query().is_none()
        && url.fragment().is_none();
    if !host_ok || !plain {
        return Err(bad());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str = "a URL";

    #[test]
    fn plain_http_urls_only() {
        for (raw, want) in [
            ("http://localhost", "http://localhost"),
            ("https://[::1]:9000/", "https://[::1]:9000"),
            ("HTTPS://s3.example.com/base", "HTTPS://s3.example.com/base"),
            (
                "http://127.0.0.1:54321/storage/v1/",
                "http://127.0.0.1:54321/storage/v1",
            ),
        ] {
            assert_eq!(parse_url("U", EXPECTED, raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "acct.r2.cloudflarestorage.com",
            "ftp://host",
            "https://",
            "https:///path",
            "https://host:",
            "https://host:99999",
            "https://host:port",
            "https://ho st",
            "https://host?x=1",
            "https://host#frag",
            "https://[::1",
            "https://[nothex]:9000",
            "https://ho_st",
            "https://höst",
            "https://host\\path",
        ] {
            let err = parse_url("U", EXPECTED, bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert_eq!(
                err.message(),
                format!("U: expected a URL, got {bad:?}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_info_is_refused_without_echoing_it() {
        let err = parse_url("U", EXPECTED, "https://key:hunter2@host").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            err.message()
                .starts_with("U: expected a URL without user info")
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
