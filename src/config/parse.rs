//! Parsing helpers. Each takes the variable name so every message names it.

use std::time::Duration;

use super::variables::{ARCHIVE_BUCKET, ARCHIVE_PROBE_PREFIX};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{KeyPrefix, ObjectKey};
pub(super) use crate::store::settings::{invalid, shown};

/// The lookup with trimming and "empty means unset" applied once.
pub(super) struct Vars<F>(pub(super) F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn or_default(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn required(&self, name: &str, expected: &str, when: &str) -> Result<String> {
        self.get(name).ok_or_else(|| missing(name, expected, when))
    }
}

/// Reads the process environment; a value that is not UTF-8 is converted
/// lossily so that it fails validation instead of passing as "unset".
pub(super) fn env_lookup(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

pub(super) fn missing(name: &str, expected: &str, when: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{name}: expected {expected} {when}, got nothing (unset or empty)"),
    )
}

pub(super) fn parse_whole(name: &str, raw: &str, min: u64, max: u64) -> Result<u64> {
    let expected = if max == u64::from(u32::MAX) {
        format!("a whole number, {min} or more")
    } else {
        format!("a whole number from {min} to {max}")
    };
    // Digits only: `u64::from_str` would also take a leading `+`.
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(name, expected, raw));
    }
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, expected, raw)),
    }
}

pub(super) fn parse_duration(name: &str, raw: &str) -> Result<Duration> {
    let expected = "a duration greater than zero and at most 365 days, \
                    such as 30s, 1m30s, 2h, 500ms or a whole number of seconds";
    let duration = if raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| invalid(name, expected, raw).with_source(e))?
    } else if raw.contains('M') {
        // humantime reads `M` as months; `5M` almost always meant minutes.
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{name}: expected {expected}, got {} ('M' means months; write 'm' for minutes)",
                shown(raw)
            ),
        ));
    } else {
        humantime::parse_duration(raw).map_err(|e| invalid(name, expected, raw).with_source(e))?
    };
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(invalid(name, expected, raw));
    }
    Ok(duration)
}

/// S3's bucket naming rules. Checked for every provider (`fs` included) so a
/// bucket name is portable between cold stores and safe as a folder name.
pub(super) fn parse_bucket(raw: &str) -> Result<String> {
    let expected = "an S3 bucket name (3 to 63 lowercase letters, digits, '-' or '.', \
                    starting and ending with a letter or digit)";
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let why = if raw.len() < 3 {
        Some("too short")
    } else if raw.len() > 63 {
        Some("too long")
    } else if !raw.chars().all(allowed) {
        Some("only lowercase letters, digits, '-' and '.' are allowed")
    } else if !edge_ok(raw.chars().next()) || !edge_ok(raw.chars().next_back()) {
        Some("must start and end with a letter or digit")
    } else if raw.contains("..") {
        Some("two '.' in a row")
    } else if raw.parse::<std::net::Ipv4Addr>().is_ok() {
        Some("formatted like an IP address")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{ARCHIVE_BUCKET}: expected {expected}, got {} ({why})",
                shown(raw)
            ),
        )),
        None => Ok(raw.to_owned()),
    }
}

/// A probe folder: a valid key prefix (surrounding `/` trimmed) that fits
/// under `path_prefix` and stays out of the archive's `jobs/` layout, so a
/// probe can never touch an archived blob.
pub(super) fn parse_probe_prefix(raw: &str, path_prefix: &KeyPrefix) -> Result<ObjectKey> {
    let expected = "a folder name such as .coldsweep-probe, outside the archive's jobs/ folder";
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Err(invalid(ARCHIVE_PROBE_PREFIX, expected, raw));
    }
    let key = ObjectKey::new(trimmed)
        .map_err(|e| invalid(ARCHIVE_PROBE_PREFIX, expected, raw).with_source(e))?;
    let layout_root = crate::keys::task_html_object_path("j", "t");
    let layout_root = layout_root.split('/').next().unwrap_or_default();
    if key.as_str().split('/').next() == Some(layout_root) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{ARCHIVE_PROBE_PREFIX}: expected {expected}, got {} (archived blobs live under \
                 {layout_root}/)",
                shown(raw)
            ),
        ));
    }
    if let Some(prefix) = path_prefix.as_key() {
        prefix
            .join(key.as_str())
            .map_err(|e| invalid(ARCHIVE_PROBE_PREFIX, expected, raw).with_source(e))?;
    }
    Ok(key)
}

/// Upper bound for every duration: a typo such as `5y` should fail at
/// start-up rather than overflow a timer or a database interval later.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (raw, want) in [
            ("30s", Duration::from_secs(30)),
            ("1m", Duration::from_secs(60)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("500ms", Duration::from_millis(500)),
            ("45", Duration::from_secs(45)),
            ("365d", MAX_DURATION),
        ] {
            assert_eq!(parse_duration("X", raw).unwrap(), want, "{raw}");
        }
        for bad in ["0", "0s", "-1s", "5M", "2y", "366d", "5 parsecs"] {
            let err = parse_duration("X", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().starts_with("X: "), "{err}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket", "my.bucket.2", "0ab", &"a".repeat(63)] {
            assert_eq!(parse_bucket(good).unwrap(), good);
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "my bucket",
            "-bucket",
            "bucket-",
            ".bucket",
            "bucket.",
            "my..bucket",
            "192.168.1.1",
            "../etc",
            "a/b",
            "bücket",
        ] {
            let err = parse_bucket(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().starts_with("ARCHIVE_BUCKET: "), "{err}");
            assert!(err.message().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn whole_numbers_are_ascii_digits_in_range() {
        assert_eq!(parse_whole("N", "0", 0, 5).unwrap(), 0);
        assert_eq!(parse_whole("N", "5", 0, 5).unwrap(), 5);
        for bad in ["6", "+1", "-1", "1.5", "５", ""] {
            let err = parse_whole("N", bad, 0, 5).unwrap_err();
            assert_eq!(
                err.message(),
                format!("N: expected a whole number from 0 to 5, got {bad:?}")
            );
        }
    }
}
