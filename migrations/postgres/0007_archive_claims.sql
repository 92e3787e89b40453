-- How many times a row has been claimed. A row claimed for the first time,
-- never failed, has no cold copy from an earlier attempt to look for: the
-- archiver uploads it without asking the cold store first. A constant
-- default, so adding it rewrites nothing.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS html_archive_claims integer NOT NULL DEFAULT 0;
