-- A dead alert goes back to pending with a fresh set of attempts; any other is left as it is.
-- Returns the alert (the columns of alert_columns.sql) and the status it had before.
WITH previous AS (SELECT id, status FROM solaris.alerts WHERE id = %(id)s FOR UPDATE)
UPDATE solaris.alerts a
   SET status = CASE WHEN previous.status = 'dead' THEN 'pending' ELSE a.status END,
       attempts = CASE WHEN previous.status = 'dead' THEN 0 ELSE a.attempts END,
       next_attempt_at = CASE WHEN previous.status = 'dead' THEN now() ELSE a.next_attempt_at END
  FROM previous WHERE a.id = previous.id
RETURNING a.id, a.user_id, a.kind, a.threshold, a.status, a.attempts, a.last_error, a.recipients, a.credited_tokens,
          a.used_tokens, a.tokens, a.created_at, a.next_attempt_at, a.sent_at, previous.status AS previous_status
