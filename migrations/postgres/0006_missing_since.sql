-- When a blob was first seen missing from both stores. A row in state
-- 'missing' is only a suspicion: it becomes 'lost' when a later sweep, at
-- least ARCHIVE_LOST_AFTER after this instant and with both stores proven
-- healthy, still finds nothing. Nullable, so adding it rewrites nothing.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS html_missing_since timestamptz;
