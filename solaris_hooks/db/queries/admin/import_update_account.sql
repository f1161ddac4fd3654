-- An imported row fills in what it gives and keeps the rest.
UPDATE solaris.accounts
   SET email = coalesce(%(email)s, email), name = coalesce(%(name)s, name), locale = coalesce(%(locale)s, locale),
       updated_at = now()
 WHERE user_id = %(user_id)s
