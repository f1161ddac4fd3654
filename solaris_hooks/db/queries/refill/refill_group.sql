-- Move up to batch_size accounts of one rule into its period: the members of `group`, or
-- (group NULL) the accounts not in one of own_rule_groups. One `grant` per user and period,
-- however many replicas run it (solaris.refill_group, migration 0015). Returns how many were refilled.
SELECT solaris.refill_group(%(period)s, %(mode)s, %(amount)s, %(batch_size)s, %(group)s::text,
                            %(own_rule_groups)s::text[])
