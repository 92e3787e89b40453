//! Local folder store: each bucket is a sub-folder of the root.
//!
//! Built on OpenDAL's fs service with an atomic-write folder: a body is
//! written to `<root>/.coldsweep-tmp/`, synced, then renamed into place, so a
//! crash never leaves a half-written object under its real name.
//!
//! Three roles: cold ([`FsStore::new`]: reads, writes, deletes), hot
//! ([`FsStore::open_existing`]: reads and deletes, writes refused) and
//! restore ([`FsStore::open_for_restore`]: the hot folder, written by
//! `coldsweep restore`). The restore role creates nothing at the root: a
//! body goes to a temporary file beside its object
//! (`.<name>.coldsweep-tmp-<random>`, removed if the write fails), synced,
//! then renamed into place; only a crash mid-write can leave that file.
//!
//! What it keeps: the bytes, their size, and user metadata (as `user.*`
//! extended attributes; the filesystem must support them). It keeps **no**
//! ETag, `Content-Type` or `Content-Encoding`: [`Store::head`] reports `None`
//! for those. The user metadata is attached just after the rename, so a crash
//! at that instant leaves complete bytes without metadata; callers verify
//! bytes, never metadata alone.
//!
//! Confinement: bucket names are one plain segment, keys are
//! [`ObjectKey`](crate::ObjectKey)s, and every path is resolved (symbolic
//! links included) and refused if it leads outside the root.

use std::fmt;
use std::path::{Path, PathBuf};

use ::opendal::Operator;
use ::opendal::services::Fs;
use async_trait::async_trait;
use bytes::Bytes;

use super::opendal::{Adapter, Retry, check_bucket};
use super::{ByteStream, Location, ObjectMeta, PutOptions, PutResult, Store};
use crate::error::{Error, ErrorKind, Result};

mod settings;

use settings::not_utf8;
pub use settings::{FsConfig, FsSettings, PLAIN_ROOT_NAME};

/// Folder under the root for bodies being written; never a bucket, since
/// bucket names cannot start with `.`.
const TMP_DIR: &str = ".coldsweep-tmp";

/// A local folder store.
pub struct FsStore {
    /// Canonical root.
    root: PathBuf,
    role: Role,
    adapter: Adapter,
}

/// What a folder store may do to its root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Reads, writes through the atomic-write folder, deletes.
    Cold,
    /// Reads and deletes; writes refused.
    Hot,
    /// The hot folder written by a restore: writes go beside their object.
    Restore,
}

