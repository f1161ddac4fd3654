{key} {direction}, user_id
