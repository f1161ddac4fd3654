-- Reservations without exactly one reserve row, or without one resolution row once resolved.
-- An expired or released reservation may also carry one 'settle' row: a late result (a call
-- that outlived its reservation, a retried attempt, usage spooled during an outage;
-- solaris.settle_late). It is a charge of its own, not a second resolution.
SELECT r.call_id, r.state, count(*) FILTER (WHERE l.kind = 'reserve') AS reserves,
       count(*) FILTER (WHERE l.kind IN ('settle', 'release', 'expire')) AS resolutions
  FROM solaris.reservations r
  LEFT JOIN solaris.ledger l ON l.call_id = r.call_id
 GROUP BY r.call_id, r.state
HAVING count(*) FILTER (WHERE l.kind = 'reserve') <> 1
    OR count(*) FILTER (WHERE l.kind IN ('release', 'expire')
                           OR (l.kind = 'settle' AND r.state NOT IN ('expired', 'released')))
       <> CASE WHEN r.state = 'pending' THEN 0 ELSE 1 END
 LIMIT %(rows_max)s
