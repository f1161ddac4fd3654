-- The audit page's filters; each may be NULL. `users` is the id as typed and the account it names.
FROM solaris.audit
WHERE (%(users)s::text[] IS NULL OR user_id = ANY(%(users)s))
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(start)s::timestamptz IS NULL OR created_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR created_at < %(end)s)
