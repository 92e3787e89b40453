//! The config file (`coldsweep --config coldsweep.toml`): every setting of
//! [`VARIABLES`] under a `[settings]` table, keyed by the variable's name in
//! lower case, and the `[[sources]]` declarations, kept raw for their own
//! parser.
//!
//! ```toml
//! [settings]
//! archive_provider = "r2"
//! archive_bucket = "crawler-archive"
//! archive_retention_jobs = 3
//! ```
//!
//! A value may be a TOML string, integer, float or boolean: it is turned into
//! the text an environment variable would hold and checked by the variable's
//! own parser, so a value means the same wherever it is given. Each value is
//! checked where it stands, by its parser with every other variable at a
//! placeholder, so a refusal names the file, line and column; rules between
//! variables (a region the provider needs, …) are checked when the whole
//! configuration is read.
//!
//! Precedence, highest first: flag, environment variable, file, default.
//! [`layered`] is that rule for one value; [`ConfigFile::under`] applies it to
//! a whole lookup, and [`env_over`] puts the process environment over a file.
//! An empty value counts as unset at every layer.
//!
//! ```no_run
//! use coldsweep::config::file::env_over;
//! use coldsweep::config::{Config, ConfigFile, HotConfig};
//!
//! let file = ConfigFile::load("coldsweep.toml", &[])?;
//! let config = Config::from_lookup(env_over(Some(&file)))?;
//! let hot = HotConfig::from_lookup(env_over(Some(&file)))?;
//! # Ok::<(), coldsweep::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::check_alone;
use super::variables::VARIABLES;
use crate::error::{Error, ErrorKind, Result};

/// The table that holds the settings.
pub const SETTINGS_TABLE: &str = "settings";
/// The key reserved for source declarations (`[[sources]]`).
pub const SOURCES_KEY: &str = "sources";

/// Whether a key's value is a secret, for the file's permissions check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Secrecy {
    /// Not a secret.
    Public,
    /// Always a secret (a key, a password).
    Secret,
    /// A URL, a secret when it holds a password (`postgres://user:password@…`
    /// or a `password=` query parameter).
    UrlPassword,
}

/// A key the file may hold besides [`VARIABLES`]: an embedder's own settings
/// (the binary's `DATABASE_URL`, `COLDSWEEP_LOG_FORMAT`, …). The loader only
/// reads them; checking their values is the embedder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraKey {
    /// The variable's name (`DATABASE_URL`); the file's key is it in lower case.
    pub name: &'static str,
    /// Whether its value is a secret.
    pub secrecy: Secrecy,
}

/// Where in the file a key is: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    fn of(text: &str, offset: usize) -> Position {
        let before = &text[..offset.min(text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// One setting as the file gives it.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    text: String,
    at: Position,
    secret: bool,
}

/// Where the `sources` declarations are in the file, for their parser: it
/// reads [`ConfigFile::text`] again with its own types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSources {
    /// Where the `sources` key is.
    pub at: Position,
    /// Byte range of the `sources` key in [`ConfigFile::text`].
    pub span: Range<usize>,
}

/// A config file that did not hide its secrets from other users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    /// The file's permission bits (`0o644`, …).
    pub mode: u32,
    /// The variables whose values are secrets (names only).
    pub secrets: Vec<&'static str>,
}

