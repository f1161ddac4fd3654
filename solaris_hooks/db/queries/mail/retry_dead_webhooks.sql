-- An admin's retry of an alert also re-queues its dead webhook deliveries, with a fresh set
-- of attempts; the others are left as they are.
UPDATE solaris.webhook_deliveries
   SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
 WHERE alert_id = %(id)s AND status = 'dead'
RETURNING channel
