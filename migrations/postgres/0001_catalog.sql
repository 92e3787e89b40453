-- coldsweep catalog schema (Postgres).
--
-- In an empty database this creates the application's `jobs`/`tasks` tables;
-- in an existing one every statement is a no-op except the columns coldsweep
-- adds. Nothing the application owns is dropped, renamed or rewritten: new
-- columns are nullable or have a constant default, which Postgres adds
-- without rewriting the table.

CREATE TABLE IF NOT EXISTS jobs (
    id              text PRIMARY KEY,
    domain_id       integer NOT NULL,
    organisation_id uuid,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);

CREATE TABLE IF NOT EXISTS tasks (
    id                         text PRIMARY KEY,
    job_id                     text NOT NULL REFERENCES jobs (id),
    html_storage_bucket        text,
    html_storage_path          text,
    html_content_type          text,
    html_content_encoding      text,
    html_size_bytes            bigint,
    html_compressed_size_bytes bigint,
    html_sha256                text, -- of the decoded (gunzipped) HTML
    html_captured_at           timestamptz,
    html_archive_provider      text,
    html_archive_bucket        text,
    html_archive_key           text,
    html_archived_at           timestamptz
);

-- The seed's HTML columns again, for application schemas that predate some of them.
ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS html_storage_bucket        text,
    ADD COLUMN IF NOT EXISTS html_storage_path          text,
    ADD COLUMN IF NOT EXISTS html_content_type          text,
    ADD COLUMN IF NOT EXISTS html_content_encoding      text,
    ADD COLUMN IF NOT EXISTS html_size_bytes            bigint,
    ADD COLUMN IF NOT EXISTS html_compressed_size_bytes bigint,
    ADD COLUMN IF NOT EXISTS html_sha256                text,
    ADD COLUMN IF NOT EXISTS html_captured_at           timestamptz,
    ADD COLUMN IF NOT EXISTS html_archive_provider      text,
    ADD COLUMN IF NOT EXISTS html_archive_bucket        text,
    ADD COLUMN IF NOT EXISTS html_archive_key           text,
    ADD COLUMN IF NOT EXISTS html_archived_at           timestamptz;

-- coldsweep's own columns.
ALTER TABLE tasks
    -- 'quarantined' | 'lost' | NULL (checked by coldsweep, not by a constraint:
    -- validating one would scan a large existing table under an exclusive lock).
    ADD COLUMN IF NOT EXISTS html_archive_state    text,
    -- Last failure, or the reason for html_archive_state.
    ADD COLUMN IF NOT EXISTS html_archive_error    text,
    ADD COLUMN IF NOT EXISTS html_archive_attempts integer NOT NULL DEFAULT 0,
    -- The claim: which worker holds the row and until when.
    ADD COLUMN IF NOT EXISTS html_lease_owner      text,
    ADD COLUMN IF NOT EXISTS html_lease_expires_at timestamptz;
