FROM solaris.audit
WHERE (%(user)s::text IS NULL OR user_id = %(user)s) AND (%(action)s::text IS NULL OR action = %(action)s)
