//! Test harness: real servers on 127.0.0.1, started or found on demand.

pub mod pg;
pub mod s3;
