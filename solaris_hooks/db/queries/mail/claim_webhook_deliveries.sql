-- As mail/claim_alerts.sql, for webhook deliveries of the channels this worker can send to:
-- due ones, and ones whose claim lease ran out (their sender died). SKIP LOCKED: replicas
-- never claim the same row at once.
WITH claimed AS (
    UPDATE solaris.webhook_deliveries d
       SET status = 'sending', attempts = d.attempts + 1, claimed_by = %(worker)s,
           claimed_until = now() + make_interval(secs => %(lease_s)s)
     WHERE d.id IN (SELECT id FROM solaris.webhook_deliveries
                     WHERE channel = ANY(%(channels)s::text[])
                       AND ((status IN ('pending', 'failed') AND next_attempt_at <= now())
                            OR (status = 'sending' AND claimed_until < now()))
                     ORDER BY id
                     LIMIT %(limit)s
                       FOR UPDATE SKIP LOCKED)
    RETURNING d.*
)
SELECT c.id, c.alert_id, c.channel, c.attempts, a.user_id, a.threshold, a.credited_tokens, a.used_tokens,
       a.created_at, acc.email, acc.name
  FROM claimed c
  JOIN solaris.alerts a ON a.id = c.alert_id
  JOIN solaris.accounts acc ON acc.user_id = a.user_id
 ORDER BY c.id
