-- no-transaction
-- Jobs by (domain, organisation, status): the retention ranking.
-- CONCURRENTLY for the same reason as 0002 (and the same recovery).
CREATE INDEX CONCURRENTLY IF NOT EXISTS coldsweep_jobs_retention_idx
    ON jobs (domain_id, organisation_id, status);