/// A config file, read and checked: each value is the text an environment
/// variable would hold.
#[derive(Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    entries: BTreeMap<&'static str, Entry>,
    sources: Option<RawSources>,
    mode: Option<u32>,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: BTreeMap<&str, &str> = self
            .entries
            .iter()
            .map(|(name, e)| (*name, if e.secret { "***" } else { e.text.as_str() }))
            .collect();
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("settings", &entries)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl ConfigFile {
    /// Read and check the file at `path` ([`ConfigFile::parse`]). A file that cannot be read is an
    /// [`ErrorKind::InvalidInput`] error naming it.
    pub fn load(path: impl AsRef<Path>, extra: &[ExtraKey]) -> Result<ConfigFile> {
        let path = path.as_ref();
        let read_error = |e: std::io::Error| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("config file {}: cannot read it", path.display()),
            )
            .with_source(e)
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let mut file = ConfigFile::parse(path, text, extra)?;
        file.mode = permission_bits(path);
        Ok(file)
    }

    /// Parse `text`, naming it `path` in messages. Every error is an
    /// [`ErrorKind::InvalidInput`] error that starts `path:line:column:`.
    pub fn parse(path: impl AsRef<Path>, text: String, extra: &[ExtraKey]) -> Result<ConfigFile> {
        let path = path.as_ref().to_path_buf();
        let (entries, sources) = read_document(&path, &text, extra)?;
        Ok(ConfigFile {
            path,
            text,
            entries,
            sources,
            mode: None,
        })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole document, for the source declarations' parser.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the `sources` declarations are, if the file has any.
    pub fn sources(&self) -> Option<&RawSources> {
        self.sources.as_ref()
    }

    /// The value the file gives variable `name` (`ARCHIVE_BUCKET`), as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|e| e.text.as_str())
    }

    /// `path:line:column` of variable `name`'s key, for messages about its value.
    pub fn location(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|e| self.location_of(e.at))
    }

    fn location_of(&self, at: Position) -> String {
        location(&self.path, at)
    }

    /// The variables the file sets, in name order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.entries.keys().copied()
    }

    /// A lookup giving `over`'s value (flags, the environment: whatever
    /// outranks the file), else this file's ([`layered`]).
    pub fn under<'a>(
        &'a self,
        over: impl Fn(&str) -> Option<String> + 'a,
    ) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| layered(over(name), self.get(name))
    }

    /// The secrets the file holds when group or others may read it (unix
    /// permission bits); `None` when it holds none, is private, or was not
    /// read from disk.
    pub fn exposed_secrets(&self) -> Option<Exposure> {
        let mode = self.mode?;
        if mode & 0o044 == 0 {
            return None;
        }
        let secrets: Vec<&'static str> = self
            .entries
            .iter()
            .filter(|(_, e)| e.secret)
            .map(|(name, _)| *name)
            .collect();
        (!secrets.is_empty()).then_some(Exposure { mode, secrets })
    }
}

/// One value by precedence: `over` (a flag or the environment) unless it is
/// unset or blank, else the file's unless blank; `None` leaves the default.
pub fn layered(over: Option<String>, file: Option<&str>) -> Option<String> {
    let set = |v: &str| !v.trim().is_empty();
    match over {
        Some(value) if set(&value) => Some(value),
        _ => file.filter(|v| set(v)).map(str::to_owned),
    }
}

/// The process environment over `file`, when there is one: the lookup
/// [`Config::from_lookup`](super::Config::from_lookup) and the stores'
/// `from_lookup` take.
pub fn env_over(file: Option<&ConfigFile>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        layered(
            super::parse::env_lookup(name),
            file.and_then(|f| f.get(name)),
        )
    }
}

fn location(path: &Path, at: Position) -> String {
    format!("{}:{}:{}", path.display(), at.line, at.column)
}

fn bad(path: &Path, text: &str, span: Range<usize>, message: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{}: {message}",
            location(path, Position::of(text, span.start))
        ),
    )
}

type Entries = BTreeMap<&'static str, Entry>;

type Pair<'t, 'i> = (
    &'t toml::Spanned<toml::de::DeString<'i>>,
    &'t toml::Spanned<DeValue<'i>>,
);

/// A table's keys and values in the order they appear in the file.
fn in_file_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Pair<'t, 'i>> {
    let mut pairs: Vec<Pair<'t, 'i>> = table.iter().collect();
    pairs.sort_by_key(|(key, _)| key.span().start);
    pairs
}

