-- What `coldsweep restore` needs on `jobs`; both nullable, so adding them
-- rewrites nothing.
ALTER TABLE jobs
    -- The status a job had when the job marker set it to 'archived': a
    -- restore gives it back.
    ADD COLUMN IF NOT EXISTS status_before_archived text,
    -- When HTML of the job was last brought back hot. The archive rules count
    -- a restored job as finished at this instant, so its pages are not swept
    -- again before they age out again.
    ADD COLUMN IF NOT EXISTS restored_at timestamptz;
