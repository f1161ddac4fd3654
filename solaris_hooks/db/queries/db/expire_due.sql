-- How many reservations past their expiry were expired, at most `limit`.
SELECT solaris.expire_due(%(limit)s)
