-- No row when the key was used before; a concurrent twin waits on the key's index entry.
INSERT INTO solaris.idempotency_keys (key, request_hash) VALUES (%(key)s, %(request_hash)s)
ON CONFLICT DO NOTHING
RETURNING key
