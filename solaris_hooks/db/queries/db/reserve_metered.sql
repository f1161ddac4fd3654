-- One row: the outcome (reserved, duplicate, exhausted, blocked, disabled) and the balances after;
-- the reservation is metered (a stream that grows it; charged what it holds if it expires).
SELECT * FROM solaris.reserve_metered(%(user_id)s, %(call_id)s, %(wanted_tokens)s, %(minimum_tokens)s,
                                      %(default_tokens)s, %(ttl_s)s, %(model)s, %(factor)s, %(levels)s)
