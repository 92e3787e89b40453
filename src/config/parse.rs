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

/// What a size setting takes, for its messages.
const SIZE_EXPECTED: &str = "a size such as 800MB, 1.5GiB or 500000000 (a whole number of bytes; \
                             kB, MB, GB, TB = 1000^n, KiB, MiB, GiB, TiB = 1024^n)";

/// A size in bytes: a number, optionally with a fraction, and an optional
/// unit (`B`, decimal `kB`…`TB`, binary `KiB`…`TiB`; letters in any case).
/// The result must be a whole number of bytes, at most `i64::MAX` (what a
/// catalog's `int8` sum can hold).
pub(crate) fn parse_size(name: &str, raw: &str) -> Result<u64> {
    let bad = || invalid(name, SIZE_EXPECTED, raw);
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let multiplier: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || fraction.len() > 12 {
        return Err(bad());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(fraction.len() as u32);
    let part = fraction_value * multiplier;
    if !part.is_multiple_of(scale) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{name}: expected {SIZE_EXPECTED}, got {} (not a whole number of bytes)",
                shown(raw)
            ),
        ));
    }
    whole
        .checked_mul(multiplier)
        .and_then(|b| b.checked_add(part / scale))
        .filter(|b| *b <= i64::MAX as u128)
        .map(|b| b as u64)
        .ok_or_else(bad)
}

/// A minimum age: a duration as [`parse_duration`] takes it, or zero
/// (`0`, `0s`, …) for none.
pub(crate) fn parse_min_age(name: &str, raw: &str) -> Result<Option<Duration>> {
    let zero =
        raw.bytes().all(|b| b == b'0') || humantime::parse_duration(raw).is_ok_and(|d| d.is_zero());
    if zero {
        return Ok(None);
    }
    parse_duration(name, raw).map(Some)
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
    fn sizes_take_decimal_and_binary_units() {
        for (raw, want) in [
            ("500000000", 500_000_000),
            ("0", 0),
            ("800MB", 800_000_000),
            ("800 MB", 800_000_000),
            ("800mb", 800_000_000),
            ("1.5GiB", 1_610_612_736),
            ("1.5GB", 1_500_000_000),
            ("2kB", 2_000),
            ("2KiB", 2_048),
            ("3TB", 3_000_000_000_000),
            ("1TiB", 1 << 40),
            ("0.5kB", 500),
            ("42B", 42),
        ] {
            assert_eq!(parse_size("Q", raw).unwrap(), want, "{raw}");
        }
        for bad in [
            "",
            "MB",
            "-1",
            "1,5GB",
            "1.5",
            "1.2345kB",
            "10 parsecs",
            "1e9",
            "1..5GB",
            "5 M B",
            "٣MB",
            "99999999TB",
        ] {
            let err = parse_size("Q", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(
                err.message()
                    .starts_with("Q: expected a size such as 800MB, 1.5GiB or 500000000"),
                "{err}"
            );
        }
    }

    #[test]
    fn min_age_takes_days_and_zero_means_none() {
        assert_eq!(parse_min_age("A", "0").unwrap(), None);
        assert_eq!(parse_min_age("A", "0s").unwrap(), None);
        assert_eq!(
            parse_min_age("A", "30d").unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            parse_min_age("A", "12h").unwrap(),
            Some(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            parse_min_age("A", "3600").unwrap(),
            Some(Duration::from_secs(3600))
        );
        for bad in ["-1d", "soon", "400d", "5M"] {
            let err = parse_min_age("A", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.message().starts_with("A: expected a duration"), "{err}");
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
