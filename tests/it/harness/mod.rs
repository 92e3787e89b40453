//! Test harness: real servers on 127.0.0.1, started or found on demand.

pub(crate) mod capture;
pub(crate) mod pg;
pub(crate) mod s3;
pub(crate) mod supabase;
