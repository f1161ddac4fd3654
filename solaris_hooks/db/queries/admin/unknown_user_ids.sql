SELECT array(SELECT unnest(%(user_ids)s::text[]) EXCEPT SELECT user_id FROM solaris.accounts)
