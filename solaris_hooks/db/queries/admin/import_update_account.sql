-- An imported row fills in what it gives and keeps the rest; a group it names is an admin's choice.
UPDATE solaris.accounts
   SET email = coalesce(%(email)s, email), name = coalesce(%(name)s, name), locale = coalesce(%(locale)s, locale),
       group_name = coalesce(%(group)s::text, group_name),
       group_source = CASE WHEN %(group)s::text IS NULL THEN group_source ELSE 'admin' END,
       updated_at = now()
 WHERE user_id = %(user_id)s
