//! Integration tests: one binary, against a real Postgres and an in-process
//! S3-protocol server started by the harness on 127.0.0.1.

mod catalog_conformance;
mod check;
mod cli;
mod faults;
mod harness;
mod metrics;
mod pipeline;
mod profiles;
mod schedule;
mod store_conformance;
mod supabase;
