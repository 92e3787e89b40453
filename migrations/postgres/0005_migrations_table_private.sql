-- coldsweep's bookkeeping is not the API's business.
--
-- Supabase grants every new table in `public` to `anon` and `authenticated`
-- (ALTER DEFAULT PRIVILEGES), and its REST API serves any table those roles
-- may read: an anonymous caller could delete these rows and stop every
-- sweep. The revokes refuse the API roles outright. Row level security
-- lets no one but the table's owner (the role that runs `coldsweep migrate`)
-- and roles with BYPASSRLS change a row, whatever grants come later; the
-- one policy lets a role that was granted SELECT read the rows, as a sweep
-- run under another role than the migrating one must.

ALTER TABLE _coldsweep_migrations ENABLE ROW LEVEL SECURITY;

CREATE POLICY coldsweep_migrations_readable ON _coldsweep_migrations
    FOR SELECT USING (true);

REVOKE ALL ON TABLE _coldsweep_migrations FROM PUBLIC;

-- The API roles exist only on Supabase (and alike); elsewhere there is
-- nothing to revoke from.
DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN
        SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE _coldsweep_migrations FROM %I', api_role);
    END LOOP;
END
$$;