impl FsStore {
    /// Where an upload to `location` goes; a hot-role store refuses any.
    async fn writable_path(&self, location: &Location) -> Result<String> {
        if self.role == Role::Hot {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("put fs:{location}: this folder store only reads and deletes (hot role)"),
            ));
        }
        self.confined(location).await
    }
    /// A store rooted at `root`, which is created if missing, with an
    /// atomic-write folder `<root>/.coldsweep-tmp` (the cold role):
    /// [`FsConfig::build`] and [`FsStore::with_settings`].
    ///
    /// Fails with [`ErrorKind::InvalidInput`] if the root is empty or not
    /// valid UTF-8, and with the I/O error's kind if it cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<FsStore> {
        let config = FsConfig { root: root.into() };
        Self::with_settings(&config.build(PLAIN_ROOT_NAME)?)
    }

    /// A store over the existing folder `root` that only reads and deletes
    /// (the hot role): [`FsConfig::build`] and
    /// [`FsStore::open_existing_with_settings`].
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<FsStore> {
        let config = FsConfig { root: root.into() };
        Self::open_existing_with_settings(&config.build(PLAIN_ROOT_NAME)?)
    }

    /// A store rooted at the checked `settings`' root, which is created if
    /// missing (the cold role).
    pub fn with_settings(settings: &FsSettings) -> Result<FsStore> {
        let root = &settings.root;
        std::fs::create_dir_all(root)
            .map_err(|e| io_error(e, format_args!("fs store root {}", root.display())))?;
        Self::build(root, Role::Cold)
    }

    /// A store over the existing folder the checked `settings` name that
    /// only reads and deletes (the hot role): nothing is created, not the
    /// root, not a temp folder, and [`Store::put`] is refused.
    ///
    /// Fails with [`ErrorKind::BucketNotFound`] when the root is not an
    /// existing folder: a mistyped root must stop the archiver, not make
    /// every blob look missing.
    pub fn open_existing_with_settings(settings: &FsSettings) -> Result<FsStore> {
        Self::existing(&settings.root, Role::Hot)
    }

    /// The hot folder `root`, for `coldsweep restore` to write restored
    /// objects back into: like [`FsStore::open_existing`] (nothing is created
    /// at the root, a missing root is [`ErrorKind::BucketNotFound`]), but
    /// [`Store::put`] writes, into an existing bucket folder only, through a
    /// temporary file beside the object. Keeps no user metadata: a put that
    /// carries some is refused.
    pub fn open_for_restore(root: impl Into<PathBuf>) -> Result<FsStore> {
        let config = FsConfig { root: root.into() };
        Self::open_for_restore_with_settings(&config.build(PLAIN_ROOT_NAME)?)
    }

    /// [`FsStore::open_for_restore`] over checked settings.
    pub fn open_for_restore_with_settings(settings: &FsSettings) -> Result<FsStore> {
        Self::existing(&settings.root, Role::Restore)
    }

    fn existing(root: &Path, role: Role) -> Result<FsStore> {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => Self::build(root, role),
            Ok(_) => Err(Error::new(
                ErrorKind::BucketNotFound,
                format!("fs store root {} is not a folder", root.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::new(
                ErrorKind::BucketNotFound,
                format!("fs store root {} does not exist", root.display()),
            )),
            Err(e) => Err(io_error(
                e,
                format_args!("fs store root {}", root.display()),
            )),
        }
    }

    fn build(root: &Path, role: Role) -> Result<FsStore> {
        let root = root
            .canonicalize()
            .map_err(|e| io_error(e, format_args!("fs store root {}", root.display())))?;
        // The root was checked as given; a link on the way can still lead
        // to a path that is not.
        let Some(root_str) = root.to_str() else {
            return Err(not_utf8(PLAIN_ROOT_NAME, &root));
        };
        let mut builder = Fs::default().root(root_str);
        if role == Role::Cold {
            builder = builder.atomic_write_dir(&format!("{root_str}/{TMP_DIR}"));
        }
        let op = Operator::new(builder).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("fs store root {} rejected", root.display()),
            )
            .with_source(e)
        })?;
        Ok(FsStore {
            root,
            role,
            adapter: Adapter::new(op, Retry::NONE),
        })
    }

    /// The restore role's write: into a temporary file beside the object
    /// (in the object's folder, created under an existing bucket folder),
    /// synced, renamed into place; the temporary file is removed if any
    /// step fails.
    async fn put_beside(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<()> {
        let what = Named(location);
        if !options.metadata.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("put {what}: the restore role of a folder store keeps no user metadata"),
            ));
        }
        self.confined(location).await?;
        let bucket = self.root.join(&location.bucket);
        match tokio::fs::metadata(&bucket).await {
            Ok(meta) if meta.is_dir() => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::BucketNotFound,
                    format!("put {what}: no bucket folder {}", bucket.display()),
                ));
            }
        }
        let target = bucket.join(location.key.as_str());
        let (Some(folder), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("put {what}: key names no file"),
            ));
        };
        tokio::fs::create_dir_all(folder)
            .await
            .map_err(|e| io_error(e, format_args!("put {what}: create its folder")))?;
        // The folders just made are under the bucket; a link swapped in
        // meanwhile is caught here, before a byte is written.
        self.refuse_escape(folder, &what).await?;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let tmp = folder.join(format!(
            ".{}.coldsweep-tmp-{suffix}",
            name.to_string_lossy()
        ));
        let (tmp_path, target_path, folder_path) = (tmp.clone(), target.clone(), folder.to_owned());
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp_path)?;
            file.write_all(&body)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp_path, &target_path)?;
            // The rename itself survives a crash once its folder is synced.
            std::fs::File::open(&folder_path)?.sync_all()
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_error(e, format_args!("put {what}")));
        }
        Ok(())
    }

    /// The (canonical) root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OpenDAL path of `location` (`bucket/key`), once it is proven to
    /// stay under the root.
    async fn confined(&self, location: &Location) -> Result<String> {
        check_bucket(&location.bucket)?;
        let key = location.key.as_str();
        // ObjectKey already guarantees this; a second look costs nothing.
        let plain = !key.starts_with('/')
            && !key.contains(['\\', '\0'])
            && key.split('/').all(|s| !matches!(s, "" | "." | ".."));
        if !plain {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("fs:{location}: key is not a plain relative path"),
            ));
        }
        self.refuse_escape(&self.root.join(&location.bucket).join(key), location)
            .await?;
        Ok(format!("{}/{key}", location.bucket))
    }

    /// Resolve the deepest existing ancestor of `path` (following links) and
    /// refuse it if it lies outside the root.
    async fn refuse_escape(&self, path: &Path, what: &(dyn fmt::Display + Sync)) -> Result<()> {
        let mut probe = path.to_path_buf();
        loop {
            match tokio::fs::canonicalize(&probe).await {
                Ok(real) if real.starts_with(&self.root) => return Ok(()),
                Ok(real) => {
                    return Err(Error::new(
                        ErrorKind::PermissionDenied,
                        format!(
                            "fs:{what}: path leads outside the store root (to {})",
                            real.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !probe.pop() || probe == self.root {
                        return Ok(());
                    }
                }
                Err(e) => return Err(io_error(e, format_args!("fs:{what}"))),
            }
        }
    }
}

/// Our error for an I/O error outside OpenDAL (creating the root, resolving links).
fn io_error(err: std::io::Error, doing: impl fmt::Display) -> Error {
    let kind = match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => ErrorKind::Transient,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, doing.to_string()).with_source(err)
}

/// `fs:bucket/key` for messages.
struct Named<'a>(&'a Location);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fs:{}", self.0)
    }
}

