-- The admin overview's headline counts.
SELECT
    (SELECT count(*) FROM solaris.accounts) AS users,
    (SELECT count(*) FROM solaris.accounts WHERE status = 'blocked') AS blocked_users,
    (SELECT count(*) FROM solaris.accounts WHERE status = 'disabled') AS disabled_users,
    (SELECT count(*) FROM solaris.accounts
      WHERE status = 'active' AND debited_tokens >= credited_tokens) AS exhausted_users,
    (SELECT count(DISTINCT user_id) FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(now)s - interval '24 hours') AS active_24h,
    (SELECT count(DISTINCT user_id) FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(now)s - interval '30 days') AS active_30d,
    (SELECT coalesce(sum(debited_delta), 0) FROM solaris.ledger
      WHERE kind IN ('settle', 'adjust') AND created_at >= %(today)s) AS tokens_today,
    (SELECT coalesce(sum(debited_delta), 0) FROM solaris.ledger
      WHERE kind IN ('settle', 'adjust') AND created_at >= %(month)s) AS tokens_month,
    (SELECT coalesce(sum(cost_usd), 0)::float8 FROM solaris.ledger
      WHERE kind = 'settle' AND created_at >= %(month)s) AS cost_month_usd,
    (SELECT count(*) FROM solaris.alerts WHERE status IN ('pending', 'sending', 'failed')) AS alerts_pending,
    (SELECT count(*) FROM solaris.alerts WHERE status = 'dead') AS alerts_dead
