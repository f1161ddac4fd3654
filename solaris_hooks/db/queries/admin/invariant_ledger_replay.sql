-- Accounts whose balances are not what replaying their ledger rows gives.
SELECT a.user_id, a.credited_tokens, a.debited_tokens, a.reserved_tokens,
       coalesce(l.credited, 0), coalesce(l.debited, 0), coalesce(l.reserved, 0)
  FROM solaris.accounts a
  LEFT JOIN (SELECT user_id, sum(credited_delta) AS credited, sum(debited_delta) AS debited,
                    sum(reserved_delta) AS reserved
               FROM solaris.ledger GROUP BY user_id) l USING (user_id)
 WHERE a.credited_tokens <> coalesce(l.credited, 0)
    OR a.debited_tokens <> coalesce(l.debited, 0)
    OR a.reserved_tokens <> coalesce(l.reserved, 0)
 LIMIT %(rows_max)s
