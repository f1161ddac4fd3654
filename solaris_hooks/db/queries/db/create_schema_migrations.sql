-- The bookkeeping of migrations itself, before any migration can run. `checksum` (the
-- sha256 of the file as applied) came later: the ALTER gives it to tables made before.
CREATE SCHEMA IF NOT EXISTS solaris;
CREATE TABLE IF NOT EXISTS solaris.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    checksum text
);
ALTER TABLE solaris.schema_migrations ADD COLUMN IF NOT EXISTS checksum text;
