id, created_at, kind, tokens, credited_delta, debited_delta, reserved_delta, raw_tokens, model, cost_usd,
call_id, actor, reason
