//! S3-compatible store (R2, AWS S3, B2, MinIO, GCS interop) through OpenDAL.

/// Connection settings for [`S3Store`].
#[derive(Debug)]
pub struct S3Settings;

/// An S3-compatible store.
#[derive(Debug)]
pub struct S3Store;
