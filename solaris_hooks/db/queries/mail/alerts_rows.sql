FROM solaris.alerts
WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(user)s::text IS NULL OR user_id = %(user)s)
