-- One user's platform tokens charged per UTC day in [start, end).
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(debited_delta)::bigint
  FROM solaris.ledger
 WHERE user_id = %(user_id)s AND kind IN ('settle', 'adjust') AND created_at >= %(start)s AND created_at < %(end)s
 GROUP BY 1
