SELECT 1 FROM solaris.adjust(%(user_id)s, %(tokens)s, %(target)s, %(actor)s, %(reason)s, %(levels)s)
