UPDATE solaris.schema_migrations SET checksum = %(checksum)s WHERE version = %(version)s AND checksum IS NULL
