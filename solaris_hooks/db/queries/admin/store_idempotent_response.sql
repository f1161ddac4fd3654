UPDATE solaris.idempotency_keys SET response = %(response)s WHERE key = %(key)s
