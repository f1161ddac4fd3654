-- Accounts whose reserved tokens are not the sum of their pending reservations.
SELECT a.user_id, a.reserved_tokens, coalesce(r.pending, 0)
  FROM solaris.accounts a
  LEFT JOIN (SELECT user_id, sum(tokens) AS pending FROM solaris.reservations
              WHERE state = 'pending' GROUP BY user_id) r USING (user_id)
 WHERE a.reserved_tokens <> coalesce(r.pending, 0)
 LIMIT %(rows_max)s
