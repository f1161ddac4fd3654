user_id, email, name, locale, status, credited_tokens, debited_tokens AS used_tokens, reserved_tokens,
credited_tokens - debited_tokens - reserved_tokens AS remaining_tokens, period, created_at,
(SELECT ledger.created_at FROM solaris.ledger
  WHERE ledger.user_id = accounts.user_id AND ledger.kind = 'settle'
  ORDER BY ledger.id DESC LIMIT 1) AS last_active_at,
group_name AS "group", group_source, refused_calls, last_refused_at