/// `a table`, `an array`.
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// The document's settings and where its sources are.
fn read_document(
    path: &Path,
    text: &str,
    extra: &[ExtraKey],
) -> Result<(Entries, Option<RawSources>)> {
    let document = DeTable::parse(text).map_err(|e| {
        // The message only: the error's own `Display` quotes the line, which
        // may hold a secret.
        bad(path, text, e.span().unwrap_or(0..0), e.message().trim())
    })?;
    let mut entries = Entries::new();
    let mut sources = None;
    // In the file's order, so the first mistake reported is the first made.
    for (key, value) in in_file_order(document.get_ref()) {
        match key.get_ref().as_ref() {
            SETTINGS_TABLE => {
                let Some(table) = value.get_ref().as_table() else {
                    return Err(bad(
                        path,
                        text,
                        key.span(),
                        format_args!(
                            "{SETTINGS_TABLE}: expected a table ([{SETTINGS_TABLE}]), got {}",
                            with_article(value.get_ref().type_str())
                        ),
                    ));
                };
                for (key, value) in in_file_order(table) {
                    let (name, entry) = read_setting(path, text, key, value, extra)?;
                    entries.insert(name, entry);
                }
            }
            SOURCES_KEY => {
                sources = Some(RawSources {
                    at: Position::of(text, key.span().start),
                    span: key.span(),
                });
            }
            other => {
                let hint = suggestion(other, &[SETTINGS_TABLE, SOURCES_KEY])
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(bad(
                    path,
                    text,
                    key.span(),
                    format_args!(
                        "unknown table `{other}`: a config file has [{SETTINGS_TABLE}] and \
                         [[{SOURCES_KEY}]]{hint}"
                    ),
                ));
            }
        }
    }
    Ok((entries, sources))
}

/// One `[settings]` key and value, checked by the variable's parser.
fn read_setting(
    path: &Path,
    text: &str,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    value: &toml::Spanned<DeValue<'_>>,
    extra: &[ExtraKey],
) -> Result<(&'static str, Entry)> {
    let raw_key = key.get_ref().as_ref();
    let at = Position::of(text, key.span().start);
    let known = VARIABLES
        .iter()
        .map(|v| {
            (
                v.name,
                if v.secret {
                    Secrecy::Secret
                } else {
                    Secrecy::Public
                },
            )
        })
        .chain(extra.iter().map(|e| (e.name, e.secrecy)))
        .find(|(name, _)| name.to_ascii_lowercase() == raw_key);
    let Some((name, secrecy)) = known else {
        let keys: Vec<String> = VARIABLES
            .iter()
            .map(|v| v.name)
            .chain(extra.iter().map(|e| e.name))
            .map(str::to_ascii_lowercase)
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let flag = VARIABLES
            .iter()
            .find(|v| v.flag == raw_key.replace('_', "-"))
            .map(|v| v.name.to_ascii_lowercase());
        let hint = match flag.as_deref().or_else(|| suggestion(raw_key, &keys)) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => " (the settings are the variables of the README's Configuration table, in \
                     lower case)"
                .to_owned(),
        };
        return Err(bad(
            path,
            text,
            key.span(),
            format_args!("unknown setting `{raw_key}` in [{SETTINGS_TABLE}]{hint}"),
        ));
    };
    let Some(value_text) = value_text(value.get_ref()) else {
        return Err(bad(
            path,
            text,
            key.span(),
            format_args!(
                "{raw_key}: expected a string, number or boolean, got {}",
                with_article(value.get_ref().type_str())
            ),
        ));
    };
    // Empty counts as unset, as in the environment: nothing to check.
    if !value_text.trim().is_empty() && VARIABLES.iter().any(|v| v.name == name) {
        check_alone(name, &value_text).map_err(|e| e.context(location(path, at)))?;
    }
    let secret = match secrecy {
        Secrecy::Public => false,
        Secrecy::Secret => true,
        Secrecy::UrlPassword => url_has_password(&value_text),
    };
    let entry = Entry {
        text: value_text,
        at,
        secret,
    };
    Ok((name, entry))
}

