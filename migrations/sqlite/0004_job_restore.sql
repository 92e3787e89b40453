-- What `coldsweep restore` needs on `jobs` (see the Postgres migration of
-- the same name): the status before the job marker, and the restore time.
ALTER TABLE jobs ADD COLUMN status_before_archived TEXT;
ALTER TABLE jobs ADD COLUMN restored_at TEXT;
