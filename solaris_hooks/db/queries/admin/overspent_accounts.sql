-- Accounts that used (debited) more than they were credited, most over first, each with the
-- count of such accounts in all and the ledger rows of its current overspend.
--
-- Those rows start at the one that took the account over. The query walks the user's ledger
-- back from its newest row, one (user_id, id) index probe per row: the balance before a row
-- is the one after it minus the row's deltas, and the walk stops at the first row whose
-- balance before it was within the allowance (that row took it over). A user's rows are
-- written under the account's row lock, so ids follow the balance. Cost: one scan of the
-- accounts, then only the current overspend of at most accounts_max accounts (each walk
-- bounded by walk_rows_max), whatever the size of the ledger.
SELECT over.user_id, over.credited_tokens, over.debited_tokens, over.accounts_over, found.calls_over, found.calls
  FROM (SELECT user_id, credited_tokens, debited_tokens, count(*) OVER () AS accounts_over
          FROM solaris.accounts
         WHERE debited_tokens > credited_tokens
         ORDER BY debited_tokens - credited_tokens DESC, user_id
         LIMIT %(accounts_max)s) over
 CROSS JOIN LATERAL (
       WITH RECURSIVE walk AS (
           SELECT newest.*, over.debited_tokens - over.credited_tokens
                            - (newest.debited_delta - newest.credited_delta) AS over_before, 1 AS walked
             FROM (SELECT l.id, l.kind, l.call_id, l.model, l.raw_tokens, l.debited_delta, l.credited_delta,
                          l.reason, l.created_at
                     FROM solaris.ledger l
                    WHERE l.user_id = over.user_id
                    ORDER BY l.id DESC
                    LIMIT 1) newest
         UNION ALL
           SELECT previous.*, walk.over_before - (previous.debited_delta - previous.credited_delta),
                  walk.walked + 1
             FROM walk
            CROSS JOIN LATERAL (
                  SELECT l.id, l.kind, l.call_id, l.model, l.raw_tokens, l.debited_delta, l.credited_delta,
                         l.reason, l.created_at
                    FROM solaris.ledger l
                   WHERE l.user_id = over.user_id AND l.id < walk.id
                   ORDER BY l.id DESC
                   LIMIT 1) previous
            WHERE walk.over_before > 0 AND walk.walked < %(walk_rows_max)s)
       -- Debits (and credit reductions) only: reserve and release rows move no used tokens.
       SELECT count(*) AS calls_over,
              coalesce(jsonb_agg(jsonb_build_object(
                  'ledger_id', first.id, 'kind', first.kind, 'call_id', first.call_id, 'model', first.model,
                  'raw_tokens', first.raw_tokens, 'charged_tokens', first.debited_delta,
                  'credited_delta', first.credited_delta, 'reason', first.reason, 'at', first.created_at)
                  ORDER BY first.id) FILTER (WHERE first.position <= %(calls_max)s), '[]') AS calls
         FROM (SELECT walk.*, row_number() OVER (ORDER BY walk.id) AS position
                 FROM walk
                WHERE walk.debited_delta > 0 OR walk.credited_delta < 0) first) found
 ORDER BY over.debited_tokens - over.credited_tokens DESC, over.user_id
 LIMIT %(rows_max)s
