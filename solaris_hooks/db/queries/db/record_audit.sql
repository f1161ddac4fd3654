INSERT INTO solaris.audit (actor, action, user_id, before, after, details)
VALUES (%(actor)s, %(action)s, %(user_id)s, %(before)s, %(after)s, %(details)s)
