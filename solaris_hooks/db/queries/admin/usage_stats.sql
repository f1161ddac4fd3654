-- One scan of the range (an index-only scan of ledger_usage, see 0003_report_indexes.sql)
-- feeds two groupings at once: per period and user, and per model. Totals, series and top
-- users are rolled up from the per-period-and-user groups, far fewer than ledger rows.
WITH usage AS MATERIALIZED (
    SELECT date_trunc(%(group_by)s, created_at) AS period_start, user_id, model,
           GROUPING(model) = 0 AS per_model,
           sum(debited_delta) AS tokens_charged,
           coalesce(sum(raw_tokens) FILTER (WHERE kind = 'settle'), 0) AS raw_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           count(*) FILTER (WHERE kind = 'settle') AS requests
      FROM solaris.ledger
     WHERE kind IN ('settle', 'adjust') AND created_at >= %(start)s AND created_at < %(end)s
       AND (kind = 'settle' OR debited_delta <> 0)
     GROUP BY GROUPING SETS ((1, 2), (3))
), per_user AS MATERIALIZED (
    SELECT user_id, sum(tokens_charged) AS tokens_charged, sum(raw_tokens) AS raw_tokens,
           sum(cost_usd) AS cost_usd, sum(requests) AS requests
      FROM usage WHERE NOT per_model GROUP BY user_id
)
SELECT
    (SELECT json_build_object(
                'tokens_charged', coalesce(sum(tokens_charged), 0), 'raw_tokens', coalesce(sum(raw_tokens), 0),
                'cost_usd', coalesce(sum(cost_usd), 0), 'requests', coalesce(sum(requests), 0),
                'active_users', count(*) FILTER (WHERE requests > 0),
                'blocked_users', (SELECT count(DISTINCT user_id) FROM solaris.alerts
                                   WHERE kind = 'usage' AND threshold = 1.0
                                     AND created_at >= %(start)s AND created_at < %(end)s),
                'admin_blocked_users', (SELECT count(*) FROM solaris.accounts WHERE status = 'blocked'))
       FROM per_user) AS totals,
    (SELECT coalesce(json_agg(period ORDER BY period_start), '[]')
       FROM (SELECT period_start::date AS period_start, sum(tokens_charged) AS tokens_charged,
                    sum(raw_tokens) AS raw_tokens, sum(cost_usd) AS cost_usd, sum(requests) AS requests,
                    count(*) FILTER (WHERE requests > 0) AS active_users
               FROM usage WHERE NOT per_model GROUP BY period_start) period) AS series,
    (SELECT coalesce(json_agg(top ORDER BY tokens_charged DESC, user_id), '[]')
       FROM (SELECT per_user.user_id, account.email, account.name, per_user.tokens_charged, per_user.requests,
                    per_user.cost_usd
               FROM (SELECT * FROM per_user ORDER BY tokens_charged DESC, user_id LIMIT %(top)s) per_user
               JOIN solaris.accounts account USING (user_id)) top) AS top_users,
    (SELECT coalesce(json_agg(per_model ORDER BY tokens_charged DESC, model), '[]')
       FROM (SELECT model, tokens_charged, raw_tokens, cost_usd, requests FROM usage WHERE per_model) per_model)
       AS models
