-- One row per lease the calls named: its state and tokens now, and its account's balances.
SELECT * FROM solaris.settle_leased(%(calls)s, %(ttl_s)s, %(levels)s)
