user_id
