-- One row: the outcome (reserved, exhausted, blocked, disabled, lost) and the balances after.
SELECT * FROM solaris.take_lease(%(user_id)s, %(lease_id)s, %(owner)s, %(wanted_tokens)s, %(minimum_tokens)s,
                                 %(share)s, %(default_tokens)s, %(ttl_s)s)
