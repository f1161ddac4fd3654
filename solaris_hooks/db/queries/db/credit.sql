SELECT * FROM solaris.credit(%(user_id)s, %(tokens)s, %(default_tokens)s, %(actor)s, %(reason)s, %(levels)s)