/// The text an environment variable would hold for `value`; `None` for
/// tables, arrays and dates.
fn value_text(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(
            i128::from_str_radix(i.as_str(), i.radix())
                .map_or_else(|_| i.to_string(), |n| n.to_string()),
        ),
        DeValue::Float(f) => Some(f.as_str().to_owned()),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

/// Whether a URL carries a password: `user:password@` or `password=`.
fn url_has_password(text: &str) -> bool {
    let user_info = url::Url::parse(text)
        .ok()
        .is_some_and(|u| u.password().is_some());
    let query = text.split_once('?').is_some_and(|(_, q)| {
        q.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("password"))
        })
    });
    user_info || query
}

/// The candidate `key` most likely meant: the same in another case, else the
/// nearest by edits when it is close.
fn suggestion<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    if let Some(same) = candidates.iter().find(|c| **c == lower) {
        return Some(same);
    }
    let (best, distance) = candidates
        .iter()
        .map(|c| (*c, edit_distance(&lower, c)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (lower.chars().count() / 4).clamp(1, 3)).then_some(best)
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The file's permission bits, where the platform has them.
fn permission_bits(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::SECRET;
    use crate::config::{Config, HotConfig};

    const EXTRA: &[ExtraKey] = &[
        ExtraKey {
            name: "DATABASE_URL",
            secrecy: Secrecy::UrlPassword,
        },
        ExtraKey {
            name: "COLDSWEEP_LOG_FORMAT",
            secrecy: Secrecy::Public,
        },
    ];

    fn parse(text: &str) -> Result<ConfigFile> {
        ConfigFile::parse("cs.toml", text.to_owned(), EXTRA)
    }

    fn parse_err(text: &str) -> Error {
        match parse(text) {
            Ok(file) => panic!("expected an error for {text:?}, got {file:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                e
            }
        }
    }

    #[test]
    fn values_of_every_toml_type_become_the_text_of_a_variable() {
        let file = parse(
            "# a comment\n\
             [settings]\n\
             archive_provider = \"r2\"\n\
             archive_bucket = 'crawler-archive'\n\
             archive_retention_jobs = 3\n\
             archive_batch_size = 1_000\n\
             archive_concurrency = 0x10\n\
             archive_hot_quota = \"1.5GiB\"\n\
             archive_missing_stop_percent = 12\n\
             database_url = \"sqlite:catalog.db\"\n\
             coldsweep_log_format = \"json\"\n",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = file.names().map(|n| (n, file.get(n).unwrap())).collect();
        assert_eq!(
            got,
            [
                ("ARCHIVE_BATCH_SIZE", "1000"),
                ("ARCHIVE_BUCKET", "crawler-archive"),
                ("ARCHIVE_CONCURRENCY", "16"),
                ("ARCHIVE_HOT_QUOTA", "1.5GiB"),
                ("ARCHIVE_MISSING_STOP_PERCENT", "12"),
                ("ARCHIVE_PROVIDER", "r2"),
                ("ARCHIVE_RETENTION_JOBS", "3"),
                ("COLDSWEEP_LOG_FORMAT", "json"),
                ("DATABASE_URL", "sqlite:catalog.db"),
            ]
        );
        assert_eq!(
            file.location("ARCHIVE_RETENTION_JOBS").as_deref(),
            Some("cs.toml:5:1")
        );
        // The library's parsers read it as they read the environment.
        let config = Config::from_lookup(file.under(|_| None)).unwrap().unwrap();
        assert_eq!(config.bucket, "crawler-archive");
        assert_eq!(config.batch_size, 1000);
        assert_eq!(config.concurrency, 16);
        assert_eq!(config.hot_quota, Some(1_610_612_736));
        assert!(file.sources().is_none());

        // Floats and booleans keep their text; the parser decides.
        let err = parse_err("[settings]\narchive_hot_quota = 1.5\n");
        assert!(
            err.message()
                .starts_with("cs.toml:2:1: ARCHIVE_HOT_QUOTA: expected a size")
                && err
                    .message()
                    .ends_with("got \"1.5\" (not a whole number of bytes)"),
            "{err}"
        );
        let err = parse_err("[settings]\narchive_batch_size = true\n");
        assert_eq!(
            err.message(),
            "cs.toml:2:1: ARCHIVE_BATCH_SIZE: expected a whole number from 1 to 10000, got \"true\""
        );
        // An empty value is unset, as in the environment: the default holds.
        let file = parse("[settings]\narchive_provider = \"fs\"\narchive_bucket = \"cold-bucket\"\narchive_fs_root = \"\"\narchive_interval = \"\"\n").unwrap();
        let config = Config::from_lookup(file.under(|_| None)).unwrap().unwrap();
        assert_eq!(config.interval, std::time::Duration::from_secs(60));
        // An empty file, or an empty [settings], sets nothing.
        assert_eq!(parse("").unwrap().names().count(), 0);
        assert_eq!(parse("[settings]\n").unwrap().names().count(), 0);
    }

    #[test]
    fn precedence_is_flag_then_environment_then_file_then_default() {
        // `over` stands for the flag-or-environment layer.
        assert_eq!(
            layered(Some("flag".into()), Some("file")),
            Some("flag".into())
        );
        assert_eq!(layered(None, Some("file")), Some("file".into()));
        assert_eq!(
            layered(Some("  ".into()), Some("file")),
            Some("file".into())
        );
        assert_eq!(layered(None, Some("")), None);
        assert_eq!(layered(None, None), None);

        let file = parse("[settings]\narchive_provider = \"fs\"\narchive_bucket = \"from-file\"\narchive_interval = \"5m\"\n").unwrap();
        let over = |name: &str| (name == "ARCHIVE_BUCKET").then(|| "from-env".to_owned());
        let config = Config::from_lookup(file.under(over)).unwrap().unwrap();
        assert_eq!(config.bucket, "from-env");
        assert_eq!(config.interval, std::time::Duration::from_secs(300));
        // Unset everywhere: the default.
        assert_eq!(config.retention_jobs, 3);
    }

    #[test]
    fn a_value_the_parser_refuses_names_file_line_and_column() {
        let err = parse_err("[settings]\n\n  archive_batch_size = \"abc\"\n");
        assert_eq!(
            err.message(),
            "cs.toml:3:3: ARCHIVE_BATCH_SIZE: expected a whole number from 1 to 10000, got \"abc\""
        );
        for (line, name) in [
            ("archive_provider = \"ftp\"", "ARCHIVE_PROVIDER"),
            ("archive_bucket = \"NO\"", "ARCHIVE_BUCKET"),
            ("archive_interval = \"5M\"", "ARCHIVE_INTERVAL"),
            ("archive_lease = \"1s\"", "ARCHIVE_LEASE"),
            ("archive_probe_prefix = \"jobs\"", "ARCHIVE_PROBE_PREFIX"),
            ("archive_endpoint = \"not a url\"", "ARCHIVE_ENDPOINT"),
            ("archive_checksum = \"sha1\"", "ARCHIVE_CHECKSUM"),
            ("hot_store = \"ftp\"", "HOT_STORE"),
            ("hot_s3_endpoint = \"x\"", "HOT_S3_ENDPOINT"),
            ("supabase_url = \"x\"", "SUPABASE_URL"),
            (
                "supabase_service_role_key = \"sb_publishable_x\"",
                "SUPABASE_SERVICE_ROLE_KEY",
            ),
        ] {
            let err = parse_err(&format!("[settings]\n{line}\n"));
            assert!(
                err.message().starts_with(&format!("cs.toml:2:1: {name}: ")),
                "{err}"
            );
        }
        // A secret the parser refuses is not echoed.
        let err = parse_err(&format!(
            "[settings]\nsupabase_secret_key = \"{SECRET} x\"\n"
        ));
        assert!(
            err.message()
                .starts_with("cs.toml:2:1: SUPABASE_SECRET_KEY: "),
            "{err}"
        );
        assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
    }

    #[test]
    fn good_values_pass_alone_whatever_the_other_variables() {
        for var in VARIABLES {
            if let Some(default) = var.default {
                check_alone(var.name, default).unwrap();
            }
        }
        for (name, value) in [
            ("ARCHIVE_PROVIDER", "supabase-s3"),
            ("ARCHIVE_REGION", "eu-central-1"),
            ("ARCHIVE_ACCESS_KEY_ID", "AKIA123"),
            ("ARCHIVE_SECRET_ACCESS_KEY", SECRET),
            ("ARCHIVE_FS_ROOT", "/var/lib/cold"),
            ("HOT_STORE", "supabase"),
            ("HOT_STORE", "s3"),
            ("HOT_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SERVICE_ROLE_KEY", "sb_secret_abc"),
            ("SUPABASE_SECRET_KEY", "sb_secret_abc"),
            ("SUPABASE_PUBLISHABLE_KEY", "sb_publishable_abc"),
            ("ARCHIVE_MIN_AGE", "30d"),
        ] {
            check_alone(name, value).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_nearest_name() {
        for (line, message) in [
            (
                "archive_bach_size = 5",
                "cs.toml:2:1: unknown setting `archive_bach_size` in [settings]; did you mean `archive_batch_size`?",
            ),
            (
                "ARCHIVE_BUCKET = \"b\"",
                "cs.toml:2:1: unknown setting `ARCHIVE_BUCKET` in [settings]; did you mean `archive_bucket`?",
            ),
            (
                "batch-size = 5",
                "cs.toml:2:1: unknown setting `batch-size` in [settings]; did you mean `archive_batch_size`?",
            ),
            (
                "databse_url = \"sqlite:x\"",
                "cs.toml:2:1: unknown setting `databse_url` in [settings]; did you mean `database_url`?",
            ),
            (
                "colour = \"blue\"",
                "cs.toml:2:1: unknown setting `colour` in [settings] (the settings are the variables of the README's Configuration table, in lower case)",
            ),
        ] {
            assert_eq!(
                parse_err(&format!("[settings]\n{line}\n")).message(),
                message
            );
        }
        // An embedder's key is unknown unless it is declared.
        let err = ConfigFile::parse("cs.toml", "[settings]\ndatabase_url = \"x\"\n".into(), &[])
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("cs.toml:2:1: unknown setting `database_url`"),
            "{err}"
        );

        assert_eq!(
            parse_err("[setting]\narchive_bucket = \"cold-bucket\"\n").message(),
            "cs.toml:1:2: unknown table `setting`: a config file has [settings] and [[sources]]; did you mean `settings`?"
        );
        assert_eq!(
            parse_err("archive_bucket = \"cold-bucket\"\n").message(),
            "cs.toml:1:1: unknown table `archive_bucket`: a config file has [settings] and [[sources]]"
        );
    }

    #[test]
    fn the_first_mistake_in_the_file_is_the_one_reported() {
        let err =
            parse_err("[settings]\narchive_retention_jobs = \"x\"\narchive_batch_size = \"y\"\n");
        assert!(
            err.message()
                .starts_with("cs.toml:2:1: ARCHIVE_RETENTION_JOBS: "),
            "{err}"
        );
        let err = parse_err("[settings]\nzz = 1\naa = 2\n");
        assert!(
            err.message()
                .starts_with("cs.toml:2:1: unknown setting `zz`"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_without_its_content() {
        assert_eq!(
            parse_err("[settings]\narchive_bucket = { name = \"b\" }\n").message(),
            "cs.toml:2:1: archive_bucket: expected a string, number or boolean, got a table"
        );
        assert_eq!(
            parse_err("[settings]\n\n[settings.archive_bucket]\nname = \"b\"\n").message(),
            "cs.toml:3:11: archive_bucket: expected a string, number or boolean, got a table"
        );
        let err = parse_err(&format!(
            "[settings]\narchive_secret_access_key = [\"{SECRET}\"]\n"
        ));
        assert_eq!(
            err.message(),
            "cs.toml:2:1: archive_secret_access_key: expected a string, number or boolean, got an array"
        );
        assert_eq!(
            parse_err("[settings]\narchive_min_age = 1979-05-27\n").message(),
            "cs.toml:2:1: archive_min_age: expected a string, number or boolean, got a datetime"
        );
        assert_eq!(
            parse_err("settings = \"x\"\n").message(),
            "cs.toml:1:1: settings: expected a table ([settings]), got a string"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column_but_not_the_line() {
        let err = parse_err(&format!(
            "[settings]\narchive_bucket = \"cold-bucket\"\narchive_secret_access_key = \"{SECRET}\n"
        ));
        assert!(err.message().starts_with("cs.toml:3:"), "{err}");
        assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
        let err = parse_err("[settings]\narchive_bucket \"b\"\n");
        assert!(err.message().starts_with("cs.toml:2:16: "), "{err}");
        let err =
            parse_err("[settings]\narchive_bucket = \"a\"\narchive_bucket = \"cold-bucket\"\n");
        assert!(err.message().starts_with("cs.toml:3:1: "), "{err}");
    }

    #[test]
    fn sources_are_kept_for_their_parser() {
        let text = "[settings]\narchive_bucket = \"cold-bucket\"\n\n[[sources]]\nname = \"uploads\"\ntable = \"documents\"\n";
        let file = parse(text).unwrap();
        let sources = file.sources().unwrap();
        assert_eq!(sources.at, Position { line: 4, column: 3 });
        assert_eq!(&file.text()[sources.span.clone()], "sources");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_in_a_file_others_can_read_are_reported_by_name() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cs.toml");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            ConfigFile::load(&path, EXTRA).unwrap()
        };
        let secret = format!(
            "[settings]\narchive_secret_access_key = \"{SECRET}\"\ndatabase_url = \"postgres://app:pw@db/app\"\n"
        );
        let exposed = write(&secret, 0o644).exposed_secrets().unwrap();
        assert_eq!(exposed.mode, 0o644);
        assert_eq!(
            exposed.secrets,
            ["ARCHIVE_SECRET_ACCESS_KEY", "DATABASE_URL"]
        );
        assert_eq!(write(&secret, 0o640).exposed_secrets().unwrap().mode, 0o640);
        assert_eq!(write(&secret, 0o600).exposed_secrets(), None);
        // A URL without a password and plain settings are no secrets.
        let plain = "[settings]\narchive_bucket = \"cold-bucket\"\ndatabase_url = \"postgres://app@db/app\"\n";
        assert_eq!(write(plain, 0o644).exposed_secrets(), None);
        let query = "[settings]\ndatabase_url = \"postgres://db/app?user=a&password=pw\"\n";
        assert!(write(query, 0o644).exposed_secrets().is_some());
        // Debug never shows a secret.
        let file = write(&secret, 0o600);
        let debug = format!("{file:?}");
        assert!(!debug.contains(SECRET) && !debug.contains("pw@"), "{debug}");
        assert!(debug.contains("ARCHIVE_SECRET_ACCESS_KEY"), "{debug}");
    }

    #[test]
    fn a_file_that_cannot_be_read_is_a_bad_setting_naming_it() {
        let err = ConfigFile::load("/nonexistent/coldsweep.toml", EXTRA).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            err.message(),
            "config file /nonexistent/coldsweep.toml: cannot read it"
        );
    }

    #[test]
    fn the_hot_store_reads_the_file_too() {
        let file = parse("[settings]\nhot_store = \"fs\"\nhot_fs_root = \"/data/hot\"\n").unwrap();
        let hot = HotConfig::from_lookup(file.under(|_| None)).unwrap();
        let HotConfig::Fs(fs) = hot else {
            panic!("{hot:?}")
        };
        assert_eq!(fs.root(), Path::new("/data/hot"));
    }
}
