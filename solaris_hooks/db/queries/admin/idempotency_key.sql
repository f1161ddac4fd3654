SELECT request_hash, response FROM solaris.idempotency_keys WHERE key = %(key)s
