-- The users list's filters; each may be NULL. `group`: '' lists the users in no group.
FROM solaris.accounts
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(pattern)s::text IS NULL OR user_id ILIKE %(pattern)s OR email ILIKE %(pattern)s OR name ILIKE %(pattern)s)
  AND (%(group)s::text IS NULL OR coalesce(group_name, '') = %(group)s)
