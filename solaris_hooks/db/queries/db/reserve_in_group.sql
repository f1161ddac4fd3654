-- One row: the outcome (reserved, duplicate, exhausted, blocked, disabled, or regroup: the
-- account's group is not the one the call was priced for), the balances and the group.
SELECT * FROM solaris.reserve_in_group(%(user_id)s, %(group)s, %(header_group)s, %(metered)s, %(call_id)s,
                                       %(wanted_tokens)s, %(minimum_tokens)s, %(default_tokens)s, %(ttl_s)s,
                                       %(model)s, %(factor)s, %(levels)s)
