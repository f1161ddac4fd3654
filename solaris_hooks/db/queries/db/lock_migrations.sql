-- Held until the migrating transaction ends: replicas that start together migrate one at a time.
SELECT pg_advisory_xact_lock(%(lock_id)s)
