-- How many times a row has been claimed (see the Postgres migration of the
-- same name): a first claim has no earlier upload to look for.
ALTER TABLE tasks ADD COLUMN html_archive_claims INTEGER NOT NULL DEFAULT 0;
