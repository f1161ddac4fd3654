-- No row when the account exists already.
SELECT user_id FROM solaris.create_account(%(user_id)s, %(tokens)s, %(email)s, %(name)s, %(locale)s, %(actor)s)
