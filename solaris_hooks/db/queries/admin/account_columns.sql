user_id, email, name, locale, status, credited_tokens, debited_tokens AS used_tokens, reserved_tokens,
credited_tokens - debited_tokens - reserved_tokens AS remaining_tokens, period, group_name AS "group", group_source,
refused_calls, last_refused_at,
created_at, updated_at
