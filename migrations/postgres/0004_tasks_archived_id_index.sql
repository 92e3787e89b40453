-- no-transaction
-- Archived tasks (cold only) in bytewise id order: `coldsweep verify` pages
-- through them with a keyset cursor (`id COLLATE "C" > last`), one range
-- scan per page instead of a scan and sort of every archived row.
--
-- Built CONCURRENTLY, like 0002: if the build is interrupted, drop
-- `coldsweep_tasks_archived_id_idx` by hand and run `coldsweep migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS coldsweep_tasks_archived_id_idx
    ON tasks (id COLLATE "C")
    WHERE html_archive_key IS NOT NULL AND html_storage_path IS NULL
      AND html_archive_state IS NULL;
