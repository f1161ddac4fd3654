-- One row: the outcome (reserved, duplicate, exhausted, blocked, disabled) and the balances after.
SELECT * FROM solaris.reserve(%(user_id)s, %(call_id)s, %(wanted_tokens)s, %(minimum_tokens)s, %(default_tokens)s,
                              %(ttl_s)s, %(model)s, %(factor)s, %(levels)s)
