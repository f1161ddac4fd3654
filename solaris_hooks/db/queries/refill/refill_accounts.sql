-- Move up to batch_size accounts into the period: one `grant` per user and period, however
-- many replicas run it (solaris.refill, migration 0002). Returns how many were refilled.
SELECT solaris.refill(%(period)s, %(mode)s, %(amount)s, %(batch_size)s)
