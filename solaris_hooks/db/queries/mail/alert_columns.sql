id, user_id, kind, threshold, status, attempts, last_error, recipients, credited_tokens, used_tokens, tokens,
created_at, next_attempt_at, sent_at
