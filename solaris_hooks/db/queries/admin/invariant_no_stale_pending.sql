-- Reservations still pending long after their expiry: the sweeper is not running.
SELECT call_id, user_id, expires_at FROM solaris.reservations
 WHERE state = 'pending' AND expires_at < now() - interval '10 minutes'
 LIMIT %(rows_max)s
