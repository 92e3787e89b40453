-- When a blob was first seen missing from both stores (see the Postgres
-- migration of the same name): 'missing' is a suspicion, 'lost' a verdict.
ALTER TABLE tasks ADD COLUMN html_missing_since TEXT;
