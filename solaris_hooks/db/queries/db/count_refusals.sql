-- Add each user's refused calls since the last batch (users without an account yet are skipped).
UPDATE solaris.accounts a
   SET refused_calls = a.refused_calls + r.count, last_refused_at = now()
  FROM unnest(%(user_ids)s::text[], %(counts)s::bigint[]) AS r(user_id, count)
 WHERE a.user_id = r.user_id
