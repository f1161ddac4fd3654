-- Usage per user and period, oldest period first, with each account as it is now.
SELECT usage.period_start::date AS period_start, usage.user_id, account.email, account.name,
       account.status, usage.tokens_charged, usage.raw_tokens, usage.cost_usd, usage.requests,
       account.credited_tokens,
       account.credited_tokens - account.debited_tokens - account.reserved_tokens AS remaining_tokens
  FROM (SELECT date_trunc(%(group_by)s, created_at) AS period_start, user_id,
               sum(debited_delta)::bigint AS tokens_charged,
               coalesce(sum(raw_tokens) FILTER (WHERE kind = 'settle'), 0)::bigint AS raw_tokens,
               coalesce(sum(cost_usd), 0) AS cost_usd,
               count(*) FILTER (WHERE kind = 'settle') AS requests
          FROM solaris.ledger
         WHERE kind IN ('settle', 'adjust') AND created_at >= %(start)s AND created_at < %(end)s
           AND (kind = 'settle' OR debited_delta <> 0)
         GROUP BY 1, 2) usage
  JOIN solaris.accounts account USING (user_id)
 ORDER BY usage.period_start, usage.user_id
 LIMIT %(limit)s
