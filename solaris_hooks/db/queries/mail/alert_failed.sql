-- Retried after delay_s, or dead after attempts_max attempts; only while the claim is ours.
UPDATE solaris.alerts
   SET status = CASE WHEN attempts >= %(attempts_max)s THEN 'dead' ELSE 'failed' END,
       next_attempt_at = now() + make_interval(secs => %(delay_s)s),
       claimed_until = NULL, last_error = %(error)s
 WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'sending'
RETURNING status
