SELECT to_regclass('solaris.schema_migrations') IS NOT NULL