impl fmt::Debug for FsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.root)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for FsStore {
    fn provider(&self) -> &str {
        "fs"
    }

    fn namespace(&self) -> Option<String> {
        Some(format!("fs:{}", self.root.display()))
    }

    async fn ping(&self, bucket: &str) -> Result<()> {
        check_bucket(bucket)?;
        let what = format!("fs:{bucket}");
        self.refuse_escape(&self.root.join(bucket), &what).await?;
        if self.adapter.is_dir(&format!("{bucket}/"), &what).await? {
            // Listing proves the folder is readable, not only present.
            let listed = async {
                tokio::fs::read_dir(self.root.join(bucket))
                    .await?
                    .next_entry()
                    .await
            };
            listed
                .await
                .map_err(|e| io_error(e, format_args!("ping {what}")))?;
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::BucketNotFound,
                format!(
                    "ping {what}: no bucket folder {}",
                    self.root.join(bucket).display()
                ),
            ))
        }
    }

    async fn put(
        &self,
        location: &Location,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutResult> {
        if self.role == Role::Restore {
            self.put_beside(location, body, options).await?;
            return Ok(PutResult::default());
        }
        let path = self.writable_path(location).await?;
        self.adapter
            .put(&path, body, options, &Named(location))
            .await
    }

    async fn get(&self, location: &Location) -> Result<Bytes> {
        let path = self.confined(location).await?;
        self.adapter.get(&path, &Named(location)).await
    }

    async fn get_stream(&self, location: &Location) -> Result<(u64, ByteStream)> {
        let path = self.confined(location).await?;
        self.adapter.get_stream(&path, &Named(location)).await
    }

    /// Into the atomic-write folder, renamed into place once the body ends.
    async fn put_stream(
        &self,
        location: &Location,
        _size: u64,
        mut body: ByteStream,
        options: &PutOptions,
    ) -> Result<PutResult> {
        if self.role == Role::Restore {
            use futures::StreamExt as _;
            let mut all = Vec::new();
            while let Some(piece) = body.next().await {
                all.extend_from_slice(&piece?);
            }
            return self.put(location, Bytes::from(all), options).await;
        }
        let path = self.writable_path(location).await?;
        self.adapter
            .put_stream(&path, body, options, &Named(location))
            .await
    }

    async fn head(&self, location: &Location) -> Result<ObjectMeta> {
        let path = self.confined(location).await?;
        self.adapter.head(&path, &Named(location)).await
    }

    async fn delete(&self, location: &Location) -> Result<()> {
        let path = self.confined(location).await?;
        self.adapter.delete(&path, &Named(location)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ObjectKey;

    #[tokio::test]
    async fn writes_leave_no_temp_files_and_keep_user_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("new-root")).unwrap();
        let at = Location::new("b", ObjectKey::new("x/y.gz").unwrap());
        let mut options = PutOptions::default();
        options.metadata.insert("sha256".into(), "ab".into());
        store
            .put(&at, Bytes::from_static(b"one"), &options)
            .await
            .unwrap();
        store
            .put(&at, Bytes::from_static(b"two!"), &options)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(store.root().join("b/x/y.gz")).unwrap(),
            b"two!"
        );
        let tmp = store.root().join(TMP_DIR);
        assert!(tmp.is_dir(), "atomic-write folder missing");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
        let meta = store.head(&at).await.unwrap();
        assert_eq!(meta.size, 4);
        assert_eq!(meta.metadata.get("sha256").map(String::as_str), Some("ab"));
    }

    #[tokio::test]
    async fn the_hot_role_creates_nothing_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("mistyped");
        let err = FsStore::open_existing(&missing).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        assert!(!missing.exists(), "the missing root was created");

        let root = dir.path().join("hot");
        std::fs::create_dir(&root).unwrap();
        let store = FsStore::open_existing(&root).unwrap();
        let err = store.ping("b").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        std::fs::create_dir(root.join("b")).unwrap();
        store.ping("b").await.unwrap();
        let at = Location::new("b", ObjectKey::new("k").unwrap());
        let err = store
            .put(&at, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["b"], "the hot root holds only what was there");
    }

    #[tokio::test]
    async fn the_restore_role_writes_only_the_object_and_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("hot");
        std::fs::create_dir_all(root.join("b")).unwrap();
        let store = FsStore::open_for_restore(&root).unwrap();
        let at = Location::new("b", ObjectKey::new("jobs/j/tasks/t/page.gz").unwrap());
        for body in [&b"first"[..], &b"second, longer"[..]] {
            store
                .put(&at, Bytes::copy_from_slice(body), &PutOptions::default())
                .await
                .unwrap();
            assert_eq!(store.get(&at).await.unwrap(), body);
        }
        let folder = root.join("b/jobs/j/tasks/t");
        let names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["page.gz"],
            "a temporary file was left beside the object"
        );
        let top: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(top, ["b"], "something was created at the root");

        let mut with_meta = PutOptions::default();
        with_meta.metadata.insert("sha256".into(), "ab".into());
        let other = Location::new("b", ObjectKey::new("other").unwrap());
        let err = store
            .put(&other, Bytes::from_static(b"x"), &with_meta)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(!root.join("b/other").exists());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        let store = FsStore::new(dir.path().join("root")).unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("evil")).unwrap();
        std::fs::create_dir(store.root().join("b")).unwrap();
        std::os::unix::fs::symlink(&outside, store.root().join("b/link")).unwrap();

        let key = ObjectKey::new("secret").unwrap();
        let err = store
            .get(&Location::new("evil", key.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let err = store.ping("evil").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let at = Location::new("b", ObjectKey::new("link/new").unwrap());
        let err = store
            .put(&at, Bytes::from_static(b"x"), &PutOptions::default())
            .await;
        assert_eq!(err.unwrap_err().kind(), ErrorKind::PermissionDenied);
        assert!(!outside.join("new").exists());
    }
}
