//! The folder store's settings: [`FsConfig`] as given, [`FsSettings`] once
//! checked.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The name messages give a root that came from code rather than a variable.
pub const PLAIN_ROOT_NAME: &str = "fs store root";

/// A folder store's settings, as given; [`FsConfig::build`] checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// Root folder; buckets are its sub-folders.
    pub root: PathBuf,
}

impl FsConfig {
    /// Check the root once, naming it `name` (`ARCHIVE_FS_ROOT`,
    /// `HOT_FS_ROOT`, or [`PLAIN_ROOT_NAME`]) in messages: it is not empty and
    /// is valid UTF-8 (the folder service takes its root as a string).
    ///
    /// Nothing here looks at the disk: the store resolves the root when it is
    /// built, creating it or requiring it as its role says
    /// ([`FsStore::with_settings`](super::FsStore::with_settings),
    /// [`FsStore::open_existing_with_settings`](super::FsStore::open_existing_with_settings)).
    pub fn build(&self, name: &str) -> Result<FsSettings> {
        if self.root.as_os_str().is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{name}: expected a folder path, got nothing"),
            ));
        }
        if self.root.to_str().is_none() {
            return Err(not_utf8(name, &self.root));
        }
        Ok(FsSettings {
            root: self.root.clone(),
        })
    }
}

/// `{name} {path} is not valid UTF-8`, for the root as given or as resolved.
pub(super) fn not_utf8(name: &str, path: &Path) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{name} {} is not valid UTF-8", path.display()),
    )
}

/// A folder store's checked settings ([`FsConfig::build`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsSettings {
    pub(in crate::store) root: PathBuf,
}

impl FsSettings {
    /// The root folder as given (not yet resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_a_non_empty_utf8_path() {
        let ok = FsConfig {
            root: "./hot".into(),
        }
        .build("R")
        .unwrap();
        assert_eq!(ok.root(), Path::new("./hot"));
        let err = FsConfig { root: "".into() }.build("R").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.message(), "R: expected a folder path, got nothing");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let root = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff")).to_path_buf();
            let err = FsConfig { root }.build("R").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.message().ends_with("is not valid UTF-8"), "{err}");
        }
    }
}
