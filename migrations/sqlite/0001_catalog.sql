-- coldsweep catalog schema (SQLite, the embedded default).
--
-- Same tables and columns as the Postgres catalog, created fresh. Types:
-- uuids are lowercase hyphenated text; timestamps are RFC 3339 text as sqlx
-- encodes `DateTime<Utc>` (coldsweep compares them with julianday(), so
-- rows written by other tools in other SQLite date formats still order right).

CREATE TABLE IF NOT EXISTS jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    domain_id       INTEGER NOT NULL,
    organisation_id TEXT,
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    completed_at    TEXT
);

CREATE TABLE IF NOT EXISTS tasks (
    id                         TEXT PRIMARY KEY NOT NULL,
    job_id                     TEXT NOT NULL REFERENCES jobs (id),
    html_storage_bucket        TEXT,
    html_storage_path          TEXT,
    html_content_type          TEXT,
    html_content_encoding      TEXT,
    html_size_bytes            INTEGER,
    html_compressed_size_bytes INTEGER,
    html_sha256                TEXT, -- of the decoded (gunzipped) HTML
    html_captured_at           TEXT,
    html_archive_provider      TEXT,
    html_archive_bucket        TEXT,
    html_archive_key           TEXT,
    html_archived_at           TEXT,
    -- coldsweep's own columns: 'quarantined' | 'lost' | NULL, the last
    -- failure or the state's reason, failed attempts, and the claim.
    html_archive_state         TEXT,
    html_archive_error         TEXT,
    html_archive_attempts      INTEGER NOT NULL DEFAULT 0,
    html_lease_owner           TEXT,
    html_lease_expires_at      TEXT
);

CREATE INDEX IF NOT EXISTS coldsweep_tasks_hot_html_idx
    ON tasks (job_id, id)
    WHERE html_storage_path IS NOT NULL;

-- Foreign-key checks and the job marker look tasks up by job.
CREATE INDEX IF NOT EXISTS coldsweep_tasks_job_id_idx ON tasks (job_id);

CREATE INDEX IF NOT EXISTS coldsweep_jobs_retention_idx
    ON jobs (domain_id, organisation_id, status);
