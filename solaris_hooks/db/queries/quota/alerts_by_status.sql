-- Alert e-mails in the outbox by status, for the solaris_outbox_alerts gauge.
SELECT status, count(*) FROM solaris.alerts GROUP BY status
