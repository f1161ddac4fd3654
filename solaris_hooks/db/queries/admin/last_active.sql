-- Each listed user's latest settled call: one backward walk of ledger_user_id (user_id, id)
-- per user, stopping at the first settle row, never a scan of the ledger.
SELECT listed.user_id, last_call.created_at
  FROM unnest(%(user_ids)s::text[]) AS listed(user_id)
 CROSS JOIN LATERAL (SELECT ledger.created_at
                       FROM solaris.ledger
                      WHERE ledger.user_id = listed.user_id AND ledger.kind = 'settle'
                      ORDER BY ledger.id DESC
                      LIMIT 1) last_call
