-- Dead alerts, and alerts waiting longer than backlog_age_max_s, by status.
SELECT status, count(*) FROM solaris.alerts
 WHERE status = 'dead'
    OR (status IN ('pending', 'failed') AND created_at < now() - make_interval(secs => %(backlog_age_max_s)s))
 GROUP BY status
