-- /solaris/health: the database answers a round trip.
SELECT 1
