-- One row per call: how its reservation was resolved and what it was charged.
SELECT * FROM solaris.settle_batch(%(calls)s, %(levels)s)
