UPDATE solaris.alerts SET status = 'no_address', claimed_until = NULL
 WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'sending'
