-- Dead webhook deliveries, and ones waiting longer than backlog_age_max_s, by status (as
-- admin/outbox_backlog.sql for e-mails).
SELECT status, count(*) FROM solaris.webhook_deliveries
 WHERE status = 'dead'
    OR (status IN ('pending', 'failed') AND created_at < now() - make_interval(secs => %(backlog_age_max_s)s))
 GROUP BY status
