-- Retried after delay_s, or dead after attempts_max attempts, or dead at once when the
-- receiver's answer says retrying cannot help; only while the claim is ours.
UPDATE solaris.webhook_deliveries
   SET status = CASE WHEN %(permanent)s OR attempts >= %(attempts_max)s THEN 'dead' ELSE 'failed' END,
       next_attempt_at = now() + make_interval(secs => %(delay_s)s),
       claimed_until = NULL, last_error = %(error)s, response_status = %(response_status)s
 WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'sending'
RETURNING status
