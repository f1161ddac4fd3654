SELECT * FROM solaris.settle_spooled(%(call_id)s, %(user_id)s, %(raw_tokens)s, %(model)s, %(factor)s, %(cost_usd)s,
                                     %(default_tokens)s, %(spooled_at)s, %(levels)s)
