-- no-transaction
-- Tasks whose HTML is still hot, by job and in id order: the claim walks it
-- job by job and stops after a batch; the job marker probes it.
--
-- Built CONCURRENTLY so that a large existing `tasks` table stays writable;
-- that cannot run inside a transaction, hence one statement per file. If the
-- build is interrupted Postgres leaves an INVALID index behind which
-- IF NOT EXISTS would then keep: drop `coldsweep_tasks_hot_html_idx` by hand
-- and run `coldsweep migrate` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS coldsweep_tasks_hot_html_idx
    ON tasks (job_id, id)
    WHERE html_storage_path IS NOT NULL;
