-- One scan of the range (an index-only scan of ledger_usage, see 0003_report_indexes.sql)
-- feeds two small groupings at once: per user, and per period and model. Totals and top users
-- are rolled up from the first; the series and the models from the second.
-- Not per period and user, as before: 30 days by day are then ~30,000 groups, a 30 MB hash
-- table of sum states that no longer fits the CPU caches (1,300 groups and 1.5 MB here). On
-- a 1M-row ledger this takes 0.6-0.7x that grouping's time by day, 0.9x by week, the same by month.
-- A period's active users are the users with a settle row in it: each user's group ORs one
-- bit per period it settled in, and the series counts the bits. A bigint holds 64 periods,
-- so a range of more periods gives each user one group per 64 (bits_word).
-- A row's period is its bucket among the periods' starts (width_bucket), about a third of
-- date_trunc's cost per row; the starts are date_trunc's, so the periods are the same.
WITH periods AS (
    SELECT array_agg(period_start ORDER BY period_start) AS starts
      FROM generate_series(date_trunc(%(group_by)s::text, %(start)s::timestamptz), %(end)s::timestamptz,
                           ('1 ' || %(group_by)s::text)::interval) period_start
     WHERE period_start < %(end)s
), usage AS MATERIALIZED (
    SELECT user_id, period_no / 64 AS bits_word, period_no, model, GROUPING(user_id) = 0 AS per_user,
           sum(debited_delta) AS tokens_charged,
           coalesce(sum(raw_tokens) FILTER (WHERE settle), 0) AS raw_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd,
           count(*) FILTER (WHERE settle) AS requests,
           bit_or(1::bigint << (period_no & 63)) FILTER (WHERE settle) AS active_bits
      -- OFFSET 0 keeps this a subquery, so period_no and settle are computed once per row,
      -- not once per grouping and aggregate that uses them.
      FROM (SELECT width_bucket(created_at, (SELECT starts FROM periods)) - 1 AS period_no, user_id, model,
                   kind = 'settle' AS settle, debited_delta, raw_tokens, cost_usd
              FROM solaris.ledger
             WHERE kind IN ('settle', 'adjust') AND created_at >= %(start)s AND created_at < %(end)s
               AND (kind = 'settle' OR debited_delta <> 0)
            OFFSET 0) charged
     GROUP BY GROUPING SETS ((user_id, bits_word), (period_no, model))
), per_user AS MATERIALIZED (
    SELECT user_id, sum(tokens_charged) AS tokens_charged, sum(raw_tokens) AS raw_tokens,
           sum(cost_usd) AS cost_usd, sum(requests) AS requests
      FROM usage WHERE per_user GROUP BY user_id
), active AS (
    SELECT bits_word * 64 + bit AS period_no, count(*) AS active_users
      FROM usage CROSS JOIN periods
           CROSS JOIN LATERAL generate_series(0, least(63, cardinality(periods.starts) - 1 - bits_word * 64)) bit
     WHERE per_user AND active_bits & (1::bigint << bit) <> 0
     GROUP BY 1
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
       FROM (SELECT periods.starts[per_period.period_no + 1]::date AS period_start, per_period.tokens_charged,
                    per_period.raw_tokens, per_period.cost_usd, per_period.requests,
                    coalesce(active.active_users, 0) AS active_users
               FROM (SELECT period_no, sum(tokens_charged) AS tokens_charged, sum(raw_tokens) AS raw_tokens,
                            sum(cost_usd) AS cost_usd, sum(requests) AS requests
                       FROM usage WHERE NOT per_user GROUP BY period_no) per_period
               CROSS JOIN periods LEFT JOIN active USING (period_no)) period) AS series,
    (SELECT coalesce(json_agg(top ORDER BY tokens_charged DESC, user_id), '[]')
       FROM (SELECT per_user.user_id, account.email, account.name, per_user.tokens_charged, per_user.requests,
                    per_user.cost_usd
               FROM (SELECT * FROM per_user ORDER BY tokens_charged DESC, user_id LIMIT %(top)s) per_user
               JOIN solaris.accounts account USING (user_id)) top) AS top_users,
    (SELECT coalesce(json_agg(per_model ORDER BY tokens_charged DESC, model), '[]')
       FROM (SELECT model, sum(tokens_charged) AS tokens_charged, sum(raw_tokens) AS raw_tokens,
                    sum(cost_usd) AS cost_usd, sum(requests) AS requests
               FROM usage WHERE NOT per_user GROUP BY model) per_model)
       AS models
