-- Each outcome only applies while this worker still holds the claim: if its lease ran out
-- and another worker took the row over, that worker's outcome is the one that counts.
UPDATE solaris.alerts
   SET status = 'sent', sent_at = now(), claimed_until = NULL, last_error = NULL, recipients = %(recipients)s
 WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'sending'
