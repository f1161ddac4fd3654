SELECT solaris.extend_reservation(%(call_id)s, %(ttl_s)s)
