//! Object key layout and the validated [`ObjectKey`] newtype.
//!
//! Keys come from catalog rows, which coldsweep does not control, so every key
//! is validated before it reaches a store: a bad row can never escape a folder
//! or bucket.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// Longest key accepted; S3 allows 1024 bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A relative, normalised object key: no leading `/`, no empty, `.` or `..`
/// segments, no control characters or backslashes, at most [`MAX_KEY_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validate `key`.
    pub fn new(key: impl Into<String>) -> Result<Self> {
        let key = key.into();
        validate(&key)?;
        Ok(Self(key))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `self/rest`, validated.
    pub fn join(&self, rest: &str) -> Result<Self> {
        Self::new(format!("{}/{rest}", self.0))
    }
}

fn validate(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("object key {key:?} rejected: {why}"),
        ))
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute (leading '/')");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("contains a control character or backslash");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("'.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Optional prefix joined in front of every cold key (`ARCHIVE_PATH_PREFIX`),
/// so that, say, preview deployments keep to their own sub-tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPrefix(Option<ObjectKey>);

impl KeyPrefix {
    /// No prefix.
    pub fn none() -> Self {
        Self(None)
    }

    /// Parse a prefix; surrounding `/` are trimmed and an empty result means none.
    pub fn new(prefix: &str) -> Result<Self> {
        let trimmed = prefix.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Self(None));
        }
        Ok(Self(Some(ObjectKey::new(trimmed)?)))
    }

    /// The prefix, if any.
    pub fn as_key(&self) -> Option<&ObjectKey> {
        self.0.as_ref()
    }

    /// `prefix/path`, or `path` alone when there is no prefix.
    pub fn apply(&self, path: &str) -> Result<ObjectKey> {
        match &self.0 {
            Some(prefix) => prefix.join(path),
            None => ObjectKey::new(path),
        }
    }
}

/// Where a task's HTML lives, relative to bucket and prefix:
/// `jobs/{job}/tasks/{task}/page-content.html.gz`.
pub fn task_html_object_path(job_id: &str, task_id: &str) -> String {
    format!("jobs/{job_id}/tasks/{task_id}/page-content.html.gz")
}

/// The cold key of a task's HTML: the same layout as hot, under `prefix`.
pub fn cold_key(prefix: &KeyPrefix, job_id: &str, task_id: &str) -> Result<ObjectKey> {
    prefix.apply(&task_html_object_path(job_id, task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_seed() {
        assert_eq!(
            task_html_object_path("j1", "t9"),
            "jobs/j1/tasks/t9/page-content.html.gz"
        );
        let key = cold_key(&KeyPrefix::new("/preview-42/").unwrap(), "j1", "t9").unwrap();
        assert_eq!(
            key.as_str(),
            "preview-42/jobs/j1/tasks/t9/page-content.html.gz"
        );
        let key = cold_key(&KeyPrefix::new("").unwrap(), "j1", "t9").unwrap();
        assert_eq!(key.as_str(), "jobs/j1/tasks/t9/page-content.html.gz");
    }

    #[test]
    fn hostile_keys_are_rejected() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../../etc",
            "a//b",
            "a/./b",
            "trailing/",
            "nul\0byte",
            "back\\slash",
            &"x".repeat(MAX_KEY_LEN + 1),
        ] {
            let err = ObjectKey::new(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
        // A job id carrying `..` cannot climb out through the layout either.
        assert!(cold_key(&KeyPrefix::none(), "..", "t").is_err());
        assert!(ObjectKey::new("jobs/a b/ü.html.gz").is_ok());
    }
}
