//! Integration tests: one binary, against a real Postgres and an in-process
//! S3-protocol server started by the harness on 127.0.0.1.

mod alloc;
mod bad_input;
mod batching;
mod catalog_conformance;
mod catalog_outage;
mod check;
mod cli;
mod config_file;
mod crash;
mod deploy;
mod faults;
mod faults_suite;
mod get;
mod harness;
mod health;
mod layers;
mod leases;
mod metrics;
mod migrate;
mod pipeline;
mod profiles;
mod restore;
mod s3_answers;
mod schedule;
mod scrub;
mod secrets;
mod sources;
mod store_conformance;
mod streaming;
mod supabase;
mod table_restore;
mod table_source;
mod uploads_schema;
mod verdicts;
