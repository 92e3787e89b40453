//! In-process S3-protocol server for tests.
