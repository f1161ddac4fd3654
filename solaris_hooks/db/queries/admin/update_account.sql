-- Each field changes only when its change_* flag is set; an unchanged one keeps its value.
UPDATE solaris.accounts
   SET email = CASE WHEN %(change_email)s THEN %(email)s ELSE email END,
       name = CASE WHEN %(change_name)s THEN %(name)s ELSE name END,
       locale = CASE WHEN %(change_locale)s THEN %(locale)s ELSE locale END,
       status = CASE WHEN %(change_status)s THEN %(status)s ELSE status END,
       -- A group an admin sets wins over the one calls name in their header (group_source).
       group_name = CASE WHEN %(change_group)s THEN %(group)s::text ELSE group_name END,
       group_source = CASE WHEN %(change_group)s THEN (CASE WHEN %(group)s::text IS NULL THEN NULL ELSE 'admin' END)
                           ELSE group_source END,
       updated_at = now()
 WHERE user_id = %(user_id)s
