-- One round trip: is Postgres answering? (after an outage, before the spool replay)
SELECT 1
