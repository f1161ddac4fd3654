-- The platform tokens a metered reservation grew by (0: refused, the allowance is used up).
SELECT solaris.grow_reservation(%(call_id)s, %(wanted_tokens)s, %(minimum_tokens)s, %(ttl_s)s)
