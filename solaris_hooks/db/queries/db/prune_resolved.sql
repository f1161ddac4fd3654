-- Up to `limit` reservations resolved more than retention_s ago; rows another transaction
-- holds are left for the next round.
DELETE FROM solaris.reservations WHERE call_id IN (
    SELECT call_id FROM solaris.reservations
     WHERE created_at < now() - make_interval(secs => %(retention_s)s) AND state <> 'pending'
       AND resolved_at < now() - make_interval(secs => %(retention_s)s)
     LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
