-- user_ids NULL: every active account. Returns how many accounts were credited.
SELECT solaris.bulk_credit(%(user_ids)s, %(tokens)s, %(actor)s, %(reason)s, %(levels)s)
