-- One row: the reservation's state now and the tokens this call charged.
SELECT * FROM solaris.resolve(%(call_id)s, %(kind)s, %(raw_tokens)s, %(model)s, %(cost_usd)s, %(levels)s)
