FROM solaris.ledger
WHERE user_id = %(user)s AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(start)s::timestamptz IS NULL OR created_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR created_at < %(end)s)
