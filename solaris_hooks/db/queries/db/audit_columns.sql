id, actor, action, user_id, before, after, details, created_at
