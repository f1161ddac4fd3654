-- The webhook deliveries of a page of alerts, for the admins' view of the outbox.
SELECT alert_id, id, channel, status, attempts, last_error, response_status, next_attempt_at, sent_at
  FROM solaris.webhook_deliveries
 WHERE alert_id = ANY(%(alert_ids)s::bigint[])
 ORDER BY alert_id, channel
