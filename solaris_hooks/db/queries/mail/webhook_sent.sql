-- Each outcome only applies while this worker still holds the claim (as mail/alert_sent.sql).
UPDATE solaris.webhook_deliveries
   SET status = 'sent', sent_at = now(), claimed_until = NULL, last_error = NULL,
       response_status = %(response_status)s
 WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'sending'
