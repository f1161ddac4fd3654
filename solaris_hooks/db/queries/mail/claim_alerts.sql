-- Claim up to `limit` due alerts for this worker: pending or failed ones whose next attempt
-- is due, and ones whose claim lease ran out (their sender died). SKIP LOCKED: replicas
-- never claim the same row at once.
WITH claimed AS (
    UPDATE solaris.alerts a
       SET status = 'sending', attempts = a.attempts + 1, claimed_by = %(worker)s,
           claimed_until = now() + make_interval(secs => %(lease_s)s)
     WHERE a.id IN (SELECT id FROM solaris.alerts
                     WHERE (status IN ('pending', 'failed') AND next_attempt_at <= now())
                        OR (status = 'sending' AND claimed_until < now())
                     ORDER BY id
                     LIMIT %(limit)s
                       FOR UPDATE SKIP LOCKED)
    RETURNING a.*
)
SELECT c.id, c.user_id, c.kind, c.threshold, c.credited_tokens, c.used_tokens, c.tokens, c.attempts,
       acc.email, acc.name, acc.locale, acc.group_name
  FROM claimed c JOIN solaris.accounts acc USING (user_id)
 ORDER BY c.id
