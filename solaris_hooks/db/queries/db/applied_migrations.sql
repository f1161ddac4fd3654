-- Each applied version with the checksum recorded for it (NULL: not recorded yet). Read
-- through to_jsonb so that `solaris doctor` can read a table made before the column existed.
SELECT version, to_jsonb(m) ->> 'checksum' FROM solaris.schema_migrations m ORDER BY version
